"""Every public function of :mod:`linft.plots` on small synthetic tidy data: it returns a Figure with the expected
axes, draws something on each, sets its titles and labels, and rejects a frame without its columns with
:class:`linft.LinftError`."""

from __future__ import annotations

import math

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure

from linft import LinftError
from linft.plots import PALETTE, set_style
from linft.plots import data as dplots
from linft.plots import linearization as lplots
from linft.plots import ntk as nplots

matplotlib.use("Agg")  # no display in tests (switches pyplot's backend even after its import)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def drawn(ax) -> int:
    """How many data artists (lines, collections, patches) an axes holds."""
    return len(ax.lines) + len(ax.collections) + len(ax.patches)


def check_figure(fig, n_axes: int) -> list:
    assert isinstance(fig, Figure)
    assert len(fig.axes) == n_axes
    for ax in fig.axes:
        assert drawn(ax) > 0, f"nothing drawn on axes {ax.get_title()!r}"
    return fig.axes


def legend_texts(ax) -> list[str]:
    legend = ax.get_legend()
    assert legend is not None
    return [t.get_text() for t in legend.get_texts()]


# ------------------------------------------------------------------------------------------------ style


def test_plots_leave_the_backend_to_the_caller():
    """Importing linft.plots and setting its style never picks a matplotlib backend (a chapter forced onto Agg loses
    its figures, DESIGN.md): the backend the caller chose survives, in a fresh interpreter."""
    import os
    import subprocess
    import sys

    code = ("import matplotlib; matplotlib.use('svg'); import linft.plots, linft.plots.data, linft.plots.layers, "
            "linft.plots.linearization, linft.plots.ntk, linft.plots.reference, linft.plots.validation; "
            "linft.plots.set_style(); print(matplotlib.get_backend())")
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().lower() == "svg"


def test_set_style():
    with matplotlib.rc_context():
        set_style()
        assert plt.rcParams["figure.dpi"] == 110
        assert plt.rcParams["axes.titlesize"] == 12
        assert tuple(plt.rcParams["figure.figsize"]) == (7.0, 4.0)
    assert PALETTE == "colorblind"


# ------------------------------------------------------------------------------------------------ data


@pytest.fixture
def lengths():
    rng = np.random.default_rng(0)
    return pd.DataFrame({
        "task": np.repeat(["mr", "subj", "bbc"], 30),
        "length": np.concatenate([rng.integers(5, 40, 30), rng.integers(10, 60, 30), rng.integers(200, 900, 30)]),
    })


def test_length_distributions(lengths):
    fig = dplots.length_distributions(lengths, max_length=128, unit="words")
    (ax,) = check_figure(fig, 1)
    assert ax.get_xscale() == "log"
    assert ax.get_xlabel() == "example length (words, log scale)"
    assert [t.get_text() for t in ax.get_yticklabels()] == ["mr", "subj", "bbc"]  # ordered by median length
    assert any(list(line.get_xdata()) == [128, 128] for line in ax.lines)  # the max_length marker
    assert any("max_length = 128" in t.get_text() for t in ax.texts)


def test_length_distributions_without_max_length(lengths):
    (ax,) = check_figure(dplots.length_distributions(lengths), 1)
    assert not ax.texts
    assert "tokens" in ax.get_xlabel()


@pytest.fixture
def train_log():
    steps = np.arange(0, 50, 5)
    acc = np.where(steps % 10 == 0, 0.5 + steps / 200, np.nan)
    return pd.DataFrame({"step": steps, "task_loss": 0.7 * np.exp(-steps / 30), "eval_acc": acc})


def test_sanity_curves(train_log):
    ax_loss, ax_acc = check_figure(dplots.sanity_curves(train_log, majority=0.5), 2)
    assert ax_loss.get_ylabel() == "training loss (cross-entropy)"
    assert ax_acc.get_ylabel() == "eval accuracy"
    assert len(ax_loss.lines[0].get_xdata()) == len(train_log)
    assert len(ax_acc.lines[0].get_xdata()) == int(train_log["eval_acc"].notna().sum())  # NaN rows dropped
    assert legend_texts(ax_acc) == ["LoRA fine-tuning", "majority class"]


