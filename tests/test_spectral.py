"""linft.spectral: eigen-decomposition, condition numbers, rank measures, extreme eigenvalues."""

import math

import numpy as np
import pytest
import torch

from linft import LinftError, spectral


def random_psd(n: int, seed: int = 0, rank: int | None = None) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, rank or n, generator=g, dtype=torch.float64)
    return X @ X.T / (rank or n)


def jacobian_kernel(n: int = 12, seed: int = 0) -> torch.Tensor:
    """eNTK J Jᵀ of a tiny MLP from an explicit per-example Jacobian (the definition the NTK code implements)."""
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 1)).double()
    x = torch.randn(n, 5, dtype=torch.float64)
    rows = []
    for i in range(n):
        grads = torch.autograd.grad(net(x[i : i + 1]).sum(), list(net.parameters()))
        rows.append(torch.cat([g.reshape(-1) for g in grads]))
    J = torch.stack(rows)
    return J @ J.T, J


# ---------------------------------------------------------------------------------------------- eigh


def test_eigh_ascending_and_reconstructs():
    K = random_psd(30, seed=1)
    values, vectors = spectral.eigh(K)
    assert values.dtype == torch.float64 and vectors.shape == (30, 30)
    assert torch.all(values[1:] >= values[:-1])
    assert torch.allclose(vectors @ torch.diag(values) @ vectors.T, K, atol=1e-12)


def test_eigh_symmetrizes_roundoff_and_accepts_numpy_float32():
    K = random_psd(10, seed=2)
    noisy = K + 1e-12 * torch.randn(10, 10, dtype=torch.float64)
    values, _ = spectral.eigh(noisy.numpy().astype(np.float32))
    assert values.dtype == torch.float64
    assert torch.allclose(values, torch.linalg.eigvalsh(K), atol=1e-5)


def test_eigh_refuses_asymmetric_unless_told():
    A = torch.tensor([[2.0, 1.0], [0.0, 1.0]], dtype=torch.float64)
    with pytest.raises(LinftError, match="not symmetric"):
        spectral.eigh(A)
    values, _ = spectral.eigh(A, check_symmetric=False)
    assert torch.allclose(values, torch.linalg.eigvalsh((A + A.T) / 2))


def test_four_d_full_kernel_is_flattened():
    K = random_psd(6, seed=3)  # N=3 examples x C=2 outputs, example-major
    four = K.reshape(3, 2, 3, 2).permute(0, 2, 1, 3)
    assert torch.allclose(spectral.as_matrix(four), K)
    assert torch.allclose(spectral.eigenvalues(four), torch.linalg.eigvalsh(K))


def test_kernel_like_object_uses_matrix():
    K = random_psd(5, seed=4)

    class FakeKernel:
        kernel = "sgd"

        def matrix(self):
            return K

    assert spectral.condition_number(FakeKernel()) == pytest.approx(spectral.condition_number(K))


# ---------------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "bad, match",
    [
        (torch.zeros(3, 4), "square"),
        (torch.zeros(0, 0), "empty"),
        (torch.tensor([[1.0, float("nan")], [float("nan"), 1.0]]), "non-finite"),
        (torch.tensor([[1.0, 0.0], [0.0, float("inf")]]), "non-finite"),
        (torch.zeros(2, 3, 2, 2), "4-D"),
        ("not a matrix", "square matrix"),
        (torch.zeros(2, 2, dtype=torch.complex128), "complex"),
    ],
)
def test_bad_inputs_raise_one_line(bad, match):
    for fn in (spectral.eigh, spectral.spectrum_report, spectral.condition_number, spectral.eigenvalues):
        with pytest.raises(LinftError, match=match) as info:
            fn(bad)
        assert "\n" not in str(info.value)


