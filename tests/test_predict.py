"""linft.predict: kernel-regression predictions equal explicit gradient descent on the linearized model."""

from __future__ import annotations

import math

import pytest
import torch

from linft import LinftError
from linft.ntk import Kernel, empirical_ntk, explicit_jacobian
from linft.predict import (
    KernelRegression,
    KernelSpectrum,
    check_lr,
    descent_lr,
    kappa_lambda,
    max_stable_lr,
    predicted_eval_loss,
    predicted_train_loss,
    targets_from_labels,
)

F64 = torch.float64


# ---------------------------------------------------------------------------------------------- oracle


def problem(N=5, C=3, P=40, M=4, seed=0, shared=False):
    """Random linear model: Jacobians (example-major rows), outputs at θ0 and targets, train and test."""
    g = torch.Generator().manual_seed(seed)
    rows, test_rows = (N, M) if shared else (N * C, M * C)
    J = torch.randn(rows, P, generator=g, dtype=F64) / math.sqrt(P)
    Jt = torch.randn(test_rows, P, generator=g, dtype=F64) / math.sqrt(P)
    f0, f0t = torch.randn(N, C, generator=g, dtype=F64), torch.randn(M, C, generator=g, dtype=F64)
    Y, Yt = torch.randn(N, C, generator=g, dtype=F64), torch.randn(M, C, generator=g, dtype=F64)
    return J, Jt, f0, f0t, Y, Yt


def four_d(K, M, N, C):
    """[M·C, N·C] example-major → [M, N, C, C]."""
    return K.reshape(M, C, N, C).permute(0, 2, 1, 3).contiguous()


def simulate(J, f0, Y, lam, lr, steps, Jt, f0t, Yt, shared=False):
    """Explicit GD on δ = θ − θ0 for f = f0 + J δ with loss (1/(2N))‖f − Y‖² + (λ/2)‖δ‖²."""
    N, C = Y.shape
    M = f0t.shape[0]
    delta = torch.zeros(J.shape[1], C if shared else 1, dtype=F64)
    out = {"loss": [], "drift": [], "objective": [], "test": [], "test_loss": []}
    for _ in range(steps + 1):
        r = f0 + (J @ delta).reshape(N, C) - Y
        ft = f0t + (Jt @ delta).reshape(M, C)
        loss, drift = 0.5 * (r**2).sum() / N, (delta**2).sum()
        out["loss"].append(loss)
        out["drift"].append(drift)
        out["objective"].append(loss + 0.5 * lam * drift)
        out["test"].append(ft)
        out["test_loss"].append(0.5 * ((ft - Yt) ** 2).sum() / M)
        rows = r if shared else r.reshape(-1, 1)
        delta = delta - lr * (J.T @ rows / N + lam * delta)
    return {k: torch.stack(v) for k, v in out.items()}


def close(got, want, rtol=1e-10):
    """Equal to ``rtol`` relative; absolute 1e-14 of the curve's scale (the simulation's own round-off floor)."""
    torch.testing.assert_close(got, want, rtol=rtol, atol=1e-14 * float(want.abs().max()))


def fitted(shared, C, lam, P=40, seed=0):
    J, Jt, f0, f0t, Y, Yt = problem(C=C, P=P, seed=seed, shared=shared)
    N, M = Y.shape[0], f0t.shape[0]
    K, Kt = J @ J.T, Jt @ J.T
    if not shared:
        K, Kt = four_d(K, N, N, C), four_d(Kt, M, N, C)
    return KernelRegression.fit(K, Y, f0, lam), (J, Jt, f0, f0t, Y, Yt, K, Kt)


CASES = [(False, 1, 0.0), (False, 1, 0.3), (False, 3, 0.0), (False, 3, 0.3), (True, 3, 0.2)]


# ---------------------------------------------------------------------------------------------- dynamics


