"""The eNTK memory plan: how the kernel is formed so that what is held at once fits a budget.

One job, plain numbers in and out (no model): given the kernel's size, the per-example gradients an implementation
holds and the largest parameter unit, choose between

- ``whole``: each unit's gradients for every example are materialized once and multiplied in row blocks of
  ``block_examples`` examples (float64, capped at :data:`GRAM_BLOCK_BYTES` per block);
- ``stream``: gradients are streamed in blocks of ``block_examples`` examples, recomputed per block pair, which
  bounds memory by the block size alone;

or raise :class:`linft.LinftError` (one line) when even one example's block does not fit.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass

from linft import LinftError, check_choice
from linft.ntk._gram import OUTPUTS, kernel_shape

GB = 1024**3
#: largest float64 block pair (plus sign copies) multiplied at once when forming a kernel
GRAM_BLOCK_BYTES = 512 * 1024**2


@dataclass(frozen=True)
class MemoryPlan:
    """How an eNTK is formed, and the bytes it is expected to hold at once.

    ``mode``: "whole" or "stream" (see :mod:`linft.ntk._plan`); ``block_examples``: examples per row block;
    ``result_bytes``: the kernel plus its per-layer blocks; ``gradient_bytes``: the per-example gradients (or token
    factors) the implementation keeps; ``unit_bytes``: one unit's gradients for every example (held in whole
    mode); ``block_bytes_per_example``: one example's row in the float64 left/right blocks plus sign copies;
    ``estimated_bytes``: the sum held at once; ``budget_bytes``: the budget it fits.
    """

    mode: str
    block_examples: int
    result_bytes: int
    gradient_bytes: int
    unit_bytes: int
    block_bytes_per_example: int
    estimated_bytes: int
    budget_bytes: int

    @property
    def whole(self) -> bool:
        return self.mode == "whole"

    def meta(self) -> dict:
        """The plan as ``Kernel.meta`` entries (``mode`` is called ``gram_mode`` there)."""
        out = asdict(self)
        out["gram_mode"] = out.pop("mode")
        del out["budget_bytes"]
        return out


def _budget_error(what: str, need: float, budget_gb: float) -> LinftError:
    return LinftError(
        f"the eNTK needs {need / GB:.3f} GB for {what} but memory_budget_gb={budget_gb:g}: raise memory_budget_gb, "
        "or use fewer examples, output='trace' or 'logit_diff', or per_layer=False"
    )


def plan_memory(
    *,
    n: int,
    m: int,
    n_out: int,
    output: str,
    n_groups: int,
    per_layer: bool,
    max_unit_numel: int,
    held_bytes: int,
    unit_bytes: int,
    budget_gb: float,
    gram_block_bytes: int = GRAM_BLOCK_BYTES,
) -> MemoryPlan:
    """Plan the formation of an [N, M(, C', C')] kernel within ``budget_gb`` GiB.

    ``n``, ``m``: examples of the two batches; ``n_out``: outputs differentiated (C', 1 for "logit_diff");
    ``output``: "full" | "trace" | "logit_diff"; ``n_groups``: per-layer blocks kept besides the total (used when
    ``per_layer``); ``max_unit_numel``: coordinates of the largest parameter unit; ``held_bytes``: per-example
    gradients the implementation keeps for both batches; ``unit_bytes``: one unit's gradients for every example
    (what whole mode adds; 0 when ``held_bytes`` already holds them). Raises :class:`linft.LinftError` when the
    kernel alone, or the kernel + gradients + one example's block, exceed the budget.
    """
    check_choice("output", output, OUTPUTS)
    if isinstance(budget_gb, bool) or not isinstance(budget_gb, numbers.Real) or not budget_gb > 0:
        raise LinftError(f"memory_budget_gb must be positive, got {budget_gb!r}")
    budget = budget_gb * GB
    shape = kernel_shape(n, m, n_out, output)
    result_bytes = math.prod(shape) * 8 * (1 + n_groups if per_layer else 1)
    if result_bytes > budget:
        what = f"the {list(shape)} kernel{' and its per-layer blocks' if per_layer else ''}"
        raise _budget_error(what, result_bytes, budget_gb)
    per_row = 4 * n_out * max_unit_numel * 8  # one example's row in the left and right float64 blocks + sign copies
    free = budget - result_bytes - held_bytes
    if free >= unit_bytes + per_row:  # materialize each unit's gradients once, multiply in row blocks
        mode = "whole"
        rows = min(max(n, m), int((free - unit_bytes) // per_row), max(1, gram_block_bytes // per_row))
    elif free >= per_row:  # stream blocks of examples, recomputing gradients from token factors per block pair
        mode = "stream"
        rows = int(free // per_row)
    else:
        raise _budget_error(
            f"the kernel ({result_bytes / GB:.3f} GB), the per-example gradients ({held_bytes / GB:.3f} GB) and one "
            f"example's gradient block ({per_row / GB:.3f} GB)",
            result_bytes + held_bytes + per_row,
            budget_gb,
        )
    estimated = result_bytes + held_bytes + (unit_bytes if mode == "whole" else 0) + rows * per_row
    return MemoryPlan(
        mode=mode,
        block_examples=rows,
        result_bytes=int(result_bytes),
        gradient_bytes=int(held_bytes),
        unit_bytes=int(unit_bytes),
        block_bytes_per_example=int(per_row),
        estimated_bytes=int(estimated),
        budget_bytes=int(budget),
    )
