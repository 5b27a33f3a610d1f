"""linft.ntk: fast == reference == explicit J Jᵀ for every kernel variant and output, padding-invariance,
per-layer sums, SGD-kernel symmetry/PSD, the B-only kernel at initialization, full weights, caching, bad inputs.

Models run in float64 so that implementations summing in different orders agree to ~1e-15 (the bar is 1e-6).
"""

import copy
import math

import pytest
import torch

from linft import LinftError, models
from linft.ntk import FullWeights, Kernel, empirical_ntk, explicit_jacobian
from linft.ntk_fast import plan_buckets

KERNELS = ("sgd", "signgd", "asym_signgd")
OUTPUTS = ("full", "trace", "logit_diff")
TEXTS = [
    "a fine film",
    "a dull, overlong film with no ideas",
    "bad",
    "wonderful acting and a clever, moving plot that never lets go",
    "it is what it is",
]


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp_min(1e-300))


def explicit_kernel(jx: torch.Tensor, jy: torch.Tensor, output: str, kernel: str) -> torch.Tensor:
    """The kernel straight from its definition, given explicit Jacobians [N, C', P] and [M, C', P]."""
    left = jx.sign() if kernel == "signgd" else jx
    right = jy.sign() if kernel in ("signgd", "asym_signgd") else jy
    full = torch.einsum("ncp,mdp->nmcd", left, right)
    if output == "full":
        return full
    if output == "trace":
        return torch.einsum("nmcc->nm", full)
    return full[:, :, 0, 0]


def _perturb_lora_b(model, seed=0, scale=0.05):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * scale)
    return model


_BASE: dict = {}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread: on 2 shared cores, 2 threads ran these small kernels up to 30× slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
    _BASE.clear()


def _lora_model(targets, layers=None, perturb=True, num_labels=2, rank=4):
    if num_labels not in _BASE:  # load once, copy per test (loading costs seconds)
        _BASE[num_labels] = models.load("minilm", num_labels=num_labels, dtype=torch.float64, seed=0)
    base, tokenizer = _BASE[num_labels]
    model = models.add_lora(copy.deepcopy(base), targets, rank=rank, alpha=2 * rank, layers=layers, train_head=True)
    if perturb:
        _perturb_lora_b(model)
    return model, tokenizer


@pytest.fixture(scope="module")
def qv():
    """LoRA on query/value in every layer, B moved away from zero (so A-gradients are nonzero)."""
    model, tokenizer = _lora_model(["query", "value"])
    return model, tokenizer, tokenizer(TEXTS, padding=True, return_tensors="pt")


CONFIGS = {
    "query_value": (["query", "value"], None),
    "attn_out_ffn_in": (["attn_out", "ffn_in"], None),
    "query_layers_2_4": (["query"], [2, 4]),
}


@pytest.mark.parametrize("config", list(CONFIGS))
def test_fast_equals_reference_equals_explicit(config):
    targets, layers = CONFIGS[config]
    model, tokenizer = _lora_model(targets, layers)
    batch = tokenizer(TEXTS[:4], padding=True, return_tensors="pt")
    assert batch["attention_mask"].min() == 0  # padding and masks are exercised
    j_full, names = explicit_jacobian(model, batch, "lora", "full")
    j_diff, _ = explicit_jacobian(model, batch, "lora", "logit_diff")
    assert all("lora_" in n for n in names) and j_full.abs().sum() > 0
    a_cols = torch.cat([torch.full((p.numel(),), "lora_A" in n) for n, p in model.named_parameters() if n in names])
    assert j_full[:, :, a_cols].abs().max() > 0  # B perturbed: A-gradients are nonzero
    for output in OUTPUTS:
        jac = j_diff if output == "logit_diff" else j_full
        for kernel in KERNELS:
            want = explicit_kernel(jac, jac, output, kernel)
            fast = empirical_ntk(model, batch, output=output, kernel=kernel)
            ref = empirical_ntk(model, batch, output=output, kernel=kernel, implementation="reference")
            assert fast.values.dtype == torch.float64 and fast.values.shape == want.shape
            assert rel(fast.values, want) < 1e-6, (output, kernel, rel(fast.values, want))
            assert rel(ref.values, want) < 1e-6, (output, kernel, rel(ref.values, want))
            assert (fast.implementation, ref.implementation) == ("fast", "reference")
            assert fast.n_params == jac.shape[2] and fast.params.startswith("LoRA (no head)")


