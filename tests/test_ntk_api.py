"""linft.ntk, the public API: fast == reference == explicit J Jᵀ for every kernel variant and output,
padding-invariance, per-layer sums and ``Kernel.blocks``, SGD-kernel symmetry/PSD, the B-only kernel at
initialization, full weights, the memory plan at work, bad inputs.

The plan, the cache and the parameter selection on their own: test_ntk_plan.py, test_ntk_cache.py,
test_ntk_params.py. Models run in float64 so that implementations summing in different orders agree to ~1e-15
(the bar is 1e-6).
"""

import copy
import math

import pytest
import torch

from linft import LinftError, models, ntk
from linft.ntk import FullWeights, Kernel, empirical_ntk, explicit_jacobian

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
def _single_thread_and_fresh_models(one_thread):
    """One intra-op thread (conftest's ``one_thread``: small kernels run fastest so on shared cores); drop the
    loaded base models after this module."""
    yield
    _BASE.clear()


def test_public_names():
    assert (ntk.KERNELS, ntk.OUTPUTS, ntk.IMPLEMENTATIONS) == (KERNELS, OUTPUTS, ("fast", "reference"))
    for name in ("empirical_ntk", "Kernel", "FullWeights", "explicit_jacobian", "plan_memory", "MemoryPlan"):
        assert name in ntk.__all__ and hasattr(ntk, name)


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
    batch2 = tokenizer(TEXTS[1:4] + ["not my cup of tea, though the score is lovely"], padding=True,
                       return_tensors="pt")
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


def test_outputs_are_the_models_logits(qv):
    """``Kernel.outputs``/``outputs2`` are the logits of each batch, in batch order, from either implementation."""
    from linft.functional import batch_logits

    model, tokenizer, batch = qv
    batch2 = tokenizer(TEXTS[2:] + ["not my cup of tea, though the score is lovely"], padding=True,
                       return_tensors="pt")
    want, want2 = batch_logits(model, batch), batch_logits(model, batch2)
    assert want.shape == (5, 2) and (want[:, 1] - want[:, 0]).abs().min() > 0  # distinct rows: order is checked
    for implementation in ("fast", "reference"):
        K = empirical_ntk(model, batch, batch2, output="logit_diff", implementation=implementation)
        assert K.outputs.dtype == K.outputs2.dtype == torch.float64
        assert K.outputs.shape == (5, 2) and K.outputs2.shape == (4, 2)
        assert rel(K.outputs, want) < 1e-9 and rel(K.outputs2, want2) < 1e-9, implementation
        assert empirical_ntk(model, batch, output="trace", implementation=implementation).outputs2 is None


def test_first_is_the_kernel_of_the_first_examples(qv):
    """``Kernel.first(n)`` of a kernel over joined examples equals the kernel of the first ``n`` alone."""
    model, _, batch = qv
    joint = empirical_ntk(model, batch, params="trainable")  # 5 examples, per-layer blocks, output "full"
    alone = empirical_ntk(model, {k: v[:3] for k, v in batch.items()}, params="trainable")
    first = joint.first(3)
    assert first.values.shape == alone.values.shape == (3, 3, 2, 2) and rel(first.values, alone.values) < 1e-6
    assert first.per_layer.keys() == alone.per_layer.keys()
    assert all(rel(first.per_layer[g], alone.per_layer[g]) < 1e-6 for g in alone.per_layer)
    assert rel(first.outputs, alone.outputs) < 1e-6 and first.outputs2 is None
    assert first.meta["N"] == first.meta["M"] == 3 and first.meta["joint_examples"] == 5
    first.matrix()  # square: usable as a kernel of its own
    with pytest.raises(LinftError, match="n must be an integer in 1..5"):
        joint.first(6)
    with pytest.raises(LinftError, match="needs a one-batch kernel"):
        empirical_ntk(model, batch, {k: v[:2] for k, v in batch.items()}).first(2)


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


def test_blocks_without_head_is_the_lora_kernel(qv):
    model, tokenizer, batch = qv
    batch2 = tokenizer(TEXTS[1:3], padding=True, return_tensors="pt")
    for output in ("full", "trace"):
        both = empirical_ntk(model, batch, batch2, params="trainable", output=output)
        lora = empirical_ntk(model, batch, batch2, params="lora", output=output)
        no_head = both.blocks(exclude=("head",))
        assert no_head.shape == lora.values.shape == ((5, 2, 2, 2) if output == "full" else (5, 2))
        assert rel(no_head, lora.values) < 1e-10
        assert rel(no_head, both.values) > 1e-6  # the head's block was left out, and it is not negligible
        assert rel(both.blocks(), both.values) < 1e-12
        assert rel(both.blocks(exclude="head"), no_head) < 1e-15
        assert rel(both.blocks(exclude=["head", "layer0"]), no_head - both.per_layer["layer0"]) < 1e-12
    assert rel(lora.blocks(exclude=("head",)), lora.values) < 1e-12  # no head block: nothing to drop
    no_head.zero_()
    assert both.per_layer["layer0"].abs().max() > 0 and both.values.abs().max() > 0  # a new tensor, not a view