@pytest.mark.parametrize("shared,C,lam", CASES)
@pytest.mark.parametrize("lr_factor", [0.6, 1.7])  # monotone and oscillating regimes (units of descent_lr)
def test_curves_equal_gradient_descent_on_the_linear_model(shared, C, lam, lr_factor):
    model, (J, Jt, f0, f0t, Y, Yt, _, Kt) = fitted(shared, C, lam)
    lr = lr_factor * descent_lr(model, lam=lam)
    steps = 60
    sim = simulate(J, f0, Y, lam, lr, steps, Jt, f0t, Yt, shared=shared)
    curves = model.curves(lr=lr, steps=steps)
    assert curves.loss.shape == (steps + 1,) and curves.loss.dtype == F64
    close(curves.loss, sim["loss"])
    close(curves.drift, sim["drift"])
    close(curves.objective, sim["objective"])
    assert curves.loss[-1] < 0.5 * curves.loss[0]  # it did train
    # eval: test outputs at a few steps, and the whole test-loss curve
    for step in (0, 1, 7, steps):
        torch.testing.assert_close(model.predict(Kt, f0t, step=step, lr=lr), sim["test"][step], rtol=1e-10,
                                   atol=1e-12)
    close(model.eval_loss(Kt, Yt, f0t, lr=lr, steps=steps), sim["test_loss"])
    # the one-call forms agree
    K = J @ J.T if shared else four_d(J @ J.T, *Y.shape[:1], *Y.shape[:1], C)
    torch.testing.assert_close(predicted_train_loss(K, Y, f0, lam, lr=lr, steps=steps), curves.loss, rtol=0, atol=0)
    close(predicted_eval_loss(K, Kt, Y, f0, f0t, Yt, lam, lr=lr, steps=steps), sim["test_loss"])


@pytest.mark.parametrize("lam", [0.0, 0.5])
def test_singular_kernel_matches_gd_and_its_null_space_never_moves(lam):
    model, (J, Jt, f0, f0t, Y, Yt, _, Kt) = fitted(False, 3, lam, P=6)  # n = 15 rows, rank 6
    assert model.spectrum.rank == 6
    lr = descent_lr(model, lam=lam)
    sim = simulate(J, f0, Y, lam, lr, 40, Jt, f0t, Yt)
    curves = model.curves(lr=lr, steps=40)
    close(curves.loss, sim["loss"])
    close(curves.drift, sim["drift"])
    null = model.spectrum.eigenvectors[:, model.spectrum.eigenvalues == 0]  # [15, 9]
    r0 = (f0 - Y).reshape(-1)
    r_inf = (model.train_outputs() - Y).reshape(-1)
    torch.testing.assert_close(null.T @ r_inf, null.T @ r0, rtol=0, atol=1e-12)
    if lam == 0:  # the loss floor is the null-space part of the residual
        floor = float((null.T @ r0).pow(2).sum() / (2 * 5))
        assert float(curves.loss[-1]) > floor
        assert float(model.curves(lr=lr, steps=20000).loss[-1]) == pytest.approx(floor, rel=1e-10)
    else:  # lr > 2/λ: even the λ-only factor 1 − lr·λ of the null space is unstable, yet that part never moves
        diverging = model.curves(lr=3 / lam, steps=1100)
        assert not torch.isnan(diverging.loss).any() and not torch.isnan(diverging.drift).any()
        assert diverging.loss[-1] == math.inf


def test_long_runs_use_blocks_and_stay_exact(monkeypatch):
    import linft.predict as predict

    monkeypatch.setattr(predict, "_BLOCK", 64)  # forces many blocks of steps
    model, (J, Jt, f0, f0t, Y, Yt, _, Kt) = fitted(False, 3, 0.1)
    lr = descent_lr(model, lam=0.1)
    sim = simulate(J, f0, Y, 0.1, lr, 30, Jt, f0t, Yt)
    close(model.curves(lr=lr, steps=30).loss, sim["loss"])
    close(model.eval_loss(Kt, Yt, f0t, lr=lr, steps=30), sim["test_loss"])


# ---------------------------------------------------------------------------------------------- limits


@pytest.mark.parametrize("shared,C,lam", [(False, 3, 0.3), (False, 1, 0.05), (True, 3, 0.2)])
def test_limit_is_kernel_ridge_regression(shared, C, lam):
    model, (J, Jt, f0, f0t, Y, Yt, _, Kt) = fitted(shared, C, lam)
    N, M = Y.shape[0], f0t.shape[0]
    K, Kx = J @ J.T, Jt @ J.T
    k = C if shared else 1
    alpha = torch.linalg.solve(K + N * lam * torch.eye(K.shape[0], dtype=F64), (Y - f0).reshape(-1, k))
    ridge = f0t + (Kx @ alpha).reshape(M, C)
    torch.testing.assert_close(model.predict(Kt, f0t), ridge, rtol=1e-10, atol=1e-12)
    # a long stable GD run gets there too
    lr = descent_lr(model, lam=lam)
    torch.testing.assert_close(model.predict(Kt, f0t, step=20000, lr=lr), ridge, rtol=1e-8, atol=1e-10)


