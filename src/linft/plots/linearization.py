"""Figures of the linearization chapters (1 and 2): kernel movement in the toy MLP, the real vs the linearized
language model over training, measured linearization gaps against their bounds, Jacobian-Lipschitz estimates,
and the accuracy/linearity trade-off.

Each function takes tidy DataFrames and returns the ``Figure``; it never saves or closes it.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from linft import require_columns

__all__ = [
    "kernel_movement",
    "real_vs_linear",
    "output_scatter",
    "gap_vs_bound",
    "lipschitz_vs_radius",
    "tradeoff",
    "loglog_slope",
    "bound_ratios",
    "objective_curves",
    "tradeoff_anchors",
]


def _lam_label(lam: float) -> str:
    return f"λ = {lam:g}"


def _lam_colors(lams) -> dict:
    lams = sorted(set(float(v) for v in lams))
    palette = sns.color_palette("viridis", n_colors=max(len(lams), 2))
    return {lam: palette[i] for i, lam in enumerate(lams)}


def loglog_slope(x, y) -> float:
    """Least-squares slope of log y against log x (NaN with fewer than two positive points)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    keep = (x > 0) & (y > 0) & np.isfinite(x) & np.isfinite(y)
    if keep.sum() < 2 or len(np.unique(x[keep])) < 2:
        return float("nan")
    return float(np.polyfit(np.log(x[keep]), np.log(y[keep]), 1)[0])