def test_sanity_curves_other_columns(train_log):
    log = train_log.rename(columns={"task_loss": "loss", "eval_acc": "acc"})
    check_figure(dplots.sanity_curves(log, 0.6, loss_col="loss", acc_col="acc"), 2)


# ------------------------------------------------------------------------------------------------ linearization


def test_loglog_slope():
    x = np.array([1.0, 10.0, 100.0])
    assert lplots.loglog_slope(x, 3.0 / x) == pytest.approx(-1.0)
    assert lplots.loglog_slope([1, 4, -1, 0], [1, 2, 5, 3]) == pytest.approx(0.5)  # non-positive points dropped
    assert math.isnan(lplots.loglog_slope([1.0], [2.0]))
    assert math.isnan(lplots.loglog_slope([2.0, 2.0], [1.0, 3.0]))  # one distinct x


@pytest.fixture
def by_width():
    rows = [{"width": w, "lam": 0.0, "seed": s, "kernel_change": (1 + 0.05 * s) / math.sqrt(w)}
            for w in (16, 64, 256) for s in range(2)]
    return pd.DataFrame(rows)


@pytest.fixture
def by_lam():
    rows = [{"width": 64, "lam": lam, "seed": s, "kernel_change": 0.1 / (1 + 10 * lam) * (1 + 0.05 * s)}
            for lam in (0.0, 0.1, 1.0) for s in range(2)]
    return pd.DataFrame(rows)


def test_kernel_movement_by_width(by_width):
    (ax,) = check_figure(lplots.kernel_movement(by_width), 1)
    assert ax.get_title() == "vs width (λ = 0): fitted slope -0.50"
    assert (ax.get_xscale(), ax.get_yscale()) == ("log", "log")
    assert ax.get_ylabel() == "‖K_T − K_0‖_F / ‖K_0‖_F"
    assert len(ax.lines) == 3  # the mean and two reference slopes


def test_kernel_movement_by_lam(by_width, by_lam):
    _, ax = check_figure(lplots.kernel_movement(by_width, by_lam), 2)
    assert ax.get_title() == "vs λ (width 64)"
    assert ax.get_xlabel() == "anchoring strength λ"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "0.1", "1"]


def test_kernel_movement_other_column(by_width):
    frame = by_width.rename(columns={"kernel_change": "moved"})
    (ax,) = check_figure(lplots.kernel_movement(frame, y="moved"), 1)
    assert ax.get_ylabel() == "moved"


@pytest.fixture
def train_logs():
    rows = []
    for lam in (0.0, 1.0):
        for kind in ("real", "linearized"):
            for step in (0, 10, 20):
                rows.append({"lam": lam, "kind": kind, "step": step, "eval_acc": 0.5 + step / 100,
                             "agree_eval": 1.0 - step / 200, "rel_gap_eval": step / 1000})
    return pd.DataFrame(rows)


def test_real_vs_linear(train_logs):
    axes = check_figure(lplots.real_vs_linear(train_logs), 3)
    assert [ax.get_ylabel() for ax in axes] == ["eval accuracy", "agreement of argmax", "‖f − f_lin‖ / ‖f‖"]
    assert all(ax.get_xlabel() == "step" and ax.get_title() for ax in axes)
    assert len(axes[0].lines) == 4  # 2 λ × real/linearized
    assert axes[2].get_yscale() == "log"
    assert len(axes[2].lines[0].get_xdata()) == 2  # the zero gap at step 0 cannot go on a log axis
    assert legend_texts(axes[1]) == ["λ = 0", "λ = 1"]


@pytest.fixture
def outputs():
    rng = np.random.default_rng(1)
    frames = []
    for lam in (0.0, 0.5, 2.0):
        lin = rng.normal(size=20)
        frames.append(pd.DataFrame({"lam": lam, "margin_lin": lin, "margin_real": lin + 0.1 * rng.normal(size=20)}))
    return pd.concat(frames, ignore_index=True)


def test_output_scatter(outputs):
    axes = check_figure(lplots.output_scatter(outputs), 3)
    assert [ax.get_title().split(":")[0] for ax in axes] == ["λ = 0", "λ = 0.5", "λ = 2"]
    assert all(" r = 0.9" in ax.get_title() for ax in axes)
    assert axes[0].get_ylabel() == "real model's margin"
    assert all(ax.get_xlabel() == "linearized model's margin" for ax in axes)