def test_two_batches_match_reference(qv):
    model, tokenizer, batch = qv
    batch2 = tokenizer(TEXTS[1:4] + ["not my cup of tea, though the score is lovely"], padding=True, return_tensors="pt")
    jx, _ = explicit_jacobian(model, batch, "trainable")
    jy, _ = explicit_jacobian(model, batch2, "trainable")
    for kernel in KERNELS:
        fast = empirical_ntk(model, batch, batch2, params="trainable", kernel=kernel)
        ref = empirical_ntk(model, batch, batch2, params="trainable", kernel=kernel, implementation="reference")
        want = explicit_kernel(jx, jy, "full", kernel)
        assert fast.values.shape == (5, 4, 2, 2)
        assert rel(fast.values, want) < 1e-6 and rel(ref.values, want) < 1e-6
    with pytest.raises(LinftError, match="square"):
        fast.matrix()


def test_per_layer_sums_symmetry_psd(qv):
    model, _, batch = qv
    k = empirical_ntk(model, batch, params="trainable")
    assert list(k.per_layer) == [f"layer{i}" for i in range(6)] + ["head"]
    assert rel(sum(k.per_layer.values()), k.values) < 1e-12
    mat = k.matrix()
    assert mat.shape == (10, 10)
    assert torch.equal(mat[2 * 1 + 0, 2 * 3 + 1], k.values[1, 3, 0, 1])  # example-major
    assert torch.allclose(mat, mat.T, rtol=1e-12, atol=1e-12 * mat.abs().max())
    eig = torch.linalg.eigvalsh(mat)
    assert eig.min() > -1e-9 * eig.max()
    for output in ("trace", "logit_diff"):
        ko = empirical_ntk(model, batch, params="trainable", output=output)
        assert rel(sum(ko.per_layer.values()), ko.values) < 1e-12
        assert torch.linalg.eigvalsh(ko.matrix()).min() > -1e-9 * ko.values.abs().max()
    assert rel(empirical_ntk(model, batch, params="trainable", output="trace").values,
               torch.einsum("nmcc->nm", k.values)) < 1e-12
    no_layers = empirical_ntk(model, batch, params="trainable", per_layer=False)
    assert no_layers.per_layer == {} and rel(no_layers.values, k.values) < 1e-12


def test_head_and_lora_parameter_sets(qv):
    model, _, batch = qv
    counts = models.count_parameters(model)
    lora = empirical_ntk(model, batch)
    head = empirical_ntk(model, batch, params="head")
    both = empirical_ntk(model, batch, params="trainable")
    assert lora.n_params == counts["lora"] and "head" not in lora.per_layer
    assert head.n_params == counts["head"] and list(head.per_layer) == ["head"]
    assert rel(lora.values + head.values, both.values) < 1e-10
    ref = empirical_ntk(model, batch, params="head", implementation="reference")
    assert rel(head.values, ref.values) < 1e-6
    by_name = empirical_ntk(model, batch, params=["layer\\.0\\..*lora_", "layer.5."])
    assert set(by_name.per_layer) == {"layer0", "layer5"}
    assert rel(by_name.values, lora.per_layer["layer0"] + lora.per_layer["layer5"]) < 1e-10


def test_linear_on_pooled_input_matches_explicit():
    """A Linear fed [N, d] (the pooler) rather than [N, T, d], with d_out != C, in the group "other"."""
    model, tokenizer = _lora_model(["query"], layers=[5])
    pooler = next(m for n, m in model.named_modules() if n.endswith("pooler.dense"))
    pooler.weight.requires_grad_(True)
    pooler.bias.requires_grad_(True)
    batch = tokenizer(TEXTS[:3], padding=True, return_tensors="pt")
    j, names = explicit_jacobian(model, batch, ["pooler.dense"])
    assert len(names) == 2
    for kernel in ("sgd", "asym_signgd"):
        fast = empirical_ntk(model, batch, params=["pooler.dense"], kernel=kernel)
        assert list(fast.per_layer) == ["other"]
        assert rel(fast.values, explicit_kernel(j, j, "full", kernel)) < 1e-6


def test_lora_kernel_at_init_is_the_b_kernel():
    model, tokenizer = _lora_model(["query", "value"], perturb=False)
    batch = tokenizer(TEXTS[:4], padding=True, return_tensors="pt")
    k = empirical_ntk(model, batch)
    kb = empirical_ntk(model, batch, params=["lora_B"])
    assert kb.n_params * 2 == k.n_params
    assert rel(k.values, kb.values) < 1e-12 and k.values.abs().max() > 0
    j, names = explicit_jacobian(model, batch)
    a_cols = torch.cat([torch.full((p.numel(),), "lora_A" in n) for n, p in model.named_parameters() if n in names])
    assert torch.count_nonzero(j[:, :, a_cols]) == 0