def kernel_movement(by_width: pd.DataFrame, by_lam: pd.DataFrame | None = None, y: str = "kernel_change"):
    """Relative kernel change ‖K_T − K_0‖/‖K_0‖ against width (log-log, with the fitted slope and 1/√m, 1/m
    reference slopes) and, if ``by_lam`` is given, against λ (symlog x) at fixed width.

    Inputs: :func:`linft.toy.kernel_movement` frames (columns ``width``, ``lam``, ``seed``, ``y``); seeds are
    shown as points and their mean as a line.
    """
    require_columns(by_width, ["width", y], "kernel_movement (by_width)")
    panels = 2 if by_lam is not None else 1
    fig, axes = plt.subplots(1, panels, figsize=(4.6 * panels, 3.6), squeeze=False)
    ax = axes[0, 0]
    mean = by_width.groupby("width")[y].mean()
    ax.scatter(by_width["width"], by_width[y], s=14, alpha=0.5, color="C0", label="one seed")
    ax.plot(mean.index, mean.values, marker="o", color="C0", label="mean over seeds")
    slope = loglog_slope(by_width["width"], by_width[y])
    w0, v0 = float(mean.index[0]), float(mean.values[0])
    ws = np.array([mean.index.min(), mean.index.max()], dtype=float)
    for power, style in ((-0.5, ":"), (-1.0, "--")):
        ax.plot(ws, v0 * (ws / w0) ** power, ls=style, color="0.45", lw=1, label=f"∝ width^{power:g}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("hidden width m")
    ax.set_ylabel("‖K_T − K_0‖_F / ‖K_0‖_F" if y == "kernel_change" else y)
    ax.set_title(f"vs width (λ = 0): fitted slope {slope:.2f}")
    ax.legend(fontsize=8)
    if by_lam is not None:
        require_columns(by_lam, ["lam", y], "kernel_movement (by_lam)")
        ax = axes[0, 1]
        mean = by_lam.groupby("lam")[y].mean()
        position = {lam: i for i, lam in enumerate(mean.index)}  # λ grids include 0: equally spaced categories
        ax.scatter(by_lam["lam"].map(position), by_lam[y], s=14, alpha=0.5, color="C1")
        ax.plot(range(len(mean)), mean.values, marker="o", color="C1")
        ax.set_xticks(range(len(mean)), [f"{lam:g}" for lam in mean.index])
        ax.set_yscale("log")
        ax.set_xlabel("anchoring strength λ")
        widths = sorted(by_lam["width"].unique()) if "width" in by_lam else []
        ax.set_title(f"vs λ (width {', '.join(str(w) for w in widths)})")
        ax.set_ylabel("")
    fig.tight_layout()
    return fig


def real_vs_linear(logs: pd.DataFrame):
    """Over training, per λ: eval accuracy of the real and of the linearized model (each trained on its own), the
    argmax agreement of the real model with its linearization at the real model's parameters, and the relative
    gap ‖f − f_lin‖/‖f‖ there.

    ``logs``: tidy, one row per (λ, kind, step), with columns ``lam``, ``kind`` ("real"/"linearized"),
    ``step``, ``eval_acc``, ``agree_eval``, ``rel_gap_eval`` (the concatenated :func:`linft.train.fine_tune` logs).
    """
    require_columns(logs, ["lam", "kind", "step", "eval_acc", "agree_eval", "rel_gap_eval"], "real_vs_linear")
    colors = _lam_colors(logs["lam"])
    fig, axes = plt.subplots(1, 3, figsize=(12.5, 3.6))
    for lam, color in colors.items():
        for kind, style in (("real", "-"), ("linearized", "--")):
            part = logs[(logs["lam"] == lam) & (logs["kind"] == kind)].sort_values("step")
            if part.empty:
                continue
            axes[0].plot(part["step"], part["eval_acc"], ls=style, marker=".", color=color,
                         label=f"{_lam_label(lam)}, {kind}")
        real = logs[(logs["lam"] == lam) & (logs["kind"] == "real")].sort_values("step")
        axes[1].plot(real["step"], real["agree_eval"], marker=".", color=color, label=_lam_label(lam))
        rel = real[real["rel_gap_eval"] > 0]
        axes[2].plot(rel["step"], rel["rel_gap_eval"], marker=".", color=color, label=_lam_label(lam))
    axes[0].set_ylabel("eval accuracy")
    axes[0].set_title("accuracy (solid: real, dashed: linearized)")
    axes[1].set_ylabel("agreement of argmax")
    axes[1].set_title("real f(θ_t) vs f_lin(θ_t)")
    axes[2].set_ylabel("‖f − f_lin‖ / ‖f‖")
    axes[2].set_yscale("log")
    axes[2].set_title("relative gap at the real model's θ_t")
    for ax in axes:
        ax.set_xlabel("step")
    axes[0].legend(fontsize=7, ncol=1)
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    return fig


def output_scatter(outputs: pd.DataFrame):
    """Per λ, the real fine-tuned model's logit margin against the separately trained linearized model's, one
    point per eval example, with the diagonal.

    ``outputs``: columns ``lam``, ``margin_real``, ``margin_lin`` (margin = logit of class 1 − logit of class 0, or
    the top-two difference for more classes), optionally ``agree``.
    """
    require_columns(outputs, ["lam", "margin_real", "margin_lin"], "output_scatter")
    lams = sorted(outputs["lam"].unique())
    colors = _lam_colors(lams)
    fig, axes = plt.subplots(1, len(lams), figsize=(3.2 * len(lams), 3.3), squeeze=False, sharex=False)
    for ax, lam in zip(axes[0], lams):
        part = outputs[outputs["lam"] == lam]
        ax.scatter(part["margin_lin"], part["margin_real"], s=10, alpha=0.7, color=colors[lam])
        lo = float(min(part["margin_lin"].min(), part["margin_real"].min()))
        hi = float(max(part["margin_lin"].max(), part["margin_real"].max()))
        ax.plot([lo, hi], [lo, hi], color="0.4", lw=1, ls="--")
        ax.axhline(0, color="0.8", lw=0.8)
        ax.axvline(0, color="0.8", lw=0.8)
        corr = np.corrcoef(part["margin_lin"], part["margin_real"])[0, 1] if len(part) > 1 else float("nan")
        ax.set_title(f"{_lam_label(lam)}: r = {corr:.3f}", fontsize=10)
        ax.set_xlabel("linearized model's margin")
    axes[0, 0].set_ylabel("real model's margin")
    fig.tight_layout()
    return fig


def gap_vs_bound(tables: pd.DataFrame, drift: bool = True):
    """Measured linearization gap against its bounds over training, one colour per λ, on shared log axes.

    Solid: measured ‖f(θ_t) − f_lin(θ_t)‖; dashed: (L/2)‖θ_t − θ0‖² with the measured drift; dotted (flat):
    L·R(θ0)/λ. Steps where the measured gap is above a bound are marked with a red x. With ``drift``, a second
    panel shows measured ‖θ_t − θ0‖ against √(2R(θ0)/λ) the same way.

    ``tables``: concatenated :func:`linft.bound.bound_table` frames (column ``lam`` tells them apart).
    """
    need = ["lam", "step", "gap", "bound_measured", "bound_anchored", "drift", "drift_bound",
            "gap_exceeds_measured", "gap_exceeds_anchored", "drift_exceeds"]
    require_columns(tables, need, "gap_vs_bound")
    colors = _lam_colors(tables["lam"])
    panels = 2 if drift else 1
    fig, axes = plt.subplots(1, panels, figsize=(6.0 * panels, 4.0), squeeze=False)
    ax = axes[0, 0]
    tiny = 1e-12
    for lam, color in colors.items():
        part = tables[tables["lam"] == lam].sort_values("step")
        pos = part[part["gap"] > tiny]
        ax.plot(pos["step"], pos["gap"], color=color, marker=".", lw=1.6, label=f"{_lam_label(lam)} measured")
        bm = part[part["bound_measured"] > tiny]
        ax.plot(bm["step"], bm["bound_measured"], color=color, ls="--", lw=1.1)
        if np.isfinite(part["bound_anchored"]).all() and (part["bound_anchored"] > 0).all():
            ax.plot(part["step"], part["bound_anchored"], color=color, ls=":", lw=1.3)
        bad = part[part["gap_exceeds_measured"] | part["gap_exceeds_anchored"]]
        if not bad.empty:
            ax.scatter(bad["step"], bad["gap"], marker="x", color="red", s=40, zorder=5)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("‖f(θ_t) − f_lin(θ_t)‖ (logits, Frobenius)")
    ax.set_title("gap: measured (solid), (L/2)·drift² (dashed), L·R0/λ (dotted)", fontsize=10)
    ax.legend(fontsize=7)
    if drift:
        ax = axes[0, 1]
        for lam, color in colors.items():
            part = tables[tables["lam"] == lam].sort_values("step")
            pos = part[part["drift"] > tiny]
            ax.plot(pos["step"], pos["drift"], color=color, marker=".", lw=1.6, label=_lam_label(lam))
            if np.isfinite(part["drift_bound"]).all():
                ax.plot(part["step"], part["drift_bound"], color=color, ls=":", lw=1.3)
            bad = part[part["drift_exceeds"]]
            if not bad.empty:
                ax.scatter(bad["step"], bad["drift"], marker="x", color="red", s=40, zorder=5)
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel("‖θ_t − θ0‖")
        ax.set_title("drift: measured (solid), √(2R0/λ) (dotted)", fontsize=10)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def lipschitz_vs_radius(samples: pd.DataFrame, column: str = "L_jac", hue: str = "direction"):
    """Sampled Jacobian-Lipschitz ratios against the radius r (log-log): every sample as a point, the mean and
    the max per radius as lines, one colour per ``hue`` value (e.g. random vs trajectory directions).

    ``samples``: :func:`linft.bound.jacobian_lipschitz` frames, concatenated, with a ``hue`` column.
    """
    require_columns(samples, ["radius", column], "lipschitz_vs_radius")
    frame = samples.copy()
    if hue not in frame:
        frame[hue] = "all"
    fig, ax = plt.subplots(figsize=(6.5, 4.0))
    for i, (name, part) in enumerate(frame.groupby(hue, sort=False)):
        color = f"C{i}"
        ax.scatter(part["radius"], part[column], s=9, alpha=0.35, color=color)
        stats = part.groupby("radius")[column].agg(["mean", "max"])
        ax.plot(stats.index, stats["mean"], color=color, lw=1.2, ls="--", label=f"{name}: mean")
        ax.plot(stats.index, stats["max"], color=color, lw=1.8, label=f"{name}: max")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("radius r = ‖u‖")
    ax.set_ylabel("‖(J(θ0+u) − J(θ0)) u‖ / ‖u‖²" if column == "L_jac" else column)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def tradeoff(table: pd.DataFrame, x: str = "rel_gap_eval", y: str = "eval_acc"):
    """Accuracy against relative linearization gap, one panel per task; colour = λ, marker = plain/selective.

    ``table``: one row per run with columns ``task``, ``lam``, ``selective``, ``x``, ``y``.
    """
    require_columns(table, ["task", "lam", "selective", x, y], "tradeoff")
    tasks = list(dict.fromkeys(table["task"]))
    colors = _lam_colors(table["lam"])
    fig, axes = plt.subplots(1, len(tasks), figsize=(3.8 * len(tasks), 3.5), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        part = table[table["task"] == task]
        for _, row in part.iterrows():
            ax.scatter(row[x], row[y], color=colors[float(row["lam"])], marker="s" if row["selective"] else "o",
                       s=46 if row["selective"] else 36, edgecolor="black" if row["selective"] else "none")
        ax.set_xscale("log")
        ax.set_title(task)
        ax.set_xlabel("relative gap ‖f − f_lin‖/‖f‖ (eval)")
    axes[0, 0].set_ylabel("eval accuracy")
    handles = [plt.Line2D([], [], marker="o", ls="", color=c, label=_lam_label(lam)) for lam, c in colors.items()]
    handles += [plt.Line2D([], [], marker="o", ls="", color="0.5", label="plain"),
                plt.Line2D([], [], marker="s", ls="", color="0.5", markeredgecolor="black", label="selective")]
    axes[0, -1].legend(handles=handles, fontsize=7, loc="best")
    fig.tight_layout()
    return fig


def bound_ratios(tables: pd.DataFrame):
    """Every checked step of every (seed, λ) run: measured gap over its a-posteriori bound (L/2)·drift² (left) and
    over its a-priori bound L·R0/λ (right), on log axes, one colour per λ, with the line ratio = 1; steps above a
    bound are marked with a red x.

    ``tables``: concatenated :func:`linft.bound.bound_table` frames with columns ``lam``, ``step``,
    ``ratio_measured``, ``ratio_anchored``, ``gap_exceeds_measured``, ``gap_exceeds_anchored`` (and optionally
    ``seed``: each seed is its own line).
    """
    need = ["lam", "step", "ratio_measured", "ratio_anchored", "gap_exceeds_measured", "gap_exceeds_anchored"]
    require_columns(tables, need, "bound_ratios")
    frame = tables if "seed" in tables else tables.assign(seed=0)
    colors = _lam_colors(frame["lam"])
    fig, axes = plt.subplots(1, 2, figsize=(11.0, 3.8))
    panels = (("ratio_measured", "gap_exceeds_measured", "gap / ((L/2)·‖θ_t − θ0‖²)"),
              ("ratio_anchored", "gap_exceeds_anchored", "gap / (L·R(θ0)/λ)"))
    for ax, (column, flag, label) in zip(axes, panels):
        for (lam, _), part in frame.groupby(["lam", "seed"]):
            part = part.sort_values("step")
            pos = part[(part[column] > 0) & np.isfinite(part[column])]
            ax.plot(pos["step"], pos[column], color=colors[float(lam)], marker=".", lw=1, alpha=0.8)
            bad = part[part[flag]]
            if not bad.empty:
                ax.scatter(bad["step"], bad[column], marker="x", color="red", s=40, zorder=5)
        ax.axhline(1.0, color="0.3", ls="--", lw=1)
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel(label)
    axes[0].set_title("a posteriori (measured drift)", fontsize=10)
    axes[1].set_title("a priori (λ > 0)", fontsize=10)
    handles = [plt.Line2D([], [], color=c, marker=".", label=_lam_label(lam)) for lam, c in colors.items()]
    axes[0].legend(handles=handles, fontsize=7)
    fig.tight_layout()
    return fig


def objective_curves(frame: pd.DataFrame, rises: pd.DataFrame | None = None):
    """The anchored objective F(θ_t)/F(θ0) at every step of every (seed, λ) run (log y), one colour per λ; the
    steps where F rose (``rises``: rows with ``seed``, ``lam``, ``step``) are marked with a red x.

    ``frame``: one row per (seed, λ, step) with columns ``lam``, ``step``, ``objective`` (and optionally ``seed``).
    """
    require_columns(frame, ["lam", "step", "objective"], "objective_curves")
    frame = frame if "seed" in frame else frame.assign(seed=0)
    colors = _lam_colors(frame["lam"])
    fig, ax = plt.subplots(figsize=(6.0, 3.8))
    for (lam, seed), part in frame.groupby(["lam", "seed"]):
        part = part.sort_values("step")
        ratio = part["objective"] / part["objective"].iloc[0]
        ax.plot(part["step"], ratio, color=colors[float(lam)], lw=1.2, alpha=0.8)
        if rises is not None and len(rises):
            hit = rises[(rises["lam"] == lam) & (rises["seed"] == seed)]
            if hit.empty:
                continue
            marked = part.set_index("step").loc[hit["step"], "objective"] / part["objective"].iloc[0]
            ax.scatter(hit["step"], marked, marker="x", color="red", s=40, zorder=5)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("F(θ_t) / F(θ0)")
    ax.set_title("anchored objective at every step (red x: a rise)", fontsize=10)
    handles = [plt.Line2D([], [], color=c, label=_lam_label(lam)) for lam, c in colors.items()]
    ax.legend(handles=handles, fontsize=7)
    fig.tight_layout()
    return fig


_ANCHOR_MARKERS = {"none": "s", "all": "o", "lora": "^"}


def tradeoff_anchors(summary: pd.DataFrame, x: str = "rel_gap", y: str = "acc"):
    """Accuracy (mean over seeds, with its interval ``acc_low``–``acc_high`` as an error bar) against the
    relative linearization gap, one panel per task; colour = λ, marker = anchor (``none`` for λ = 0, ``all``:
    every trained tensor, ``lora``: the LoRA matrices only).

    ``summary``: one row per (task, λ, anchor) with columns ``task``, ``lam``, ``anchor``, ``x``, ``y``,
    ``acc_low``, ``acc_high``.
    """
    require_columns(summary, ["task", "lam", "anchor", x, y, "acc_low", "acc_high"], "tradeoff_anchors")
    tasks = list(dict.fromkeys(summary["task"]))
    colors = _lam_colors(summary["lam"])
    fig, axes = plt.subplots(1, len(tasks), figsize=(3.9 * len(tasks), 3.6), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        for row in summary[summary["task"] == task].itertuples():
            value = getattr(row, y)
            err = [[max(value - row.acc_low, 0.0)], [max(row.acc_high - value, 0.0)]]
            ax.errorbar(getattr(row, x), value, yerr=err, color=colors[float(row.lam)],
                        marker=_ANCHOR_MARKERS.get(row.anchor, "D"), ms=7, capsize=3, ls="")
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(plt.NullFormatter())  # a narrow log range would crowd minor labels
        ax.set_title(task)
        ax.set_xlabel("relative gap ‖f − f_lin‖/‖f‖ (eval)")
    axes[0, 0].set_ylabel("eval accuracy (95 % interval)")
    handles = [plt.Line2D([], [], marker="o", ls="", color=c, label=_lam_label(lam)) for lam, c in colors.items()]
    handles += [plt.Line2D([], [], marker=m, ls="", color="0.5", label=f"anchor: {a}")
                for a, m in _ANCHOR_MARKERS.items() if a in set(summary["anchor"])]
    axes[0, -1].legend(handles=handles, fontsize=7, loc="best")
    fig.tight_layout()
    return fig
