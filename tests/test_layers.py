"""linft.layers: per-layer kernels sum to the kernel of a model adapted on those layers only; Weyl bounds contain every
exact eigenvalue; selection finds the true optimum."""

import itertools

import pytest
import torch

from linft import LinftError, models
from linft.layers import LayerKernels, select_layers, weyl_sum_bounds
from linft.ntk import empirical_ntk

TEXTS = ["a gripping, funny film", "dull and far too long", "the cast is wonderful", "i want my two hours back",
         "smart writing and a big heart", "a mess from start to finish"]
LABELS = [1, 0, 1, 0, 1, 0]


def _psd(n, rank, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, rank, generator=g, dtype=torch.float64)
    return x @ x.T * torch.rand(1, generator=g, dtype=torch.float64) * 10


@pytest.mark.parametrize("seed", range(20))
def test_weyl_bounds_contain_exact_eigenvalues_of_random_psd_sums(seed):
    n = 12
    mats = [_psd(n, rank, seed * 7 + k) for k, rank in enumerate([3, n, 1, 7][: 2 + seed % 3])]
    lower, upper = weyl_sum_bounds([torch.linalg.eigvalsh(m) for m in mats])
    exact = torch.linalg.eigvalsh(sum(mats))
    slack = 1e-9 * float(exact.abs().max())
    assert bool((exact >= lower - slack).all()) and bool((exact <= upper + slack).all())
    assert bool((lower <= upper + slack).all())
    for m in mats:  # adding PSD matrices never lowers an eigenvalue: the fold keeps that bound
        assert bool((lower >= torch.linalg.eigvalsh(m) - slack).all())


def test_weyl_bounds_are_attained_by_aligned_and_misaligned_diagonals():
    a = torch.tensor([0.0, 0.0, 1.0])
    # two rank-one PSD matrices of eigenvalue 1 in 3-D: bounds [0, 0, 1] ≤ λ ≤ [0, 1, 2]. The aligned sum
    # diag(0,0,2) attains upper[2] and lower[1]; the misaligned diag(1,0,0) + diag(0,0,1) attains upper[1] and lower[2]
    lower, upper = weyl_sum_bounds([a, a])
    assert lower.tolist() == [0.0, 0.0, 1.0] and upper.tolist() == [0.0, 1.0, 2.0]
    assert torch.linalg.eigvalsh(torch.diag(a) + torch.diag(a)).tolist() == [0.0, 0.0, 2.0]
    assert torch.linalg.eigvalsh(torch.diag(torch.tensor([1.0, 0, 0])) + torch.diag(a)).tolist() == [0.0, 1.0, 1.0]
    single_lower, single_upper = weyl_sum_bounds([torch.tensor([3.0, 1.0, 2.0])])
    assert single_lower.tolist() == single_upper.tolist() == [1.0, 2.0, 3.0]


@pytest.mark.parametrize(("spectra", "match"), [
    ([], "list of spectra"),
    ([torch.ones(3), torch.ones(4)], "same size"),
    ([torch.tensor([1.0, float("nan")])], "non-finite"),
])
def test_weyl_bounds_reject_bad_input(spectra, match):
    with pytest.raises(LinftError, match=match):
        weyl_sum_bounds(spectra)


@pytest.fixture(scope="module")
def minilm(one_thread):
    """MiniLM with LoRA(q, v) on all 6 layers, a head seeded 0, and a batch of 6 examples of 16 tokens."""
    base = models.load("minilm", num_labels=2, seed=0)
    enc = base.tokenizer(TEXTS, padding="max_length", max_length=16, truncation=True, return_tensors="pt")
    batch = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"], "labels": torch.tensor(LABELS)}
    return models.add_lora(base.model, "qv", rank=4, seed=3), batch


@pytest.fixture(scope="module")
def lk(minilm):
    model, batch = minilm
    return LayerKernels.compute(model, batch)


def _adapted_only(layers, train_head=True):
    base = models.load("minilm", num_labels=2, seed=0).model
    return models.add_lora(base, "qv", rank=4, layers=list(layers), seed=3, train_head=train_head)


@pytest.mark.parametrize("layers", [(2,), (0, 5), (1, 3, 4)])
def test_union_kernel_equals_kernel_of_a_model_adapted_on_those_layers_only(lk, minilm, layers):
    _, batch = minilm
    K = empirical_ntk(_adapted_only(layers), batch).matrix()
    assert torch.allclose(lk.matrix(layers), K, rtol=1e-6, atol=1e-6 * float(K.abs().max()))
    assert lk.matrix(layers).shape == (6 * 2, 6 * 2)


def test_trained_head_goes_into_the_fixed_part(minilm):
    model, batch = minilm
    with_head = LayerKernels.compute(model, batch, head="trained")
    K = empirical_ntk(model, batch, params="trainable").matrix()
    assert torch.allclose(with_head.matrix(with_head.layers), K, rtol=1e-9, atol=1e-12 * float(K.abs().max()))
    assert float(with_head.fixed.abs().max()) > 0
    K_head = empirical_ntk(model, batch, params="head").matrix()
    assert torch.allclose(with_head.fixed, K_head, rtol=1e-9, atol=1e-12 * float(K_head.abs().max()))


