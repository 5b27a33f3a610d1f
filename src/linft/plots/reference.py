"""Figures of chapter 5's keystone study (:mod:`linft.experiments.reference_study`): configuration means of log κ
against held-out accuracy per task, and ρ(N) against what each calibration size costs.

Each function returns the ``Figure`` and never saves or closes it.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from linft import LinftError, require_columns

__all__ = ["config_means_scatter", "rho_against_cost"]


def config_means_scatter(means: pd.DataFrame, x: str = "log_kappa_ref_32", y: str = "eval_acc",
                         x_label: str = "log₁₀ κ (reference kernel, N = 32)", y_label: str = "eval accuracy"):
    """One panel per task: each LoRA configuration's mean ``x`` against its mean ``y`` over seeds, with the seeds'
    range as a vertical bar when ``means`` holds ``<y>_min`` / ``<y>_max``. ``means``: one row per task × config."""
    require_columns(means, ["task", "config", x, y], "config_means_scatter")
    tasks = sorted(means["task"].unique())
    if not tasks:
        raise LinftError("config_means_scatter: no configurations to plot")
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.2 * len(tasks), 3.4), squeeze=False)
    colors = sns.color_palette("colorblind", len(tasks))
    for ax, task, color in zip(axes[0], tasks, colors):
        part = means[means["task"] == task]
        if f"{y}_min" in part and f"{y}_max" in part:
            ax.vlines(part[x], part[f"{y}_min"], part[f"{y}_max"], color=color, alpha=0.35, lw=2)
        ax.scatter(part[x], part[y], color=color, s=28, zorder=3)
        ax.set_title(task)
        ax.set_xlabel(x_label)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(y_label)
    fig.tight_layout()
    return fig


def rho_against_cost(table: pd.DataFrame):
    """Pooled configuration-level ρ(log κ, accuracy) with its interval against the kernel's cost as a fraction of
    the fine-tuning run, one series per kernel, each point labelled with its calibration size N (``table``:
    :func:`linft.experiments.reference_study.rho_by_n`). Both kernels come from one set of gradients, so they cost
    the same: their points are drawn a little apart. The dashed line is ρ = 0; the claim predicts ρ < 0."""
    require_columns(table, ["kernel", "n", "rho", "low", "high", "cost_ratio"], "rho_against_cost")
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    names = {"ref": "reference kernel (LoRA, asym SignGD)", "trained": "kernel of what is trained (LoRA + head)"}
    kernels = list(dict.fromkeys(table["kernel"]))
    for i, (kernel, color) in enumerate(zip(kernels, sns.color_palette("colorblind", len(kernels)))):
        part = table[table["kernel"] == kernel].sort_values("cost_ratio")
        x = part["cost_ratio"].to_numpy(float) * (0.94 if i == 0 else 1.06)
        err = np.vstack([part["rho"] - part["low"], part["high"] - part["rho"]])
        ax.errorbar(x, part["rho"], yerr=err, marker="o", capsize=3, color=color, label=names.get(kernel, kernel))
        if i == 0:
            for xi, (_, row) in zip(x, part.iterrows()):
                ax.annotate(f"N={int(row['n'])}", (xi, row["rho"]), textcoords="offset points", xytext=(-30, 5),
                            fontsize=8)
    ax.axhline(0, ls="--", color="grey", lw=1)
    ax.set_xscale("log")
    ticks = sorted(table["cost_ratio"].unique())
    ax.set_xticks(ticks, [f"1/{1 / t:.0f}" for t in ticks])
    ax.minorticks_off()
    ax.set_ylim(-1.08, 1.08)
    ax.set_xlabel("kernel cost / fine-tuning cost (medians over the same runs)")
    ax.set_ylabel("pooled ρ(log κ, eval accuracy)")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=2, frameon=False)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