@pytest.fixture
def bound_tables():
    rows = []
    for lam in (0.0, 0.1, 1.0):
        for step in range(5):
            drift = 0.01 * step / (1 + lam)
            gap = 0.5 * drift**2
            rows.append({
                "lam": lam, "step": step, "gap": gap, "bound_measured": 2 * gap,
                "bound_anchored": math.inf if lam == 0 else 0.05 / lam, "drift": drift,
                "drift_bound": math.inf if lam == 0 else 0.1 / math.sqrt(lam),
                "gap_exceeds_measured": lam == 1.0 and step == 4, "gap_exceeds_anchored": False,
                "drift_exceeds": False,
            })
    return pd.DataFrame(rows)


def test_gap_vs_bound(bound_tables):
    ax_gap, ax_drift = check_figure(lplots.gap_vs_bound(bound_tables), 2)
    assert ax_gap.get_yscale() == ax_drift.get_yscale() == "log"
    assert ax_gap.get_title().startswith("gap: measured")
    assert ax_drift.get_ylabel() == "‖θ_t − θ0‖"
    # measured and (L/2)·drift² for each λ, the anchored bound only where it is finite (λ > 0)
    assert len(ax_gap.lines) == 3 * 2 + 2
    assert len(ax_gap.collections) == 1  # the red x where the gap exceeds a bound
    assert legend_texts(ax_gap)[0] == "λ = 0 measured"


def test_gap_vs_bound_without_drift(bound_tables):
    (ax,) = check_figure(lplots.gap_vs_bound(bound_tables, drift=False), 1)
    assert ax.get_xlabel() == "step"


@pytest.fixture
def lipschitz_samples():
    rng = np.random.default_rng(2)
    rows = [{"radius": r, "direction": d, "L_jac": abs(rng.normal(1.0, 0.1)) * (2 if d == "trajectory" else 1)}
            for r in (1e-3, 1e-2, 1e-1) for d in ("random", "trajectory") for _ in range(4)]
    return pd.DataFrame(rows)


def test_lipschitz_vs_radius(lipschitz_samples):
    (ax,) = check_figure(lplots.lipschitz_vs_radius(lipschitz_samples), 1)
    assert legend_texts(ax) == ["random: mean", "random: max", "trajectory: mean", "trajectory: max"]
    assert (ax.get_xscale(), ax.get_yscale()) == ("log", "log")
    assert ax.get_xlabel() == "radius r = ‖u‖"


def test_lipschitz_vs_radius_without_hue_column(lipschitz_samples):
    frame = lipschitz_samples.drop(columns="direction")
    (ax,) = check_figure(lplots.lipschitz_vs_radius(frame), 1)
    assert legend_texts(ax) == ["all: mean", "all: max"]
    assert "direction" not in frame  # the caller's frame is left alone


@pytest.fixture
def tradeoff_table():
    rows = [{"task": task, "lam": lam, "selective": sel, "rel_gap_eval": 0.01 + lam / 10 + 0.01 * sel,
             "eval_acc": 0.8 - lam / 10} for task in ("mr", "subj") for lam in (0.0, 1.0) for sel in (False, True)]
    return pd.DataFrame(rows)


def test_tradeoff(tradeoff_table):
    axes = check_figure(lplots.tradeoff(tradeoff_table), 2)
    assert [ax.get_title() for ax in axes] == ["mr", "subj"]
    assert axes[0].get_ylabel() == "eval accuracy"
    assert all(len(ax.collections) == 4 and ax.get_xscale() == "log" for ax in axes)
    assert legend_texts(axes[-1]) == ["λ = 0", "λ = 1", "plain", "selective"]


# ------------------------------------------------------------------------------------------------ NTK