def test_limit_with_lam_zero_is_the_min_norm_interpolant():
    model, (J, Jt, f0, f0t, Y, Yt, _, Kt) = fitted(False, 3, 0.0)  # P = 40 > n = 15: full rank
    assert model.spectrum.rank == 15
    K, Kx = J @ J.T, Jt @ J.T
    interpolant = f0t + (Kx @ torch.linalg.solve(K, (Y - f0).reshape(-1, 1))).reshape(4, 3)
    torch.testing.assert_close(model.predict(Kt, f0t), interpolant, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(model.train_outputs(), Y, rtol=0, atol=1e-10)  # train residual → 0
    # the parameters of the interpolant: the min-norm solution of J δ = Y − f0, whose norm is the drift
    delta = torch.linalg.lstsq(J, (Y - f0).reshape(-1, 1)).solution
    torch.testing.assert_close(model.predict(Kt, f0t), f0t + (Jt @ delta).reshape(4, 3), rtol=1e-9, atol=1e-10)
    lr = descent_lr(model)
    curves = model.curves(lr=lr, steps=20000)
    assert float(curves.loss[-1]) < 1e-20 * float(curves.loss[0])
    assert float(curves.drift[-1]) == pytest.approx(float((delta**2).sum()), rel=1e-8)


# ---------------------------------------------------------------------------------------------- step sizes


def test_kappa_and_step_sizes_by_hand_on_a_diagonal_kernel():
    K = torch.diag(torch.tensor([4.0, 2.0, 1.0, 0.5], dtype=F64))
    assert kappa_lambda(K, lam=0.25) == pytest.approx((4 + 1) / (0.5 + 1), rel=1e-14)  # N = 4, Nλ = 1
    assert kappa_lambda(K) == pytest.approx(8.0, rel=1e-14)
    assert kappa_lambda([0.5, 4.0, 1.0], N=2, lam=1.0) == pytest.approx((4 + 2) / (0.5 + 2), rel=1e-14)
    assert max_stable_lr(K, lam=0.25) == pytest.approx(2 / (4 / 4 + 0.25), rel=1e-14)
    assert descent_lr(K, lam=0.25) == pytest.approx(1 / (4 / 4 + 0.25), rel=1e-14)
    # a flattened [N·C, N·C] kernel with N = 2 examples: N scales the eigen-rates
    assert max_stable_lr(K, N=2) == pytest.approx(2 / (4 / 2), rel=1e-14)
    # a 4-D kernel knows its N; a spectrum too; a singular kernel without ridge has κ = inf
    K4 = four_d(K, 2, 2, 2)
    assert kappa_lambda(K4, lam=0.5) == pytest.approx((4 + 1) / (0.5 + 1), rel=1e-14)
    assert max_stable_lr(KernelSpectrum.of(K4)) == pytest.approx(1.0, rel=1e-14)
    assert kappa_lambda(torch.diag(torch.tensor([1.0, 0.0], dtype=F64))) == math.inf
    assert max_stable_lr(torch.zeros(3, 3, dtype=F64)) == math.inf
    assert check_lr(K, lr=0.5) == "monotone" and check_lr(K, lr=1.0) == "monotone"
    assert check_lr(K, lr=1.5) == "oscillating"
    with pytest.raises(LinftError, match=r"lr=2 is at or above the stable limit 2/\(μmax/N \+ λ\) = 2"):
        check_lr(K, lr=2.0)


@pytest.mark.parametrize("lam", [0.0, 0.2])
def test_just_above_the_stable_limit_both_diverge_and_agree(lam):
    model, (J, Jt, f0, f0t, Y, Yt, _, _) = fitted(False, 3, lam)
    lr = max_stable_lr(model, lam=lam) * 1.02
    with pytest.raises(LinftError, match="at or above the stable limit"):
        check_lr(model, lam=lam, lr=lr)
    sim = simulate(J, f0, Y, lam, lr, 300, Jt, f0t, Yt)
    predicted = model.curves(lr=lr, steps=300).loss  # no warning, no error: the diverging curve
    assert float(sim["loss"][-1]) > 1e3 * float(sim["loss"][0])
    assert float(predicted[-1]) > 1e3 * float(predicted[0])
    torch.testing.assert_close(predicted, sim["loss"], rtol=1e-8, atol=0)
    # just below the limit both converge
    lr = max_stable_lr(model, lam=lam) * 0.98
    assert check_lr(model, lam=lam, lr=lr) == "oscillating"
    assert float(model.curves(lr=lr, steps=300).loss[-1]) < float(model.curves(lr=lr, steps=0).loss[0])


def test_objective_decreases_below_the_stable_limit_even_when_oscillating():
    """F never increases for η < 2/L on the quadratic (descent_lr bounds the monotone regime, not descent)."""
    model, _ = fitted(False, 3, 0.3)
    curves = model.curves(lr=1.95 * descent_lr(model, lam=0.3), steps=200)
    assert torch.all(curves.objective[1:] <= curves.objective[:-1] * (1 + 1e-14))


def test_gradient_flow_is_the_small_step_limit_of_gd():
    model, _ = fitted(False, 3, 0.1)
    errors = []
    for lr in (0.02, 0.01):
        steps = round(4.0 / lr)
        gd, flow = model.curves(lr=lr, steps=steps), model.curves(lr=lr, steps=steps, flow=True)
        torch.testing.assert_close(flow.time, gd.time * lr)
        errors.append(float(((gd.loss - flow.loss).abs() / flow.loss).max()))
    assert errors[0] < 0.05
    assert errors[0] / errors[1] == pytest.approx(2.0, rel=0.1)  # first order in the step size
    # the flow's limit is the same ridge solution
    torch.testing.assert_close(model.train_outputs(step=10**6, lr=1.0, flow=True), model.train_outputs())


# ---------------------------------------------------------------------------------------------- conventions


def test_labels_become_one_hot_or_sign_targets():
    torch.testing.assert_close(targets_from_labels([2, 0], 3), torch.tensor([[0, 0, 1.0], [1, 0, 0]], dtype=F64))
    torch.testing.assert_close(targets_from_labels([1, 0, 1], 1), torch.tensor([[1.0], [-1.0], [1.0]], dtype=F64))
    model, (J, Jt, f0, f0t, Y, Yt, K, Kt) = fitted(False, 3, 0.1)
    labels = torch.tensor([0, 2, 1, 1, 0])
    a = KernelRegression.fit(K, labels, f0, 0.1)
    b = KernelRegression.fit(K, torch.nn.functional.one_hot(labels, 3).double(), f0, 0.1)
    torch.testing.assert_close(a.predict(Kt, f0t), b.predict(Kt, f0t), rtol=0, atol=0)
    # a scalar kernel with binary labels: targets ±1 for one output (the logit_diff task)
    Ks = J[::3] @ J[::3].T
    s = KernelRegression.fit(Ks, [1, 0, 0, 1, 1], lam=0.0)
    assert s.n_outputs == 1 and not s.shared
    torch.testing.assert_close(s.train_outputs(), torch.tensor([[1.0], [-1], [-1], [1], [1]], dtype=F64))
    assert s.classify(Ks, step=None).tolist() == [1, 0, 0, 1, 1]
    assert s.accuracy(Ks, None, [1, 0, 0, 1, 0]) == pytest.approx(0.8)


def test_scalar_kernel_with_c_outputs_is_the_kronecker_kernel():
    model, (J, Jt, f0, f0t, Y, Yt, K, Kt) = fitted(True, 3, 0.2)
    assert model.shared
    eye = torch.eye(3, dtype=F64)
    full = KernelRegression.fit(torch.kron(K, eye), Y, f0, 0.2)  # [N·C, N·C] flattened: N inferred from Y
    assert not full.shared and full.spectrum.n_outputs == 3
    lr = descent_lr(model, lam=0.2)
    torch.testing.assert_close(full.predict(torch.kron(Kt, eye), f0t, step=9, lr=lr),
                               model.predict(Kt, f0t, step=9, lr=lr), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(full.curves(lr=lr, steps=9).loss, model.curves(lr=lr, steps=9).loss, rtol=1e-12, atol=0)
    assert model.classify(Kt, f0t).shape == (4,)
    assert model.accuracy(Kt, f0t, Yt.argmax(1)) == pytest.approx(
        float((model.predict(Kt, f0t).argmax(1) == Yt.argmax(1)).double().mean()))


def test_kernel_objects_spectra_and_arrays_give_the_same_answers():
    model, (J, Jt, f0, f0t, Y, Yt, K, Kt) = fitted(False, 3, 0.1)
    common = dict(per_layer={}, output="full", kernel="sgd", params="test", n_params=40, seconds=0.0,
                  implementation="reference")
    kernel, test_kernel = Kernel(values=K, **common), Kernel(values=Kt, **common)
    spectrum = KernelSpectrum.of(kernel)
    assert (spectrum.n_examples, spectrum.n_outputs, spectrum.rank) == (5, 3, 15)
    expected = model.predict(Kt, f0t)
    for k in (kernel, spectrum, K.numpy(), J @ J.T):
        got = KernelRegression.fit(k, Y.numpy(), f0.numpy(), 0.1).predict(test_kernel, f0t.numpy())
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    flat = (Jt @ J.T)  # [M·C, N·C] test kernel
    torch.testing.assert_close(model.predict(flat, f0t), expected, rtol=0, atol=0)
    torch.testing.assert_close(model.predict(Kt), expected - f0t, rtol=1e-12, atol=1e-12)  # f0_test None = zeros


# ---------------------------------------------------------------------------------------------- real engine


TRAIN = ["a great film", "an awful movie", "i loved it", "boring and bad", "wonderful acting", "a terrible plot"]
TEST = ["loved the acting", "awful and boring", "a fine movie"]


@pytest.fixture(scope="module")
def engine(one_thread, tiny_lora):
    model, batch = tiny_lora(TRAIN + TEST, [1, 0, 1, 0, 1, 0, 1, 0, 1])
    tr = {k: v[:6] for k, v in batch.items()}
    te = {k: v[6:] for k, v in batch.items()}
    K = empirical_ntk(model, tr, params="lora", output="full")
    Kt = empirical_ntk(model, te, tr, params="lora", output="full")
    J, _ = explicit_jacobian(model, tr, params="lora")
    Jt, _ = explicit_jacobian(model, te, params="lora")
    with torch.no_grad():
        f0 = model(input_ids=tr["input_ids"], attention_mask=tr["attention_mask"]).logits.double()
        f0t = model(input_ids=te["input_ids"], attention_mask=te["attention_mask"]).logits.double()
    Kd = empirical_ntk(model, tr, params="lora", output="logit_diff")
    Kdt = empirical_ntk(model, te, tr, params="lora", output="logit_diff")
    return K, Kt, J, Jt, f0, f0t, tr["labels"], te["labels"], Kd, Kdt


def test_minilm_lora_kernel_regression_matches_explicit_jacobians(engine):
    K, Kt, J, Jt, f0, f0t, labels, test_labels, _, _ = engine
    assert K.values.shape == (6, 6, 2, 2) and Kt.values.shape == (3, 6, 2, 2)
    N, M = 6, 3
    J, Jt = J.reshape(N * 2, -1), Jt.reshape(M * 2, -1)  # example-major rows
    Y = torch.nn.functional.one_hot(labels, 2).double()
    Yt = torch.nn.functional.one_hot(test_labels, 2).double()
    mu_max = float(torch.linalg.eigvalsh(J @ J.T)[-1])
    lam = 0.1 * mu_max / N  # Nλ = μmax/10: κ_λ ≤ 11, GD converges in a few hundred steps
    model = KernelRegression.fit(K, labels, f0, lam)  # integer labels → one-hot (C = 2 outputs)
    lr = descent_lr(model, lam=lam)
    assert lr == pytest.approx(1 / (mu_max / N + lam), rel=1e-5)
    sim = simulate(J, f0, Y, lam, lr, 400, Jt, f0t, Yt)
    for step in (1, 10):
        change = sim["test"][step] - f0t
        got = model.predict(Kt, f0t, step=step, lr=lr) - f0t
        torch.testing.assert_close(got, change, rtol=0, atol=1e-5 * float(change.abs().max()))
    torch.testing.assert_close(model.curves(lr=lr, steps=400).loss, sim["loss"], rtol=1e-5, atol=0)
    torch.testing.assert_close(model.eval_loss(Kt, test_labels, f0t, lr=lr, steps=400), sim["test_loss"], rtol=1e-5,
                               atol=0)
    limit = model.predict(Kt, f0t)
    assert float((sim["test"][-1] - limit).abs().max()) < 1e-5 * float((limit - f0t).abs().max())
    assert model.classify(Kt, f0t).tolist() == sim["test"][-1].argmax(1).tolist()


# ---------------------------------------------------------------------------------------------- bad input


def test_bad_inputs_raise_one_clear_line():
    model, (J, Jt, f0, f0t, Y, Yt, K, Kt) = fitted(False, 3, 0.1)
    Ks = J[::3] @ J[::3].T  # scalar [5, 5]
    cases = [
        (lambda: KernelRegression.fit(K, Y[:4]), r"K is a kernel of N=5 examples but N=4 were given"),
        (lambda: KernelRegression.fit(Ks, torch.zeros(3)), r"K is \[5, 5\] but there are N=3 training examples"),
        (lambda: KernelRegression.fit(K, Y[:, :2]), r"Y has C=2 outputs but the kernel has C=3"),
        (lambda: KernelRegression.fit(K, Y, f0[:, :2]), r"f0 has shape \(5, 2\) but \[5, 3\] is needed"),
        (lambda: KernelRegression.fit(K, Y, torch.zeros(5, 3, dtype=torch.long)), r"pass logits, not labels"),
        (lambda: KernelRegression.fit(K, Y, lam=-0.1), r"λ \(lam\) must be a finite number >= 0"),
        (lambda: KernelRegression.fit(torch.ones(3, 4), torch.zeros(3)), r"pass a square matrix"),
        (lambda: KernelRegression.fit(Ks.clone().fill_diagonal_(float("nan")), torch.zeros(5)), r"non-finite"),
        (lambda: KernelRegression.fit(Ks, torch.tensor([0, 1, 0, 1, math.inf])), r"Y has 1 non-finite"),
        (lambda: KernelRegression.fit(Ks + torch.triu(torch.ones(5, 5, dtype=F64), 1), torch.zeros(5)),
         r"K is not symmetric .*pass its symmetric part \(K \+ K.T\)/2"),
        (lambda: KernelRegression.fit(-Ks, torch.zeros(5)), r"K is not positive semi-definite"),
        (lambda: KernelRegression.fit(Ks, [0, 1, 2, 1, 0]), r"labels \[0, 1, 2\] are not binary"),
        (lambda: KernelRegression.fit(K, [0, 1, 3, 1, 0]), r"labels must lie in 0..2 for C=3 outputs"),
        (lambda: KernelRegression.fit(K, Y, rtol=2.0), r"rtol must be a number in \[0, 1\)"),
        (lambda: model.predict(Kt[:, :4]), r"K_test_train has shape \(4, 4, 3, 3\) but \[M, 5, 3, 3\] is needed"),
        (lambda: model.predict(Kt, f0t[:2]), r"f0_test has shape \(2, 3\) but \[4, 3\] is needed"),
        (lambda: model.predict(Kt, step=3), r"step=3 needs lr"),
        (lambda: model.predict(Kt, step=-1, lr=0.1), r"step must be an integer >= 0"),
        (lambda: model.curves(lr=0.0, steps=3), r"lr must be a finite number > 0, got 0.0"),
        (lambda: model.curves(lr=float("nan"), steps=3), r"lr must be a finite number > 0"),
        (lambda: model.curves(lr="0.1", steps=3), r"lr must be a finite number > 0, got '0.1'"),
        (lambda: model.curves(lr=0.1, steps=2.5), r"steps must be an integer >= 0"),
        (lambda: model.eval_loss(Kt, Yt[:3], lr=0.1, steps=2), r"Y_test has shape \(3, 3\) but \[4, 3\] is needed"),
        (lambda: model.accuracy(Kt, f0t, Yt), r"labels must be integers \[4\]"),
        (lambda: kappa_lambda([1.0, 2.0]), r"eigenvalues alone do not say .*: pass N"),
        (lambda: kappa_lambda(model.spectrum, N=7), r"the spectrum is of N=5 examples but N=7 was given"),
        (lambda: max_stable_lr(K, lam=float("inf")), r"λ \(lam\) must be a finite number >= 0"),
        (lambda: check_lr(K, lr=-1), r"lr must be a finite number > 0"),
    ]
    for call, message in cases:
        with pytest.raises(LinftError, match=message) as info:
            call()
        assert "\n" not in str(info.value)
    # the asymmetric SignGD kernel is refused even when its values happen to be symmetric
    asym = Kernel(values=K, per_layer={}, output="full", kernel="asym_signgd", params="", n_params=1, seconds=0.0,
                  implementation="reference")
    with pytest.raises(LinftError, match="K is not symmetric"):
        KernelRegression.fit(asym, Y)


def test_minilm_logit_diff_kernel_with_sign_targets(engine):
    """The scalar task of NTK theory: f_1 − f_0 with targets ±1 on the logit_diff kernel."""
    _, _, J, Jt, f0, f0t, labels, test_labels, Kd, Kdt = engine
    assert Kd.values.shape == (6, 6) and Kdt.values.shape == (3, 6)
    Jd, Jdt = J[:, 1] - J[:, 0], Jt[:, 1] - Jt[:, 0]  # [N, P]: rows of ∂(f_1 − f_0)
    d0, d0t = (f0[:, 1] - f0[:, 0])[:, None], (f0t[:, 1] - f0t[:, 0])[:, None]
    model = KernelRegression.fit(Kd, labels, d0, lam=0.0)  # binary labels on a scalar kernel → ±1
    assert model.n_outputs == 1
    Y, Yt = 2.0 * labels[:, None].double() - 1, 2.0 * test_labels[:, None].double() - 1
    lr = descent_lr(model)
    sim = simulate(Jd, d0, Y, 0.0, lr, 50, Jdt, d0t, Yt)
    change = sim["test"][50] - d0t
    got = model.predict(Kdt, d0t, step=50, lr=lr) - d0t
    torch.testing.assert_close(got, change, rtol=0, atol=1e-5 * float(change.abs().max()))
    torch.testing.assert_close(model.curves(lr=lr, steps=50).loss, sim["loss"], rtol=1e-5, atol=0)
    assert model.classify(Kdt, d0t, step=50, lr=lr).tolist() == (sim["test"][50][:, 0] > 0).long().tolist()


def test_asymmetric_regression_equals_ridge_on_symmetric_kernels_and_the_formula_otherwise():
    from linft.predict import KernelRegression, asymmetric_regression

    gen = torch.Generator().manual_seed(5)
    N, M, C, lam = 7, 4, 3, 0.2
    J, Jx = torch.randn(N * C, 11, generator=gen, dtype=torch.float64), torch.randn(M * C, 11, generator=gen,
                                                                                     dtype=torch.float64)
    K, Kx = J @ J.T, Jx @ J.T
    labels = torch.randint(0, C, (N,), generator=gen)
    f0 = torch.randn(N, C, generator=gen, dtype=torch.float64)
    f0x = torch.randn(M, C, generator=gen, dtype=torch.float64)
    ridge = KernelRegression.fit(K, labels, f0, lam).predict(Kx, f0x)
    assert torch.allclose(asymmetric_regression(K, Kx, labels, f0, f0x, lam), ridge, rtol=1e-9, atol=1e-10)
    A = K + 0.3 * torch.randn(N * C, N * C, generator=gen, dtype=torch.float64)  # not symmetric
    Y = torch.nn.functional.one_hot(labels, C).to(torch.float64)
    by_hand = f0x + (Kx @ torch.linalg.solve(A + N * lam * torch.eye(N * C, dtype=torch.float64),
                                             (Y - f0).reshape(-1, 1))).reshape(M, C)
    assert torch.allclose(asymmetric_regression(A, Kx, labels, f0, f0x, lam), by_hand, rtol=1e-8, atol=1e-9)
    with pytest.raises(LinftError, match="K_test_train has shape"):
        asymmetric_regression(A, Kx[:, :-1], labels, f0, f0x, lam)


def test_public_names_stay_importable_from_predict_after_the_split():
    from linft import kernel_spectrum, predict, spectral

    assert predict.KernelSpectrum is kernel_spectrum.KernelSpectrum
    assert predict.NEGATIVE_TOL == kernel_spectrum.NEGATIVE_TOL
    for name in predict.__all__:
        assert hasattr(predict, name), name
    K = torch.diag(torch.tensor([4.0, 2.0, 1.0], dtype=torch.float64))
    spectrum = predict.KernelSpectrum.of(K)
    assert kappa_lambda(spectrum, lam=0.5) == spectral.kappa_from_extremes(4.0, 1.0, 3 * 0.5)