def test_full_weights_match_explicit(qv):
    model, _, batch = qv
    spec = FullWeights(targets=("query",), layers=(1, 4))
    j, names = explicit_jacobian(model, batch, spec)
    assert names and all(n.endswith("query.base_layer.weight") for n in names)
    assert not any(p.requires_grad for n, p in model.named_parameters() if n in names)  # frozen, and left so
    for kernel in KERNELS:
        fast = empirical_ntk(model, batch, params=spec, kernel=kernel)
        assert rel(fast.values, explicit_kernel(j, j, "full", kernel)) < 1e-6
    assert fast.n_params == 2 * 384 * 384 and list(fast.per_layer) == ["layer1", "layer4"]
    assert "full weights of query" in fast.params
    ref = empirical_ntk(model, batch, params=spec, output="trace", implementation="reference")
    assert rel(empirical_ntk(model, batch, params=spec, output="trace").values, ref.values) < 1e-6


def test_padding_does_not_change_rows(qv):
    model, tokenizer, batch = qv
    k = empirical_ntk(model, batch, params="trainable")
    padded = tokenizer(TEXTS, padding="max_length", max_length=40, return_tensors="pt")
    assert rel(empirical_ntk(model, padded, params="trainable").values, k.values) < 1e-10
    for i in (0, 3):  # the shortest and the longest example, alone and unpadded
        alone = tokenizer([TEXTS[i]], return_tensors="pt")
        row = empirical_ntk(model, alone, batch, params="trainable")
        assert rel(row.values[0], k.values[i]) < 1e-10


def test_blocking_under_a_small_budget(qv):
    model, _, batch = qv
    spec = FullWeights(targets=("value",), layers=(0, 5))
    for kernel in ("asym_signgd", "sgd"):  # sgd: symmetric blocks are computed once and mirrored
        k = empirical_ntk(model, batch, params=spec, kernel=kernel)
        assert k.meta["gram_mode"] == "whole" and k.meta["block_examples"] == 5
        base = k.meta["result_bytes"] + k.meta["gradient_bytes"]
        row = k.meta["block_bytes_per_example"]
        for extra, mode in ((k.meta["unit_bytes"] + 2.5 * row, "whole"), (1.5 * row, "stream")):
            small = empirical_ntk(model, batch, params=spec, kernel=kernel, memory_budget_gb=(base + extra) / 1024**3)
            assert small.meta["gram_mode"] == mode and small.meta["block_examples"] in (1, 2), small.meta
            assert rel(small.values, k.values) < 1e-12
    ref = empirical_ntk(model, batch, params="head", implementation="reference")
    tight = ref.meta["result_bytes"] + ref.meta["gradient_bytes"] + 2.5 * ref.meta["block_bytes_per_example"]
    blocked = empirical_ntk(model, batch, params="head", implementation="reference", memory_budget_gb=tight / 1024**3)
    assert blocked.meta["block_examples"] == 2 and rel(blocked.values, ref.values) < 1e-12


def test_cache_roundtrip(qv, tmp_path):
    model, _, batch = qv
    first = empirical_ntk(model, batch, output="trace", cache=tmp_path)
    again = empirical_ntk(model, batch, output="trace", cache=tmp_path)
    assert first.meta["cache"] == "written" and again.meta["cache"] == "hit" and again.seconds == 0
    assert torch.equal(first.values, again.values) and again.per_layer.keys() == first.per_layer.keys()
    other = empirical_ntk(model, batch, output="trace", kernel="signgd", cache=tmp_path)
    assert other.meta["cache"] == "written"
    name = next(n for n, _ in model.named_parameters() if "lora_B" in n)
    param = dict(model.named_parameters())[name]
    with torch.no_grad():
        param.add_(0.01)
    try:
        assert empirical_ntk(model, batch, output="trace", cache=tmp_path).meta["cache"] == "written"
    finally:
        with torch.no_grad():
            param.sub_(0.01)