def test_blocks_errors(qv):
    model, _, batch = qv
    k = empirical_ntk(model, batch, params="head", output="trace")
    flat = empirical_ntk(model, batch, params="trainable", output="trace", per_layer=False)
    cases = {
        "no per-layer blocks": (lambda: flat.blocks(exclude=("head",)), "per_layer=True"),
        "nothing left": (lambda: k.blocks(exclude=("head",)), "leaves no block"),
        "not a group name": (lambda: k.blocks(exclude=("heads",)), "no group name"),
    }
    for what, (call, match) in cases.items():
        with pytest.raises(LinftError, match=match) as err:
            call()
        assert "\n" not in str(err.value), what


def test_fast_path_needs_linear_parameters_reference_does_not(qv):
    model, _, batch = qv
    norm = next(p for n, p in model.named_parameters() if n.endswith("layer.5.output.LayerNorm.weight"))
    norm.requires_grad_(True)
    try:
        params = ["layer.5.output.LayerNorm.weight"]
        with pytest.raises(LinftError, match="implementation='reference'") as err:
            empirical_ntk(model, batch, params=params)
        assert "LayerNorm.weight" in str(err.value)
        j, names = explicit_jacobian(model, batch, params)
        assert len(names) == 1 and j.abs().max() > 0
        ref = empirical_ntk(model, batch, params=params, implementation="reference")
        assert list(ref.per_layer) == ["layer5"]
        assert rel(ref.values, explicit_kernel(j, j, "full", "sgd")) < 1e-6
    finally:
        norm.requires_grad_(False)


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
        "budget not positive": lambda: empirical_ntk(model, batch, memory_budget_gb=0),
        "left padded": lambda: empirical_ntk(model, {"input_ids": batch["input_ids"],
                                                     "attention_mask": batch["attention_mask"].flip(1)}),
        "not a batch": lambda: empirical_ntk(model, "a fine film"),
        "explicit_jacobian output": lambda: explicit_jacobian(model, batch, output="diag"),
    }
    for what, call in cases.items():
        with pytest.raises(LinftError) as err:
            call()
        assert "\n" not in str(err.value) and len(str(err.value)) > 20, what
    with pytest.raises(LinftError, match="GB"):
        empirical_ntk(model, batch, memory_budget_gb=1e-6)
    for arg, value in (("kernel", "adam"), ("output", "diag"), ("implementation", "gpu")):
        with pytest.raises(LinftError, match=f"unknown {arg} '{value}': use one of"):
            empirical_ntk(model, batch, **{arg: value})
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


@pytest.mark.skipif(not _smollm2_ready(), reason="SmolLM2 not cached (dequantizing its GGUF is slow): set LINFT_SLOW=1")
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


def test_empirical_ntk_leaves_every_module_in_its_own_mode(tiny_lora):
    """A peft wrapper starts in training mode around modules in eval mode; the kernel must not switch dropout on."""
    model, batch = tiny_lora(["a fine film", "dull"], [1, 0])
    model.train()
    for name, module in model.named_modules():
        module.training = "dropout" not in name  # a mix of flags
    flags = {name: module.training for name, module in model.named_modules()}
    empirical_ntk(model, batch, params="lora")
    empirical_ntk(model, batch, params="lora", implementation="reference")
    assert {name: module.training for name, module in model.named_modules()} == flags


def test_empirical_ntks_equals_one_call_per_variant(tiny_lora, one_thread):
    from linft.ntk import empirical_ntks

    model, batch = tiny_lora(["a fine film", "dull and long", "great fun"], [1, 0, 1])
    other = {k: v[:2] for k, v in batch.items()}
    together = empirical_ntks(model, batch, other, params="trainable", kernels=("asym_signgd", "signgd", "sgd"))
    assert list(together) == ["asym_signgd", "signgd", "sgd"]
    for variant, kernel in together.items():
        alone = empirical_ntk(model, batch, other, params="trainable", kernel=variant)
        torch.testing.assert_close(kernel.values, alone.values, rtol=1e-12, atol=0)
        assert set(kernel.per_layer) == set(alone.per_layer) and kernel.kernel == variant
    assert not torch.allclose(together["sgd"].values, together["signgd"].values)


def test_empirical_ntks_refuses_no_or_unknown_variants(tiny_lora):
    from linft.ntk import empirical_ntks

    model, batch = tiny_lora(["a", "b"], [0, 1])
    with pytest.raises(LinftError, match="non-empty tuple"):
        empirical_ntks(model, batch, kernels=())
    with pytest.raises(LinftError, match="non-empty tuple"):
        empirical_ntks(model, batch, kernels="sgd")
    with pytest.raises(LinftError, match="kernel"):
        empirical_ntks(model, batch, kernels=("sgd", "nope"))