def test_bad_parameters():
    K = torch.eye(3, dtype=torch.float64)
    with pytest.raises(LinftError, match="ridge"):
        spectral.condition_number(K, ridge=-1.0)
    with pytest.raises(LinftError, match="rtol"):
        spectral.spectrum_report(K, rtol=2.0)
    with pytest.raises(LinftError, match="empty"):
        spectral.condition_number([])
    with pytest.raises(LinftError, match="NaN"):
        spectral.condition_number(np.array([1.0, np.nan]))


# ---------------------------------------------------------------------------------------------- κ


def test_condition_number_of_known_matrices():
    assert spectral.condition_number(torch.eye(4)) == pytest.approx(1.0)
    D = torch.diag(torch.tensor([1.0, 10.0, 100.0], dtype=torch.float64))
    assert spectral.condition_number(D) == pytest.approx(100.0)
    # a rotated diagonal matrix has the same κ
    Q, _ = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0)))
    assert spectral.condition_number(Q @ D @ Q.T) == pytest.approx(100.0)
    # eigenvalues given directly (any order)
    assert spectral.condition_number([100.0, 1.0, 10.0]) == pytest.approx(100.0)
    assert spectral.condition_number(np.array([2.0, 8.0])) == pytest.approx(4.0)


def test_condition_number_with_ridge():
    D = torch.diag(torch.tensor([1.0, 10.0, 100.0], dtype=torch.float64))
    assert spectral.condition_number(D, ridge=1.0) == pytest.approx(101.0 / 2.0)
    singular = torch.diag(torch.tensor([0.0, 4.0], dtype=torch.float64))
    assert spectral.condition_number(singular) == math.inf
    assert spectral.condition_number(singular, ridge=0.5) == pytest.approx(4.5 / 0.5)
    # a negative eigenvalue is clipped at 0 under a ridge: finite, (λmax+σ)/σ
    indefinite = torch.diag(torch.tensor([-1e-3, 4.0], dtype=torch.float64))
    assert spectral.condition_number(indefinite) == math.inf
    assert spectral.condition_number(indefinite, ridge=1e-4) == pytest.approx((4.0 + 1e-4) / 1e-4)


# ---------------------------------------------------------------------------------------------- report


def test_report_of_psd_kernel_from_jacobian():
    K, J = jacobian_kernel(n=12)
    report = spectral.spectrum_report(K, ridge=1e-3)
    assert report.n == 12 and report.symmetric and report.note == ""
    assert report.lambda_min > 0 and report.n_negative == 0
    assert report.kappa == pytest.approx(report.lambda_max / report.lambda_min)
    assert report.kappa_ridge == pytest.approx((report.lambda_max + 1e-3) / (report.lambda_min + 1e-3))
    assert report.trace == pytest.approx(float((J**2).sum()))
    assert report.trace == pytest.approx(float(report.eigenvalues.sum()))
    assert 1.0 <= report.effective_rank <= 12.0 and 1.0 <= report.participation_ratio <= 12.0
    row = report.as_dict()
    assert "eigenvalues" not in row and row["kappa"] == report.kappa
    assert "κ=" in str(report)


def test_report_negative_eigenvalues_gives_inf_kappa_and_note():
    K = torch.diag(torch.tensor([-0.5, 1e-14, 1.0, 2.0], dtype=torch.float64))
    report = spectral.spectrum_report(K, ridge=0.1)
    assert report.n_negative == 1 and report.n_near_zero == 1
    assert report.kappa == math.inf
    assert math.isfinite(report.kappa_ridge) and report.kappa_ridge == pytest.approx(2.1 / 0.1)
    assert "λmin ≤ 0" in report.note and "not PSD" in report.note
    assert "\n" not in report.note
    no_ridge = spectral.spectrum_report(K)
    assert no_ridge.kappa_ridge == math.inf and "ridge > 0" in no_ridge.note


def test_report_singular_kernel_note():
    K = random_psd(8, seed=5, rank=3)
    report = spectral.spectrum_report(K, rtol=1e-10)
    assert report.n_near_zero == 5
    assert report.kappa == math.inf or report.kappa > 1e10
    assert report.note  # either "singular" (λmin ≤ 0) or "set by round-off"
    assert report.effective_rank <= 3.0 + 1e-6
    assert report.participation_ratio <= 3.0 + 1e-6