def test_spectra():
    eig = {"mr": torch.tensor([4.0, 1.0, 0.25, 0.5]), "subj": np.array([2.0, -1e-3, 0.0, 0.1])}
    fig = nplots.spectra(eig, title="two spectra")
    (ax,) = check_figure(fig, 1)
    assert ax.get_title() == "two spectra"
    assert ax.get_yscale() == "log"
    assert ax.get_ylabel() == "eigenvalue λ"
    assert legend_texts(ax) == ["mr", "subj (2 ≤ 0 not shown)"]
    assert list(ax.lines[0].get_ydata()) == [4.0, 1.0, 0.5, 0.25]  # decreasing
    assert len(ax.lines[1].get_xdata()) == 2


def test_spectra_normalized_on_given_axes():
    fig, ax = plt.subplots()
    assert nplots.spectra({"a": [3.0, 1.5, 0.3]}, normalize=True, ax=ax) is fig
    check_figure(fig, 1)
    assert ax.get_ylabel() == "λ / λmax"
    assert ax.lines[0].get_ydata()[0] == pytest.approx(1.0)


def test_spectra_needs_eigenvalues():
    with pytest.raises(LinftError, match="no spectra"):
        nplots.spectra({})


@pytest.fixture
def kappas():
    rows = [{"task": task, "n": n, "targets": targets, "kappa": k * n * (2 if targets == "all" else 1)}
            for task, k in (("mr", 10.0), ("subj", 30.0)) for n in (8, 16, 32) for targets in ("q,v", "all")]
    frame = pd.DataFrame(rows)
    frame.loc[len(frame)] = {"task": "subj", "n": 64, "targets": "q,v", "kappa": math.inf}
    return frame


def test_kappa_vs_n(kappas):
    (ax,) = check_figure(nplots.kappa_vs_n(kappas, title="κ grows"), 1)
    assert ax.get_title() == "κ grows (1 infinite κ not shown)"
    assert (ax.get_xscale(), ax.get_yscale()) == ("log", "log")
    assert ax.get_xlabel() == "examples in the kernel, N"
    assert ax.get_ylabel() == "condition number κ"
    assert legend_texts(ax) == ["mr", "subj"]


def test_kappa_vs_n_without_hue(kappas):
    finite = kappas[np.isfinite(kappas["kappa"])]
    (ax,) = check_figure(nplots.kappa_vs_n(finite.drop(columns="task"), hue=None), 1)
    assert ax.get_title() == ""


def test_kappa_vs_n_many_hues_moves_the_legend():
    frame = pd.DataFrame([{"task": f"t{i}", "n": n, "kappa": (i + 1) * n} for i in range(6) for n in (8, 16)])
    (ax,) = check_figure(nplots.kappa_vs_n(frame), 1)
    assert ax.get_legend().get_title().get_text() == "task"
    assert len(legend_texts(ax)) == 6


def test_kappa_by_targets(kappas):
    (ax,) = check_figure(nplots.kappa_by_targets(kappas, title="per target set"), 1)
    assert ax.get_title() == "per target set"
    assert ax.get_yscale() == "log"
    assert ax.get_xlabel() == "LoRA target modules"
    assert len([p for p in ax.patches if p.get_height() > 0]) == 4  # 2 target sets × 2 tasks (means over N)


@pytest.fixture
def shares():
    layers = ["embeddings", "layer.0", "layer.1", "classifier"]
    return pd.DataFrame({"layer": layers, "share": [0.1, 0.3, 0.4, 0.2]})


def test_layer_contributions(shares):
    (ax,) = check_figure(nplots.layer_contributions(shares, title="shares"), 1)
    assert ax.get_title() == "shares"
    assert [t.get_text() for t in ax.get_xticklabels()] == list(shares["layer"])  # first-appearance order
    assert ax.get_ylabel() == "share of tr K  (tr K_l / tr K)"
    assert sorted(round(p.get_height(), 6) for p in ax.patches if p.get_height() > 0) == [0.1, 0.2, 0.3, 0.4]


def test_layer_contributions_with_hue(shares):
    frame = pd.concat([shares.assign(task="mr"), shares.assign(task="subj")], ignore_index=True)
    (ax,) = check_figure(nplots.layer_contributions(frame, hue="task"), 1)
    assert legend_texts(ax) == ["mr", "subj"]