@pytest.mark.parametrize("lam", [0.0, 0.5])
@pytest.mark.parametrize("head", ["frozen", "trained"])
def test_bounds_contain_every_exact_eigenvalue_of_every_union(minilm, lam, head):
    model, batch = minilm
    kernels = LayerKernels.compute(model, batch, head=head)
    checked = 0
    for k in range(1, len(kernels.layers) + 1):
        for union in itertools.combinations(kernels.layers, k):
            exact, bounds = kernels.exact(union, lam), kernels.bounds(union, lam)
            assert bounds.violations(exact) == 0, union
            assert bounds.kappa_lambda[0] <= exact.kappa_lambda * (1 + 1e-9)
            assert exact.kappa_lambda <= bounds.kappa_lambda[1] * (1 + 1e-9)
            assert bounds.lambda_min[0] <= exact.lambda_min * (1 + 1e-9) + 1e-15
            checked += 1
    assert checked == 2 ** 6 - 1


def test_violations_counts_eigenvalues_outside(lk):
    exact, bounds = lk.exact([0, 1]), lk.bounds([0, 1])
    shifted = type(exact)(**{**exact.__dict__, "eigenvalues": exact.eigenvalues + 2 * float(bounds.upper[-1])})
    assert bounds.violations(shifted) == exact.eigenvalues.numel()
    with pytest.raises(LinftError, match="same union"):
        bounds.violations(lk.exact([0, 2]))


def test_exact_spectrum_numbers_agree_with_eigenvalues(lk):
    s = lk.exact([1, 4], lam=0.5)
    values = torch.linalg.eigvalsh(lk.matrix([1, 4]))
    assert s.lambda_max == pytest.approx(float(values[-1]), rel=1e-9)
    assert s.trace == pytest.approx(float(torch.trace(lk.matrix([1, 4]))), rel=1e-9)
    ridge = lk.n_examples * 0.5
    assert s.kappa_lambda == pytest.approx((s.lambda_max + ridge) / (s.lambda_min + ridge), rel=1e-12)
    assert lk.trace(1) + lk.trace(4) == pytest.approx(s.trace, rel=1e-9)


def test_union_spectrum_is_built_from_the_kernel_spectrum_and_the_one_kappa(lk):
    from linft import predict
    from linft.layers import UnionSpectrum

    spectrum = predict.KernelSpectrum.of(lk.matrix([1, 4]), n_examples=lk.n_examples)
    s = lk.exact([4, 1], lam=0.5)
    assert s.as_dict() == UnionSpectrum.of((1, 4), spectrum, 0.5).as_dict()
    assert (s.lambda_min, s.lambda_max) == (spectrum.mu_min, spectrum.mu_max)
    assert (s.kappa, s.kappa_lambda) == (predict.kappa_lambda(spectrum), predict.kappa_lambda(spectrum, lam=0.5))


@pytest.mark.parametrize("objective", ["kappa_lambda", "lambda_min"])
@pytest.mark.parametrize("budget", [1, 2, 3])
def test_exhaustive_selection_finds_the_brute_force_optimum(lk, objective, budget):
    def score(union):
        s = lk.exact(union, 0.01)
        return s.kappa_lambda if objective == "kappa_lambda" else -s.lambda_min

    best = min(itertools.combinations(lk.layers, budget), key=score)
    choice = select_layers(lk, budget, objective=objective, lam=0.01, method="exhaustive")
    assert choice.layers == best
    assert choice.n_candidates == len(list(itertools.combinations(lk.layers, budget)))
    assert 1 <= choice.n_exact <= choice.n_candidates
    assert choice.bounds.contains(choice.exact)


def test_greedy_path_is_nested_and_never_better_than_exhaustive(lk):
    greedy = select_layers(lk, 3, method="greedy")
    exhaustive = select_layers(lk, 3, method="exhaustive")
    added = [layer for layer, _ in greedy.path]
    assert tuple(sorted(added)) == greedy.layers and len(set(added)) == 3
    assert greedy.value == pytest.approx(lk.exact(greedy.layers).kappa_lambda)
    assert exhaustive.value <= greedy.value * (1 + 1e-12)
    first = min(lk.layers, key=lambda layer: lk.exact([layer]).kappa_lambda)
    assert added[0] == first


@pytest.mark.parametrize(("call", "match"), [
    (lambda lk: select_layers(lk, 7), "larger than the 6 candidate layers"),
    (lambda lk: select_layers(lk, 0), "budget"),
    (lambda lk: select_layers(lk, 2, objective="trace"), "objective"),
    (lambda lk: lk.exact([9]), "not a candidate"),
    (lambda lk: lk.exact([1, 1]), "repeat"),
    (lambda lk: lk.exact([]), "no layers"),
    (lambda lk: lk.bounds(["q"]), "not a layer index"),
    (lambda lk: lk.exact([1], lam=-1), "lam"),
])
def test_bad_input_raises_one_clear_error(lk, call, match):
    with pytest.raises(LinftError, match=match):
        call(lk)


def test_asymmetric_and_non_square_kernels_are_refused(minilm):
    model, batch = minilm
    with pytest.raises(LinftError, match="not symmetric"):
        LayerKernels.from_kernel(empirical_ntk(model, batch, kernel="asym_signgd"))
    half = {k: v[:3] for k, v in batch.items()}
    with pytest.raises(LinftError, match="square"):
        LayerKernels.from_kernel(empirical_ntk(model, batch, half))
    with pytest.raises(LinftError, match="kernel"):
        LayerKernels.compute(model, batch, kernel="asym_signgd")


def test_sign_kernel_is_additive_over_layers_too(minilm):
    model, batch = minilm
    sign = LayerKernels.compute(model, batch, kernel="signgd")
    K = empirical_ntk(_adapted_only((0, 3)), batch, kernel="signgd").matrix()
    assert torch.allclose(sign.matrix([0, 3]), K, rtol=1e-9, atol=1e-9 * float(K.abs().max()))