def test_report_zero_matrix():
    report = spectral.spectrum_report(torch.zeros(3, 3), ridge=1.0)
    assert report.kappa == math.inf and report.kappa_ridge == pytest.approx(1.0)
    assert "zero matrix" in report.note and report.effective_rank == 0.0


def test_effective_rank_identity_and_rank_one():
    assert spectral.effective_rank(torch.eye(7)) == pytest.approx(7.0)
    assert spectral.participation_ratio(3.0 * torch.eye(7)) == pytest.approx(7.0)
    v = torch.arange(1.0, 9.0, dtype=torch.float64)
    rank_one = torch.outer(v, v)
    assert spectral.effective_rank(rank_one) == pytest.approx(1.0, abs=1e-6)
    assert spectral.participation_ratio(rank_one) == pytest.approx(1.0, abs=1e-6)
    # two equal eigenvalues and the rest zero: both measures give 2
    assert spectral.effective_rank([0.0, 0.0, 5.0, 5.0]) == pytest.approx(2.0)
    assert spectral.participation_ratio([0.0, 0.0, 5.0, 5.0]) == pytest.approx(2.0)


def test_asymmetric_kernel_uses_real_parts_and_says_so():
    A = torch.tensor([[3.0, 1.0, 0.0], [0.2, 2.0, 0.0], [0.0, 0.5, 1.0]], dtype=torch.float64)
    report = spectral.spectrum_report(A)
    expected = torch.sort(torch.linalg.eigvals(A).real).values
    assert not report.symmetric
    assert torch.allclose(report.eigenvalues, expected)
    assert "not symmetric" in report.note and "real parts" in report.note
    # a rotation has complex eigenvalues ±i: real parts 0, imaginary parts reported
    R = torch.tensor([[0.0, -1.0], [1.0, 0.0]], dtype=torch.float64)
    rot = spectral.spectrum_report(R, ridge=1.0)
    assert rot.max_imag == pytest.approx(1.0) and rot.kappa == math.inf and math.isfinite(rot.kappa_ridge)


def test_declared_asymmetric_kernel_object():
    K = random_psd(4, seed=6)

    class AsymKernel:
        kernel = "asym_signgd"

        def matrix(self):
            return K

    report = spectral.spectrum_report(AsymKernel())
    assert not report.symmetric and "not symmetric" in report.note
    assert torch.allclose(report.eigenvalues, torch.linalg.eigvalsh(K))


def test_layer_shares_sum_to_one():
    K1, K2 = random_psd(6, seed=11), 3 * random_psd(6, seed=12)
    shares = spectral.layer_shares({"layer0": K1, "head": K2})
    assert sum(shares.values()) == pytest.approx(1.0)
    assert shares["head"] == pytest.approx(float(K2.trace() / (K1.trace() + K2.trace())))
    four = K1.reshape(3, 2, 3, 2).permute(0, 2, 1, 3)  # [N, N, C, C] blocks work too
    assert spectral.layer_shares({"a": four, "b": four})["a"] == pytest.approx(0.5)
    with pytest.raises(LinftError, match="per_layer=True"):
        spectral.layer_shares({})
    with pytest.raises(LinftError, match="zero total trace"):
        spectral.layer_shares({"a": torch.zeros(2, 2)})


# ---------------------------------------------------------------------------------------------- extremes


def test_lanczos_matches_eigh_on_random_psd_200():
    K = random_psd(200, seed=7)
    exact = torch.linalg.eigvalsh(K)
    got = spectral.extreme_eigenvalues(K, k=3, which="both", method="lanczos")
    assert torch.allclose(got["largest"], exact.flip(0)[:3], rtol=1e-8, atol=1e-10)
    assert torch.allclose(got["smallest"], exact[:3], rtol=1e-6, atol=1e-10)