@pytest.fixture
def kernels():
    gen = torch.Generator().manual_seed(3)
    a = torch.randn(6, 4, generator=gen, dtype=torch.float64)
    sgd = a @ a.T + 0.1 * torch.eye(6, dtype=torch.float64)
    noise = 0.05 * torch.randn(6, 6, generator=gen, dtype=torch.float64)
    return {"sgd": sgd, "signgd": sgd + noise @ noise.T, "asym": (sgd + 0.02 * noise).numpy()}


def test_kernel_variants(kernels):
    fig = nplots.kernel_variants(kernels, title="three kernels")
    ax_s, ax_e = check_figure(fig, 2)
    assert fig._suptitle is not None and fig._suptitle.get_text() == "three kernels"
    assert ax_s.get_title() == "spectra (λ / λmax)"
    assert len(ax_s.lines) == 3
    assert ax_e.get_title() == "kernel entries"
    assert ax_e.get_xlabel() == "sgd entry / mean diagonal"
    texts = legend_texts(ax_e)
    assert [t.split(" (")[0] for t in texts] == ["signgd", "asym"]
    assert all("r = 0.9" in t or "r = 1.0" in t for t in texts)


def test_kernel_variants_needs_two_kernels_of_one_shape(kernels):
    with pytest.raises(LinftError, match="at least two"):
        nplots.kernel_variants({"sgd": kernels["sgd"]})
    with pytest.raises(LinftError, match="different shapes"):
        nplots.kernel_variants({"sgd": kernels["sgd"], "small": torch.eye(3)})


# ------------------------------------------------------------------------------------------------ bad input


CASES = {
    "length_distributions": (dplots.length_distributions, "lengths", "length", {}),
    "sanity_curves": (dplots.sanity_curves, "train_log", "eval_acc", {"majority": 0.5}),
    "kernel_movement": (lplots.kernel_movement, "by_width", "width", {}),
    "real_vs_linear": (lplots.real_vs_linear, "train_logs", "agree_eval", {}),
    "output_scatter": (lplots.output_scatter, "outputs", "margin_real", {}),
    "gap_vs_bound": (lplots.gap_vs_bound, "bound_tables", "drift_bound", {}),
    "lipschitz_vs_radius": (lplots.lipschitz_vs_radius, "lipschitz_samples", "L_jac", {}),
    "tradeoff": (lplots.tradeoff, "tradeoff_table", "selective", {}),
    "kappa_vs_n": (nplots.kappa_vs_n, "kappas", "kappa", {}),
    "kappa_by_targets": (nplots.kappa_by_targets, "kappas", "targets", {}),
    "layer_contributions": (nplots.layer_contributions, "shares", "share", {}),
}


@pytest.mark.parametrize("name", list(CASES))
def test_missing_column_raises(request, name):
    func, fixture, column, kwargs = CASES[name]
    frame = request.getfixturevalue(fixture).drop(columns=column)
    with pytest.raises(LinftError, match=f"missing \\['{column}'\\]"):
        func(frame, **kwargs)
    assert not plt.get_fignums()  # checked before any figure is made


@pytest.mark.parametrize("name", list(CASES))
def test_empty_frame_and_non_frame_raise(request, name):
    func, fixture, _, kwargs = CASES[name]
    frame = request.getfixturevalue(fixture)
    with pytest.raises(LinftError, match="empty DataFrame"):
        func(frame.iloc[:0], **kwargs)
    with pytest.raises(LinftError, match="needs a DataFrame"):
        func(frame.to_dict("list"), **kwargs)


def test_kernel_movement_checks_by_lam(by_width, by_lam):
    with pytest.raises(LinftError, match="by_lam"):
        lplots.kernel_movement(by_width, by_lam.drop(columns="lam"))


def test_predicted_vs_measured():
    curves = pd.DataFrame({"task": ["a"] * 6 + ["b"] * 6, "lam": ([0.0] * 3 + [0.5] * 3) * 2,
                           "step": [0, 5, 10] * 4, "measured": np.linspace(1, 0.5, 12),
                           "predicted": np.linspace(1, 0.4, 12)})
    fig = nplots.predicted_vs_measured(curves)
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    assert [ax.get_title() for ax in fig.axes] == ["a", "b"]
    assert all(len(ax.get_lines()) == 4 for ax in fig.axes)  # 2 λ × (measured, predicted)
    assert fig.axes[0].get_yscale() == "log"
    with pytest.raises(LinftError, match="predicted"):
        nplots.predicted_vs_measured(curves.drop(columns="predicted"))