def test_plan_buckets_covers_every_example_once():
    lengths = torch.tensor([5, 64, 7, 7, 30, 31, 64, 2, 12, 12, 12, 50] * 20)
    buckets = plan_buckets(lengths, max_tokens=256)
    seen = torch.cat([idx for idx, _ in buckets])
    assert torch.equal(seen.sort().values, torch.arange(len(lengths)))
    for idx, length in buckets:
        assert lengths[idx].max() <= length and len(idx) * length <= max(256, length)
    padded = sum(len(idx) * length for idx, length in buckets)
    assert padded < 1.2 * lengths.sum()


def test_bad_inputs_raise_one_line_errors(qv):
    model, tokenizer, batch = qv
    cases = {
        "empty": lambda: empirical_ntk(model, {"input_ids": torch.zeros(0, 4, dtype=torch.long),
                                               "attention_mask": torch.zeros(0, 4, dtype=torch.long)}),
        "no mask": lambda: empirical_ntk(model, {"input_ids": batch["input_ids"]}),
        "params match nothing": lambda: empirical_ntk(model, batch, params=["no_such_module"]),
        "full weights match nothing": lambda: empirical_ntk(model, batch, params=FullWeights(targets=("nope",))),
        "unknown kernel": lambda: empirical_ntk(model, batch, kernel="adam"),
        "unknown output": lambda: empirical_ntk(model, batch, output="diag"),
        "unknown implementation": lambda: empirical_ntk(model, batch, implementation="gpu"),
        "over budget": lambda: empirical_ntk(model, batch, memory_budget_gb=1e-6),
        "result over budget": lambda: empirical_ntk(model, batch, output="trace", memory_budget_gb=1e-9),
        "unknown params": lambda: empirical_ntk(model, batch, params=42),
    }
    for what, call in cases.items():
        with pytest.raises(LinftError) as err:
            call()
        assert "\n" not in str(err.value) and len(str(err.value)) > 20, what
    with pytest.raises(LinftError, match="GB"):
        empirical_ntk(model, batch, memory_budget_gb=1e-6)
    three, tok3 = _lora_model(["query"], layers=[0], perturb=False, num_labels=3)
    with pytest.raises(LinftError, match="binary"):
        empirical_ntk(three, tok3(TEXTS[:2], padding=True, return_tensors="pt"), output="logit_diff")


def test_non_finite_weights_raise(qv):
    model, _, batch = qv
    name = next(n for n, _ in model.named_parameters() if "lora_B" in n)
    param = dict(model.named_parameters())[name]
    saved = param.detach().clone()
    with torch.no_grad():
        param[0, 0] = math.nan
    try:
        for impl in ("fast", "reference"):
            with pytest.raises(LinftError, match="non-finite"):
                empirical_ntk(model, batch, implementation=impl)
    finally:
        with torch.no_grad():
            param.copy_(saved)
    assert torch.isfinite(empirical_ntk(model, batch, output="trace").values).all()


def test_kernel_matrix_shapes():
    values = torch.arange(2 * 2 * 3 * 3, dtype=torch.float64).reshape(2, 2, 3, 3)
    k = Kernel(values, {}, "full", "sgd", "x", 1, 0.0, "fast", {})
    mat = k.matrix()
    assert mat.shape == (6, 6) and mat[1 * 3 + 2, 0 * 3 + 1] == values[1, 0, 2, 1]


def _smollm2_ready() -> bool:
    import os

    from linft.paths import cache_root

    cached = cache_root() / "models" / "smollm2-135m-instruct-q4_1-f32" / "model.safetensors"
    return cached.exists() or os.environ.get("LINFT_SLOW") == "1"


@pytest.mark.skipif(not _smollm2_ready(), reason="SmolLM2 not cached (dequantizing its GGUF takes ~30 s): set LINFT_SLOW=1")
def test_decoder_smollm2_fast_equals_reference():
    """A Llama decoder (last-token pooling, right padding) in float32: fast == reference to float32 precision."""
    model, tokenizer = models.load("smollm2", num_labels=2, seed=0)
    tokenizer.padding_side = "right"
    model = models.add_lora(model, ["q_proj", "v_proj"], rank=4, alpha=8, layers=[20, 29])
    _perturb_lora_b(model, scale=0.02)
    batch = tokenizer(TEXTS[:3], padding=True, return_tensors="pt")
    fast = empirical_ntk(model, batch, params="trainable")
    ref = empirical_ntk(model, batch, params="trainable", implementation="reference")
    assert list(fast.per_layer) == ["layer20", "layer29", "head"]
    assert rel(fast.values, ref.values) < 2e-5