def test_lanczos_with_matvec():
    K = random_psd(120, seed=8)
    exact = torch.linalg.eigvalsh(K)
    got = spectral.extreme_eigenvalues(lambda x: K @ x, n=120, k=2, which="largest")
    assert set(got) == {"largest"}
    assert torch.allclose(got["largest"], exact.flip(0)[:2], rtol=1e-8)


def test_lobpcg_matches_eigh():
    K = random_psd(200, seed=9)
    exact = torch.linalg.eigvalsh(K)
    got = spectral.extreme_eigenvalues(K, k=2, which="largest", method="lobpcg")
    assert torch.allclose(got["largest"], exact.flip(0)[:2], rtol=1e-6)
    small = spectral.extreme_eigenvalues(lambda x: K @ x, n=200, k=1, which="smallest", method="lobpcg",
                                         tol=1e-6, maxiter=2000)
    assert small["smallest"][0] == pytest.approx(float(exact[0]), rel=1e-3, abs=1e-6)


def test_extreme_eigenvalues_bad_input():
    K = random_psd(10)
    with pytest.raises(LinftError, match="which"):
        spectral.extreme_eigenvalues(K, which="middle")
    with pytest.raises(LinftError, match="method"):
        spectral.extreme_eigenvalues(K, method="power")
    with pytest.raises(LinftError, match="too large"):
        spectral.extreme_eigenvalues(K, k=10)
    with pytest.raises(LinftError, match="n="):
        spectral.extreme_eigenvalues(lambda x: x)
    with pytest.raises(LinftError, match="symmetric"):
        spectral.extreme_eigenvalues(torch.triu(K))


# ---------------------------------------------------------------------------------------------- figures
# (linft.plots.ntk draws what this module computes; smoke tests live here to keep one test file per topic)


def test_ntk_figures_return_figures():
    import matplotlib

    matplotlib.use("Agg")  # tests only; chapters never set a backend
    import matplotlib.pyplot as plt
    import pandas as pd

    from linft.plots import ntk as ntk_plots

    K = random_psd(12, seed=10)
    fig = ntk_plots.spectra({"a": spectral.eigenvalues(K), "b": torch.tensor([-1.0, 0.5, 2.0])})
    assert "1 ≤ 0 not shown" in fig.axes[0].get_legend().get_texts()[1].get_text()
    frame = pd.DataFrame({"n": [4, 8, 16, 4, 8, 16], "kappa": [10, 100, math.inf, 5, 50, 500],
                          "task": ["x"] * 3 + ["y"] * 3})
    assert "1 infinite" in ntk_plots.kappa_vs_n(frame).axes[0].get_title()
    targets = pd.DataFrame({"targets": ["q,v", "q,k,v"] * 2, "kappa": [10.0, 20.0, 30.0, 40.0],
                            "task": ["x", "x", "y", "y"]})
    ntk_plots.kappa_by_targets(targets)
    shares = pd.DataFrame({"layer": ["layer0", "layer1", "head"], "share": [0.2, 0.3, 0.5]})
    ntk_plots.layer_contributions(shares)
    A = K.clone()
    A[0, 1] += 0.3  # asymmetric variant
    fig = ntk_plots.kernel_variants({"sgd": K, "signgd": K**2, "asym": A})
    assert len(fig.axes) == 2
    with pytest.raises(LinftError, match="missing"):
        ntk_plots.kappa_vs_n(frame.drop(columns="kappa"))
    with pytest.raises(LinftError, match="at least two"):
        ntk_plots.kernel_variants({"sgd": K})
    plt.close("all")


# ---------------------------------------------------------------------------------------------- asymmetric kernels


