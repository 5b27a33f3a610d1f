"""linft.bound: the drift bound on gradient descent, exact Lipschitz estimates on quadratic models, the gap bound on
a small MLP, the training-log table, and clear errors on bad input."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from linft import LinftError, bound
from linft.toy import MLP, make_regression, train_gd


def _quadratic_problem(p=12, seed=0):
    gen = torch.Generator().manual_seed(seed)
    m = torch.randn(p, p, generator=gen, dtype=torch.float64)
    A = m @ m.T / p + 0.05 * torch.eye(p, dtype=torch.float64)  # symmetric positive definite
    theta_star = torch.randn(p, generator=gen, dtype=torch.float64)
    theta0 = torch.zeros(p, dtype=torch.float64)
    return A, theta_star, theta0


@pytest.mark.parametrize("lam", [0.1, 1.0, 10.0])
def test_drift_bound_holds_on_gradient_descent_for_a_convex_quadratic(lam):
    A, theta_star, theta0 = _quadratic_problem()

    def R(theta):
        d = theta - theta_star
        return 0.5 * d @ A @ d

    beta = torch.linalg.eigvalsh(A)[-1].item()
    eta = 1.0 / (beta + lam)  # descent lemma step for F = R + (λ/2)‖θ − θ0‖²
    theta = theta0.clone()
    R0 = R(theta0).item()
    objective, drifts, losses = [], [], []
    for _ in range(300):
        objective.append(R(theta).item() + 0.5 * lam * ((theta - theta0) ** 2).sum().item())
        drifts.append(torch.linalg.vector_norm(theta - theta0).item())
        losses.append(R(theta).item())
        grad = A @ (theta - theta_star) + lam * (theta - theta0)
        theta = theta - eta * grad
    assert bound.descent_violations(objective) == 0
    loose = bound.drift_bound(R0, lam)
    assert loose == pytest.approx(math.sqrt(2 * R0 / lam))
    for d, r in zip(drifts, losses):
        tight = bound.drift_bound(R0, lam, r)
        assert d <= tight + 1e-12 <= loose + 1e-12
    # the converged minimizer of F moves less than the bound, and by a real amount (not a vacuous check)
    assert 0.05 * loose < drifts[-1] <= loose


def test_drift_bound_edge_cases():
    assert bound.drift_bound(1.0, 0.0) == math.inf
    assert bound.drift_bound(1.0, 2.0, R_t=3.0) == 0.0  # R_t > R0: no budget left
    assert bound.drift_bound(torch.tensor(2.0), 4.0) == pytest.approx(1.0)
    assert bound.anchored_gap_bound(3.0, 2.0, 0.0) == math.inf
    assert bound.anchored_gap_bound(3.0, 2.0, 4.0) == pytest.approx(1.5)
    assert bound.gap_bound(4.0, 0.5) == pytest.approx(0.5)
    assert np.allclose(bound.gap_bound(2.0, np.array([0.0, 1.0, 2.0])), [0.0, 1.0, 4.0])


def test_descent_violations_counts_increases():
    assert bound.descent_violations([3.0, 2.0, 2.0, 1.0]) == 0
    assert bound.descent_violations([3.0, 2.0, 2.5, 1.0, 1.2]) == 2


def _quadratic_model(p=6, c=3, seed=1):
    """f_c(θ) = ½ θᵀ A_c θ + b_cᵀ θ: J(θ) = [θᵀA_c + b_cᵀ]_c is linear in θ."""
    gen = torch.Generator().manual_seed(seed)
    mats = []
    for _ in range(c):
        m = torch.randn(p, p, generator=gen, dtype=torch.float64)
        mats.append((m + m.T) / 2)
    A = torch.stack(mats)  # [C, P, P]
    b = torch.randn(c, p, generator=gen, dtype=torch.float64)

    def f(params):
        t = params["theta"]
        return (0.5 * torch.einsum("p,cpq,q->c", t, A, t) + b @ t).unsqueeze(0)  # [1, C]

    theta0 = {"theta": torch.randn(p, generator=gen, dtype=torch.float64)}
    return f, theta0, A


def test_lipschitz_estimate_is_exact_for_a_quadratic_model():
    f, theta0, A = _quadratic_model()
    radii = [1e-2, 0.1, 1.0, 10.0]
    units = bound.random_directions(theta0, 5, seed=3)
    samples = bound.jacobian_lipschitz(f, theta0, radii, directions=units)
    for i, u in enumerate(units):
        uu = u["theta"]
        expected = torch.linalg.vector_norm(torch.einsum("p,cpq,q->c", uu, A, uu)).item()  # ‖[ûᵀA_cû]_c‖
        got = samples[samples["sample"] == i]
        assert np.allclose(got["L_jac"], expected, rtol=1e-8)  # the same at every radius: J is linear
        assert np.allclose(got["L_taylor"], expected, rtol=1e-6)  # second difference = ½ uᵀA u exactly
    # one output, top eigenvector direction: the estimate equals the true Lipschitz constant ‖A‖₂ of J
    A0 = A[0]
    evals, evecs = torch.linalg.eigh(A0)
    top = evecs[:, evals.abs().argmax()]

    def f0(params):
        t = params["theta"]
        return (0.5 * t @ A0 @ t).reshape(1, 1)

    curve = bound.lipschitz_curve(bound.jacobian_lipschitz(f0, theta0, radii, directions=[{"theta": top}]))
    assert np.allclose(curve["max"], evals.abs().max().item(), rtol=1e-8)
    # random probes v: |ûᵀ A v̂| never exceeds ‖A‖₂ and is reproducible with the seed
    rnd = bound.jacobian_lipschitz(f0, theta0, [0.5], n_samples=16, probe="random", seed=4)
    assert (rnd["L_jac"] <= evals.abs().max().item() + 1e-9).all()
    assert rnd["L_taylor"].isna().all()
    assert rnd.equals(bound.jacobian_lipschitz(f0, theta0, [0.5], n_samples=16, probe="random", seed=4))


def test_lipschitz_at_takes_the_running_max_and_refuses_to_extrapolate():
    curve = pd.DataFrame({"radius": [0.1, 0.2, 0.4], "mean": [1.0, 3.0, 2.0], "max": [2.0, 5.0, 4.0], "n": 3})
    assert bound.lipschitz_at(curve, 0.05) == 2.0
    assert bound.lipschitz_at(curve, 0.1) == 2.0  # a drift on the grid uses that radius
    assert bound.lipschitz_at(curve, 0.15) == 5.0  # the ball of radius 0.15 needs the samples at 0.2 ≥ 0.15
    assert bound.lipschitz_at(curve, 0.3) == 5.0
    assert bound.lipschitz_at(curve, 0.4) == 5.0  # the running max keeps the larger value seen at 0.2
    assert math.isnan(bound.lipschitz_at(curve, 1.0))
    assert bound.lipschitz_at(curve, 1.0, extrapolate=True) == 5.0
    assert np.allclose(bound.lipschitz_at(curve, np.array([0.1, 0.25]), stat="mean"), [1.0, 3.0])


def test_gap_bound_holds_on_a_small_mlp():
    torch.manual_seed(0)
    task = make_regression(n_train=32, n_test=8, d=4, seed=0)
    x, y = task["x_train"].double(), task["y_train"].double()
    model = MLP(4, 32, depth=2, seed=0).double()
    lam = 0.05
    run = train_gd(model, x, y, lam=lam, time_horizon=30.0)
    assert run["objective_increases"] == 0
    f, _ = bound.functional(model, x)
    theta0 = run["theta0"]
    theta = {n: p.detach() for n, p in model.named_parameters()}
    delta = {n: theta[n] - theta0[n] for n in theta}
    drift = math.sqrt(sum((v**2).sum().item() for v in delta.values()))
    assert drift <= bound.drift_bound(run["R0"], lam)
    gap = torch.linalg.vector_norm(bound.taylor_remainder(f, theta0, theta)).item()
    assert gap > 0
    # L along the trained direction on a fine grid of radii up to the drift, plus random directions
    radii = list(np.linspace(drift / 40, drift, 40))
    along = bound.jacobian_lipschitz(f, theta0, radii, directions=[delta])
    rnd = bound.jacobian_lipschitz(f, theta0, radii, n_samples=4, seed=1)
    curve = bound.lipschitz_curve(pd.concat([along, rnd]))
    L = bound.lipschitz_at(curve, drift)
    assert gap <= bound.gap_bound(L, drift)
    # the a-priori form L·R0/λ, with L over the (larger) ball of the drift bound
    r_star = bound.drift_bound(run["R0"], lam)
    far = bound.jacobian_lipschitz(f, theta0, list(np.linspace(r_star / 40, r_star, 40)), directions=[delta])
    L_star = bound.lipschitz_at(bound.lipschitz_curve(pd.concat([along, far])), r_star)
    assert gap <= bound.anchored_gap_bound(L_star, run["R0"], lam)
    # per-example norms: every example's remainder is below its own bound
    per = bound.jacobian_lipschitz(f, theta0, radii, directions=[delta], per_example=True)
    L_ex = per.groupby("example")["L_jac"].max().to_numpy()
    rem = torch.linalg.vector_norm(bound.taylor_remainder(f, theta0, theta), dim=1).numpy()
    assert (rem <= 0.5 * L_ex * drift**2 + 1e-12).all()


def test_taylor_remainder_is_zero_for_a_linear_model():
    w = torch.randn(3, 5, dtype=torch.float64)

    def f(p):
        return (w @ p["theta"]).unsqueeze(0)

    theta0 = {"theta": torch.randn(5, dtype=torch.float64)}
    theta = {"theta": theta0["theta"] + 10 * torch.randn(5, dtype=torch.float64)}
    assert torch.linalg.vector_norm(bound.taylor_remainder(f, theta0, theta)).item() < 1e-10


def test_bound_table_lines_up_a_log_and_flags_excess():
    curve = pd.DataFrame({"radius": [0.1, 1.0, 10.0], "mean": [1.0, 1.0, 1.0], "max": [2.0, 2.0, 2.0], "n": 1})
    log = pd.DataFrame({
        "step": [0, 1, 2], "task_loss": [0.5, 0.4, 0.3], "loss": [0.5, 0.45, 0.4],
        "drift_total": [0.0, 0.5, 2.0], "gap_train": [0.0, 0.1, 5.0],
    })
    table = bound.bound_table(log, curve, lam=0.5)
    assert np.allclose(table["drift_bound"], math.sqrt(2 * 0.5 / 0.5))
    assert np.allclose(table["bound_measured"], [0.0, 0.25, 4.0])
    assert np.allclose(table["bound_anchored"], 2.0 * 0.5 / 0.5)
    assert table["drift_exceeds"].tolist() == [False, False, True]
    assert table["gap_exceeds_measured"].tolist() == [False, False, True]
    assert table["gap_exceeds_anchored"].tolist() == [False, False, True]
    free = bound.bound_table(log, curve, lam=0.0)
    assert np.isinf(free["drift_bound"]).all() and np.isinf(free["bound_anchored"]).all()
    assert not free["drift_exceeds"].any() and not free["gap_exceeds_anchored"].any()


def test_functional_on_a_module_matches_its_forward():
    model = MLP(3, 8, depth=1, seed=0)
    x = torch.randn(5, 3)
    f, theta0 = bound.functional(model, x)
    assert torch.allclose(f(theta0), model(x))
    f2, t2 = bound.functional(model, x, params=["weights.1"])
    assert list(t2) == ["weights.1"]
    assert torch.allclose(f2(t2), model(x))
    moved = {"weights.1": t2["weights.1"] + 1.0}
    assert not torch.allclose(f2(moved), model(x))  # only the named tensor is replaced


def test_functional_checks_a_batch_dict(one_thread, tiny_lora):
    model, batch = tiny_lora(["a great film", "an awful movie"], [1, 0], max_length=8)
    f, theta0 = bound.functional(model, batch)  # labels are dropped
    with torch.no_grad():
        want = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        torch.testing.assert_close(f(theta0), want, atol=1e-5, rtol=0)
    with pytest.raises(LinftError, match="no 'attention_mask'"):
        bound.functional(model, {"input_ids": batch["input_ids"]})
    with pytest.raises(LinftError, match="empty"):
        bound.functional(model, {k: v[:0] for k, v in batch.items()})


def test_bad_inputs_raise_linft_error():
    f, theta0, _ = _quadratic_model()
    with pytest.raises(LinftError, match="lam"):
        bound.drift_bound(1.0, -1.0)
    with pytest.raises(LinftError, match="R0"):
        bound.drift_bound(float("nan"), 1.0)
    with pytest.raises(LinftError, match="L must be"):
        bound.gap_bound(-1.0, 1.0)
    with pytest.raises(LinftError, match="drift"):
        bound.gap_bound(1.0, -0.1)
    with pytest.raises(LinftError, match="radius"):
        bound.jacobian_lipschitz(f, theta0, [0.0])
    with pytest.raises(LinftError, match="probe"):
        bound.jacobian_lipschitz(f, theta0, [1.0], probe="sideways")
    with pytest.raises(LinftError, match="norm"):
        bound.jacobian_lipschitz(f, theta0, [1.0], directions=[{"theta": torch.zeros(6, dtype=torch.float64)}])
    with pytest.raises(LinftError, match="lacks tensor"):
        bound.jacobian_lipschitz(f, theta0, [1.0], directions=[{"other": torch.ones(6)}])
    with pytest.raises(LinftError, match="n_samples"):
        bound.jacobian_lipschitz(f, theta0, [1.0], n_samples=0)
    with pytest.raises(LinftError, match="theta0"):
        bound.jacobian_lipschitz(f, {}, [1.0])
    with pytest.raises(LinftError, match=r"log needs columns .*; missing \['task_loss', 'drift_total'"):
        bound.bound_table(pd.DataFrame({"step": [0]}), pd.DataFrame({"radius": [1.0], "max": [1.0]}), 1.0)
    with pytest.raises(LinftError, match="non-finite"):
        bound.descent_violations([1.0, float("nan")])
    with pytest.raises(LinftError, match="curve"):
        bound.lipschitz_at(pd.DataFrame(), 1.0)
    with pytest.raises(LinftError, match="nn.Module"):
        bound.functional("not a model")


# (linft.plots.linearization draws what this module computes; its smoke tests live here and in test_toy.py)


def test_bound_plots_draw_and_check_columns():
    import matplotlib.pyplot as plt

    from linft.plots import linearization as lplots

    f, theta0, _ = _quadratic_model()
    samples = bound.jacobian_lipschitz(f, theta0, [0.1, 1.0], n_samples=2).assign(direction="random")
    fig = lplots.lipschitz_vs_radius(samples)
    assert fig.axes[0].get_xscale() == "log"
    curve = bound.lipschitz_curve(samples)
    log = pd.DataFrame({"step": [0, 1, 2], "task_loss": [0.5, 0.4, 0.3], "loss": [0.5, 0.45, 0.4],
                        "drift_total": [0.0, 0.5, 2.0], "gap_train": [0.0, 0.1, 5.0]})
    tables = pd.concat([bound.bound_table(log, curve, lam, extrapolate=True) for lam in (0.0, 0.5)])
    assert len(lplots.gap_vs_bound(tables).axes) == 2
    sweep = pd.DataFrame({"task": ["a", "a", "b"], "lam": [0.0, 5.0, 5.0], "selective": [False, True, False],
                          "eval_acc": [0.6, 0.55, 0.7], "rel_gap_eval": [0.1, 0.01, 0.02]})
    assert len(lplots.tradeoff(sweep).axes) == 2
    logs = pd.DataFrame({"lam": [0.0, 0.0, 0.0, 0.0], "kind": ["real", "real", "linearized", "linearized"],
                         "step": [0, 1, 0, 1], "eval_acc": [0.5, 0.6, 0.5, 0.55], "agree_eval": [1.0, 0.9, 1.0, 0.9],
                         "rel_gap_eval": [0.0, 0.1, 0.0, 0.1]})
    assert len(lplots.real_vs_linear(logs).axes) == 3
    outputs = pd.DataFrame({"lam": [0.0] * 3 + [5.0] * 3, "margin_real": [1.0, -1.0, 0.5] * 2,
                            "margin_lin": [0.9, -1.1, 0.4] * 2})
    assert len(lplots.output_scatter(outputs).axes) == 2
    with pytest.raises(LinftError, match="missing"):
        lplots.gap_vs_bound(tables.drop(columns="gap"))
    with pytest.raises(LinftError, match="empty"):
        lplots.tradeoff(sweep.iloc[:0])
    plt.close("all")


def test_bound_table_on_a_minilm_lora_gradient_descent_run(one_thread, tiny_lora):
    """End to end on the real model: fine_tune (MSE, full-batch GD, λ > 0) → L along the trajectory → bound_table."""
    import copy

    from linft.train import fine_tune

    model, batch = tiny_lora(["a great film", "i loved it", "an awful movie", "boring and bad"], [1, 1, 0, 0],
                             max_length=12)
    lam = 5.0
    run = fine_tune(copy.deepcopy(model), batch, None, loss="mse", optimizer="gd", lr=0.02, steps=3, lam=lam,
                    anchor="all", gap_n=4, progress=False)
    assert bound.descent_violations(run.log["loss"]) == 0
    f, theta0 = bound.functional(copy.deepcopy(model), batch)
    with torch.no_grad():
        assert torch.allclose(f(theta0), model.eval()(input_ids=batch["input_ids"],
                                                      attention_mask=batch["attention_mask"]).logits, atol=1e-5)
    trained = dict(run.model.named_parameters())
    delta = {n: trained[n].detach() - run.anchor[n] for n in theta0}
    d_final = float(run.log["drift_total"].iloc[-1])
    r_star = bound.drift_bound(run.final["R0"], lam)
    radii = list(np.geomspace(d_final / 100, d_final, 10)) + [r_star]
    samples = bound.jacobian_lipschitz(f, theta0, radii, directions=[delta])
    table = bound.bound_table(run.log, bound.lipschitz_curve(samples), lam)
    assert not table["drift_exceeds"].any()
    last = table.iloc[-1]
    # near-quadratic along the path, the Taylor bound is attained: equality up to float32 rounding
    assert last["gap"] > 0 and last["ratio_measured"] <= 1 + 1e-3 and not last["gap_exceeds_measured"]
    assert last["bound_measured"] <= last["bound_anchored"] and not last["gap_exceeds_anchored"]


def test_bound_table_skips_the_unmoved_start_and_reports_ratios():
    curve = pd.DataFrame({"radius": [0.1, 1.0, 2.0], "mean": 1.0, "max": 2.0, "n": 1})
    short = bound.bound_table(pd.DataFrame({"step": [0, 1], "task_loss": [0.5, 0.4], "drift_total": [0.0, 0.5],
                                            "gap_train": [0.0, 0.1]}), curve.iloc[:2], lam=0.5)
    assert short["bound_anchored"].isna().all() and short["ratio_anchored"].isna().all()  # ball beyond sampled radii
    log = pd.DataFrame({"step": [0, 1], "task_loss": [0.5, 0.4], "loss": [0.5, 0.45],
                        "drift_total": [0.0, 0.5], "gap_train": [1e-7, 0.2]})
    table = bound.bound_table(log, curve, lam=0.5)
    assert not table["gap_exceeds_measured"].iloc[0] and math.isnan(table["ratio_measured"].iloc[0])
    assert table["ratio_measured"].iloc[1] == pytest.approx(0.2 / 0.25)
    assert table["ratio_anchored"].iloc[1] == pytest.approx(0.2 / 2.0)
    assert not bound.bound_table(log.assign(gap_train=[0.0, 0.25025]), curve, lam=0.5)["gap_exceeds_measured"].any()
    assert bound.bound_table(log.assign(gap_train=[0.0, 0.2503]), curve, lam=0.5)["gap_exceeds_measured"].iloc[1]


# ---------------------------------------------------------------------------------------------- the honest L


def test_lipschitz_at_uses_grid_radii_at_or_above_the_drift():
    """The sup over the ball of radius d needs samples out to d: L(d) comes from the first grid radius ≥ d. The old
    rule (running max up to the largest radius ≤ d) gives 1.0 here and leaves the shell (0.1, 0.5] unsampled."""
    curve = pd.DataFrame({"radius": [0.1, 1.0], "max": [1.0, 10.0], "mean": [1.0, 10.0], "n": 1})
    assert bound.lipschitz_at(curve, 0.5) == 10.0
    assert bound.lipschitz_at(curve, 1.0) == 10.0 and math.isnan(bound.lipschitz_at(curve, 1.01))
    assert np.allclose(bound.lipschitz_at(curve, np.array([0.0, 0.1, 0.10001, 0.99])), [1.0, 1.0, 10.0, 10.0])
    assert np.allclose(bound.covering_radius(curve, np.array([0.05, 0.1, 0.5])), [0.1, 0.1, 1.0])
    assert math.isnan(bound.covering_radius(curve, 2.0))
    log = pd.DataFrame({"step": [0, 1, 2], "task_loss": [0.5, 0.4, 0.3], "drift_total": [0.0, 0.05, 0.5],
                        "gap_train": [0.0, 0.001, 0.01]})
    table = bound.bound_table(log, curve, lam=50.0)  # drift bound √(2·0.5/50) ≈ 0.14 → radius 1.0
    assert (table["radius_measured"] >= table["drift"]).all()
    assert table["radius_anchored"].iloc[0] == 1.0 and table["L_anchored"].iloc[0] == 10.0
    assert table["L_measured"].tolist() == [1.0, 1.0, 10.0]


def test_worst_direction_finds_the_top_curvature_of_a_quadratic():
    f, theta0, A = _quadratic_model(p=12, c=3)
    A0 = A[0]

    def f0(params):
        t = params["theta"]
        return (0.5 * t @ A0 @ t).reshape(1, 1)

    top = torch.linalg.eigvalsh(A0).abs().max().item()
    u, history = bound.worst_direction(f0, theta0, 0.3, iters=60, seed=0)
    assert list(history.columns) == ["iteration", "radius", "L_jac"] and len(history) == 61
    assert history["L_jac"].iloc[-1] == pytest.approx(top, rel=1e-4)  # the power method on the Hessian
    # the returned direction is the best iterate, and jacobian_lipschitz reports the same ratio along it
    along = bound.jacobian_lipschitz(f0, theta0, [0.3], directions=[u])["L_jac"].iloc[0]
    assert along == pytest.approx(history["L_jac"].max(), rel=1e-9)
    # several outputs: a few iterations beat the start and many random directions
    _, hist3 = bound.worst_direction(f, theta0, 0.5, iters=10, seed=2)
    random = bound.jacobian_lipschitz(f, theta0, [0.5], n_samples=50, seed=1)["L_jac"].max()
    assert hist3["L_jac"].max() > max(hist3["L_jac"].iloc[0], random)
    # iteration 1 is g/‖g‖ with g = Σ_c (ûᵀA_c û) A_c û for a quadratic (the gradient of ‖D(u)‖² up to a factor)
    start = bound.random_directions(theta0, 1, seed=5)[0]
    _, h1 = bound.worst_direction(f, theta0, 0.5, iters=1, start=start)
    s = start["theta"]
    g = torch.einsum("c,cpq,q->p", torch.einsum("p,cpq,q->c", s, A, s), A, s)
    want = torch.linalg.vector_norm(torch.einsum("p,cpq,q->c", g, A, g)).item() / (g @ g).item()
    assert h1["L_jac"].iloc[1] == pytest.approx(want, rel=1e-6)
    start_only, h0 = bound.worst_direction(f, theta0, 0.5, iters=0, start=start)
    assert len(h0) == 1 and torch.allclose(start_only["theta"], s)
    with pytest.raises(LinftError, match="iters"):
        bound.worst_direction(f, theta0, 0.5, iters=-1)
    with pytest.raises(LinftError, match="radius"):
        bound.worst_direction(f, theta0, 0.0)


def test_worst_direction_runs_on_minilm_lora(one_thread, tiny_lora):
    model, batch = tiny_lora(["a great film", "an awful movie"], [1, 0], max_length=8)
    f, theta0 = bound.functional(model, batch)
    u, history = bound.worst_direction(f, theta0, 0.5, iters=2, seed=0)
    assert set(u) == set(theta0) and len(history) == 3 and (history["L_jac"] >= 0).all()
    assert history["L_jac"].max() >= history["L_jac"].iloc[0]


def test_objective_increases_lists_every_rise():
    values = [3.0, 2.0, 2.5, 1.0, 1.2, 1.2 * (1 + 1e-8)]
    rises = bound.objective_increases(values)
    assert rises["step"].tolist() == [2, 4] and len(rises) == bound.descent_violations(values)
    assert rises["rise"].tolist() == pytest.approx([0.5, 0.2]) and rises["rel_rise"].iloc[0] == pytest.approx(0.25)
    assert bound.objective_increases([1.0, 0.5]).empty
    with pytest.raises(LinftError, match="non-finite"):
        bound.objective_increases([1.0, float("inf")])
