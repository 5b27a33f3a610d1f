"""linft.ntk's plans, with plain numbers (no model): the memory plan (whole / stream / over budget) and the fast
path's length buckets."""

import pytest
import torch

from linft import LinftError
from linft.ntk import MemoryPlan, plan_memory
from linft.ntk._fast import plan_buckets
from linft.ntk._plan import GB, GRAM_BLOCK_BYTES

# 10 × 10 examples, 2 outputs, "full", 3 per-layer blocks + the total: 10·10·2·2 float64 × 4 = 12,800 bytes.
RESULT = 12_800
# one example's row of the largest unit (1,000 coordinates): 4 blocks (left, right, sign copies) × 2 outputs × 8 B
ROW = 64_000
HELD = 10_000
UNIT = 80_000


def plan(budget_bytes=None, **changes):
    args = dict(n=10, m=10, n_out=2, output="full", n_groups=3, per_layer=True, max_unit_numel=1000,
                held_bytes=HELD, unit_bytes=UNIT, budget_gb=1.0)
    if budget_bytes is not None:
        args["budget_gb"] = budget_bytes / GB
    return plan_memory(**{**args, **changes})


def test_whole_mode_with_room():
    p = plan()
    assert isinstance(p, MemoryPlan) and p.mode == "whole" and p.whole
    assert (p.result_bytes, p.gradient_bytes, p.unit_bytes, p.block_bytes_per_example) == (RESULT, HELD, UNIT, ROW)
    assert p.block_examples == 10  # every example in one block
    assert p.estimated_bytes == RESULT + HELD + UNIT + 10 * ROW and p.budget_bytes == GB
    assert p.meta() == {"gram_mode": "whole", "block_examples": 10, "result_bytes": RESULT, "gradient_bytes": HELD,
                        "unit_bytes": UNIT, "block_bytes_per_example": ROW,
                        "estimated_bytes": RESULT + HELD + UNIT + 10 * ROW}


def test_whole_mode_in_row_blocks():
    budget = RESULT + HELD + UNIT + 3.5 * ROW
    p = plan(budget)
    assert p.mode == "whole" and p.block_examples == 3
    assert p.estimated_bytes == RESULT + HELD + UNIT + 3 * ROW <= budget
    assert plan(budget, m=40).block_examples == 2  # a wider right batch: a larger kernel leaves less room


def test_whole_mode_blocks_are_capped():
    p = plan(budget_gb=100.0, n=100, m=100, max_unit_numel=10**6, held_bytes=0, unit_bytes=0)
    row = 4 * 2 * 10**6 * 8
    assert p.block_bytes_per_example == row and p.block_examples == GRAM_BLOCK_BYTES // row == 8
    assert plan(budget_gb=100.0, n=100, m=100, max_unit_numel=10**6, held_bytes=0, unit_bytes=0,
                gram_block_bytes=3 * row).block_examples == 3
    assert plan(gram_block_bytes=1).block_examples == 1  # at least one example


def test_stream_mode_when_a_unit_does_not_fit_whole():
    budget = RESULT + HELD + 2.5 * ROW
    p = plan(budget, unit_bytes=10**6)
    assert p.mode == "stream" and not p.whole and p.block_examples == 2
    assert p.estimated_bytes == RESULT + HELD + 2 * ROW  # the unit is never materialized
    assert plan(RESULT + HELD + 1.5 * ROW).mode == "stream"  # free < UNIT + ROW
    assert plan(RESULT + HELD + 1.5 * ROW, unit_bytes=0).mode == "whole"  # the reference holds its Jacobians


def test_result_sizes_per_output_and_per_layer():
    assert plan(per_layer=False).result_bytes == RESULT // 4
    assert plan(output="trace").result_bytes == 10 * 10 * 8 * 4
    assert plan(output="logit_diff", n_out=1, per_layer=False, m=7).result_bytes == 10 * 7 * 8
    assert plan(n_out=1, output="logit_diff").block_bytes_per_example == ROW // 2


def test_over_budget_for_the_kernel():
    with pytest.raises(LinftError) as err:
        plan(budget_gb=0.1, n=1000, m=1000, n_groups=7)
    message = str(err.value)
    assert "\n" not in message and "[1000, 1000, 2, 2] kernel and its per-layer blocks" in message
    assert "0.238 GB" in message and "memory_budget_gb=0.1" in message and "per_layer=False" in message
    with pytest.raises(LinftError, match=r"\[10, 10\] kernel but"):
        plan(10 * 10 * 8 - 1, output="trace", per_layer=False)
    assert plan(10 * 10 * 8 + HELD + UNIT + ROW, output="trace", per_layer=False).mode == "whole"


def test_over_budget_for_the_gradients():
    with pytest.raises(LinftError) as err:
        plan(RESULT + HELD + ROW - 1)
    message = str(err.value)
    assert "\n" not in message and "per-example gradients" in message and "gradient block" in message
    assert plan(RESULT + HELD + ROW, unit_bytes=10**6).block_examples == 1  # exactly one row fits
    with pytest.raises(LinftError, match="per-example gradients"):
        plan(budget_gb=1.0, held_bytes=2 * GB)


@pytest.mark.parametrize("budget", [0, -1.0, None, float("nan"), True, "4"])
def test_budget_must_be_positive(budget):
    with pytest.raises(LinftError, match="memory_budget_gb must be positive"):
        plan(budget_gb=budget)


def test_unknown_output():
    with pytest.raises(LinftError, match="unknown output 'diag': use one of"):
        plan(output="diag")


def test_plan_buckets_covers_every_example_once():
    lengths = torch.tensor([5, 64, 7, 7, 30, 31, 64, 2, 12, 12, 12, 50] * 20)
    buckets = plan_buckets(lengths, max_tokens=256)
    seen = torch.cat([idx for idx, _ in buckets])
    assert torch.equal(seen.sort().values, torch.arange(len(lengths)))
    for idx, length in buckets:
        assert lengths[idx].max() <= length and len(idx) * length <= max(256, length)
    padded = sum(len(idx) * length for idx, length in buckets)
    assert padded < 1.2 * lengths.sum()


def test_implementations_are_one_registry_chosen_by_name():
    from linft import ntk
    from linft.ntk import _implementations

    assert ntk.IMPLEMENTATIONS == ("fast", "reference") == tuple(_implementations.REGISTRY)
    fast, reference = (_implementations.choose(name) for name in ntk.IMPLEMENTATIONS)
    assert (fast.name, fast.linear_only) == ("fast", True)
    assert (reference.name, reference.linear_only) == ("reference", False)
    with pytest.raises(LinftError, match=r"unknown implementation 'vmap': use one of \('fast', 'reference'\)"):
        _implementations.choose("vmap")