def test_kappa_lambda_curves():
    lams = [0.0, 1e-3, 1e-1, 10.0]
    rows = [{"task": task, "lam": lam,
             "kappa_lambda": (mx + 8 * lam) / (mn + 8 * lam) if mn + 8 * lam > 0 else math.inf}
            for task, mx, mn in (("a", 1.0, 0.01), ("b", 2.0, 0.0)) for lam in lams]
    fig = nplots.kappa_lambda_curves(pd.DataFrame(rows), marks=(0.5, 5), title="κ_λ")
    (ax,) = check_figure(fig, 1)
    assert (ax.get_xscale(), ax.get_yscale()) == ("log", "log")
    assert ax.get_ylabel() == "κ_λ − 1"
    assert "2 rows" in ax.get_title()  # λ = 0 for both tasks (one of them infinite), nothing else
    assert legend_texts(ax) == ["a", "b"]
    assert len(ax.get_lines()) >= 4  # two curves, two marks
    with pytest.raises(LinftError, match="missing"):
        nplots.kappa_lambda_curves(pd.DataFrame(rows).drop(columns="kappa_lambda"))


# ------------------------------------------------------------------------------------------------ chapter 2, seeds


@pytest.fixture
def seed_bound_tables(bound_tables):
    frames = [bound_tables.assign(seed=s, ratio_measured=0.5 + 0.1 * s, ratio_anchored=0.01 * (1 + s))
              for s in (0, 1)]
    frame = pd.concat(frames, ignore_index=True)
    frame.loc[frame["lam"] == 0, "ratio_anchored"] = np.nan
    return frame


def test_bound_ratios(seed_bound_tables):
    ax_meas, ax_anch = check_figure(lplots.bound_ratios(seed_bound_tables), 2)
    assert ax_meas.get_yscale() == ax_anch.get_yscale() == "log"
    assert len(ax_meas.collections) == 2  # one red x per seed at the step flagged in the fixture
    assert legend_texts(ax_meas) == ["λ = 0", "λ = 0.1", "λ = 1"]
    with pytest.raises(LinftError, match="missing \\['ratio_anchored'\\]"):
        lplots.bound_ratios(seed_bound_tables.drop(columns="ratio_anchored"))


def test_objective_curves():
    frame = pd.DataFrame({"seed": 0, "lam": [0.0] * 4 + [5.0] * 4, "step": list(range(4)) * 2,
                          "objective": [1.0, 0.8, 0.9, 0.5, 1.0, 0.9, 0.85, 0.84]})
    rises = pd.DataFrame({"seed": [0], "lam": [0.0], "step": [2]})
    (ax,) = check_figure(lplots.objective_curves(frame, rises), 1)
    assert len(ax.lines) == 2 and len(ax.collections) == 1
    assert ax.get_ylabel() == "F(θ_t) / F(θ0)"
    (ax,) = check_figure(lplots.objective_curves(frame.drop(columns="seed")), 1)
    assert not ax.collections
    with pytest.raises(LinftError, match="missing \\['objective'\\]"):
        lplots.objective_curves(frame.drop(columns="objective"))


def test_tradeoff_anchors():
    rows = [{"task": t, "lam": lam, "anchor": a, "rel_gap": 0.01 + lam / 100, "acc": 0.7, "acc_low": 0.65,
             "acc_high": 0.75} for t in ("mr", "subj") for lam, a in ((0.0, "none"), (50.0, "all"), (50.0, "lora"))]
    axes = check_figure(lplots.tradeoff_anchors(pd.DataFrame(rows)), 2)
    assert [ax.get_title() for ax in axes] == ["mr", "subj"]
    assert legend_texts(axes[-1]) == ["λ = 0", "λ = 50", "anchor: none", "anchor: all", "anchor: lora"]
    with pytest.raises(LinftError, match="missing \\['acc_low'\\]"):
        lplots.tradeoff_anchors(pd.DataFrame(rows).drop(columns="acc_low"))