def test_symmetric_part_and_singular_values_match_numpy():
    rng = np.random.default_rng(3)
    for n in (1, 5, 12):
        A = rng.standard_normal((n, n))
        S = spectral.symmetric_part(A)
        assert S.dtype == torch.float64 and torch.equal(S, S.T)
        assert np.allclose(S.numpy(), (A + A.T) / 2, atol=0, rtol=0)
        assert np.allclose(spectral.singular_values(A).numpy(), np.linalg.svd(A, compute_uv=False), rtol=1e-12)
        assert spectral.singular_condition_number(A) == pytest.approx(np.linalg.cond(A, 2), rel=1e-10)
    # a 4-D [N, N, C, C] kernel is flattened first, as everywhere in linft.spectral
    K4 = torch.as_tensor(rng.standard_normal((3, 3, 2, 2)))
    assert torch.equal(spectral.symmetric_part(K4), spectral.symmetric_part(spectral.as_matrix(K4)))


def test_singular_condition_number_of_symmetric_and_singular_kernels():
    K = random_psd(10, seed=4)
    assert spectral.singular_condition_number(K) == pytest.approx(spectral.condition_number(K), rel=1e-9)
    assert spectral.singular_condition_number(torch.diag(torch.tensor([2.0, -0.5]))) == pytest.approx(4.0)
    assert spectral.singular_condition_number(torch.zeros(3, 3)) == math.inf
    assert spectral.singular_condition_number(torch.tensor([[1.0, 1.0], [0.0, 0.0]])) == math.inf
    with pytest.raises(LinftError, match="square"):
        spectral.singular_condition_number(torch.ones(2, 3))


def test_symmetric_part_decides_whether_the_residual_norm_shrinks():
    # r' = -K r: d|r|^2/dt = -2 r^T sym(K) r; a rotation-like K has eigenvalues with positive real parts but an
    # indefinite symmetric part, so |r| grows along some direction
    K = torch.tensor([[1.0, 4.0], [0.0, 1.0]], dtype=torch.float64)
    assert (torch.linalg.eigvals(K).real > 0).all()
    values, vectors = torch.linalg.eigh(spectral.symmetric_part(K))
    assert values[0] < 0
    r = vectors[:, 0]
    assert float(-2 * r @ K @ r) > 0


def test_top_share():
    assert spectral.top_share(torch.eye(30)) == pytest.approx(0.1)  # 3 of 30, not 4 (no float ceil surprise)
    assert spectral.top_share(torch.diag(torch.tensor([5.0, 0.0, 0.0, 0.0]))) == pytest.approx(1.0)
    values = np.array([4.0, 3.0, 2.0, 1.0])
    assert spectral.top_share(values, fraction=0.5) == pytest.approx(0.7)
    assert spectral.top_share(values, fraction=1.0) == pytest.approx(1.0)
    K = random_psd(20, seed=5)
    eig = np.sort(np.linalg.eigvalsh(K.numpy()))[::-1]
    assert spectral.top_share(K, 0.25) == pytest.approx(eig[:5].sum() / eig.sum(), rel=1e-10)
    assert spectral.top_share(torch.zeros(3, 3)) == 0.0
    for bad in (0, 1.5, True):
        with pytest.raises(LinftError, match="fraction"):
            spectral.top_share(K, bad)


def test_kappa_from_extremes_is_the_one_formula():
    assert spectral.kappa_from_extremes(4.0, 2.0) == 2.0
    assert spectral.kappa_from_extremes(4.0, 2.0, 1.0) == 5.0 / 3.0
    assert spectral.kappa_from_extremes(4.0, 0.0) == math.inf
    assert spectral.kappa_from_extremes(4.0, -1.0, 0.5) == math.inf
    K = random_psd(9, seed=3)
    values = spectral.eigenvalues(K)
    lmax, lmin = float(values[-1]), float(values[0])
    assert spectral.condition_number(K) == spectral.kappa_from_extremes(lmax, lmin)
    assert spectral.condition_number(K, ridge=0.3) == spectral.kappa_from_extremes(lmax, lmin, 0.3)
    report = spectral.spectrum_report(K, ridge=0.3)
    assert (report.kappa, report.kappa_ridge) == (spectral.kappa_from_extremes(report.lambda_max, report.lambda_min),
                                                  spectral.kappa_from_extremes(report.lambda_max, report.lambda_min,
                                                                               0.3))
