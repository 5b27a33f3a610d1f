"""Figures of the validation chapter: κ at initialization against outcomes run by run, and every predictor's pooled
rank correlation with its interval.

Inputs are the tidy tables of :mod:`linft.experiments.validation`. Each function returns the ``Figure`` and never
saves or closes it.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from linft import LinftError, require_columns

__all__ = ["anchored_pairs", "kappa_scatter", "predictor_forest"]

_SETTINGS = {"ce_adamw": "CE + AdamW", "mse_gd": "MSE + GD"}


def kappa_scatter(frame: pd.DataFrame, outcomes=("eval_acc", "train_loss"), x: str = "log_kappa",
                  labels: dict | None = None, title: str | None = None):
    """``x`` (log₁₀ κ) against each outcome, one panel per (setting, outcome), one colour per task, one marker per
    configuration; runs that did not move drawn hollow. ``frame``: the sweep rows (:func:`load_study`)."""
    require_columns(frame, [x, "task", "config", "setting", "moved", *outcomes], "kappa_scatter")
    settings = [s for s in _SETTINGS if s in set(frame["setting"])]
    if not settings:
        raise LinftError("kappa_scatter: no rows of a known setting (ce_adamw, mse_gd)")
    labels = labels or {}
    tasks, configs = sorted(frame["task"].unique()), sorted(frame["config"].unique())
    colors = dict(zip(tasks, sns.color_palette("colorblind", len(tasks))))
    markers = dict(zip(configs, "osD^vP*Xh<>p"))
    fig, axes = plt.subplots(len(outcomes), len(settings), figsize=(4.4 * len(settings) + 1.8, 3.2 * len(outcomes)),
                             squeeze=False)
    for col, setting in enumerate(settings):
        part = frame[frame["setting"] == setting]
        for row, outcome in enumerate(outcomes):
            ax = axes[row][col]
            for (task, config), group in part.groupby(["task", "config"]):
                moved = group["moved"].astype(bool)
                ax.scatter(group[x][moved], group[outcome][moved], s=22, color=colors[task], marker=markers[config],
                           alpha=0.85)
                ax.scatter(group[x][~moved], group[outcome][~moved], s=22, facecolors="none",
                           edgecolors=colors[task], marker=markers[config], alpha=0.85)
            ax.set_xlabel("log₁₀ κ at initialization" if x == "log_kappa" else x)
            ax.set_ylabel(labels.get(outcome, outcome))
            if row == 0:
                ax.set_title(_SETTINGS[setting])
    handles = [plt.Line2D([], [], ls="", marker="o", color=colors[t], label=t) for t in tasks]
    handles += [plt.Line2D([], [], ls="", marker=markers[c], color="0.3", label=c) for c in configs]
    axes[0][-1].legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def predictor_forest(rivals: pd.DataFrame, title: str | None = None):
    """Pooled within-task Spearman ρ of every predictor with the outcome, with its 95 % interval, one panel per
    setting; the claim's predictor (log κ) highlighted. ``rivals``: ``linft.experiments.validation.rival_table``."""
    require_columns(rivals, ["setting", "predictor", "label", "r", "low", "high"], "predictor_forest")
    settings = [s for s in _SETTINGS if s in set(rivals["setting"])]
    fig, axes = plt.subplots(1, len(settings), figsize=(4.8 * len(settings) + 1.0, 0.32 * rivals["label"].nunique()
                                                        + 1.6), squeeze=False, sharey=True)
    order = list(dict.fromkeys(rivals.sort_values("label")["label"]))
    position = {label: i for i, label in enumerate(order)}
    for ax, setting in zip(axes[0], settings):
        part = rivals[rivals["setting"] == setting]
        for _, row in part.iterrows():
            y = position[row["label"]]
            color = "C3" if row["predictor"] == "log_kappa" else "0.3"
            if np.isfinite(row["r"]):
                ax.plot([row["low"], row["high"]], [y, y], color=color, lw=2)
                ax.plot(row["r"], y, "o", color=color)
        ax.axvline(0, color="0.6", lw=0.8)
        ax.set_xlim(-1.05, 1.05)
        ax.set_yticks(range(len(order)), order)
        ax.set_xlabel("Spearman ρ (pooled within tasks)")
        ax.set_title(_SETTINGS[setting])
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def anchored_pairs(pairs: pd.DataFrame, lam: float, title: str | None = None):
    """The anchored slice cell by cell, one column per setting: training loss reached at λ = 0 against at ``lam``
    (top; hollow where either run did not move) and log₁₀ κ against log₁₀ κ_λ (bottom), with the diagonal.
    ``pairs``: ``AnchoredStudy.pairs`` (:mod:`linft.experiments.validation`)."""
    require_columns(pairs, ["setting", "task", "kappa", "kappa_lambda", "train_loss_0", "train_loss_lam", "moved_0",
                            "moved_lam"], "anchored_pairs")
    settings = [s for s in _SETTINGS if s in set(pairs["setting"])]
    if not settings:
        raise LinftError("anchored_pairs: no rows of a known setting (ce_adamw, mse_gd)")
    tasks = sorted(pairs["task"].unique())
    colors = dict(zip(tasks, sns.color_palette("colorblind", len(tasks))))
    fig, axes = plt.subplots(2, len(settings), figsize=(4.2 * len(settings) + 1.4, 6.4), squeeze=False)
    for col, setting in enumerate(settings):
        part = pairs[pairs["setting"] == setting]
        top, bottom = axes[0][col], axes[1][col]
        for task, group in part.groupby("task"):
            both = (group["moved_0"] & group["moved_lam"]).astype(bool)
            top.scatter(group["train_loss_0"][both], group["train_loss_lam"][both], s=20, color=colors[task])
            top.scatter(group["train_loss_0"][~both], group["train_loss_lam"][~both], s=20, facecolors="none",
                        edgecolors=colors[task])
            bottom.scatter(np.log10(group["kappa"]), np.log10(group["kappa_lambda"]), s=20, color=colors[task],
                           label=task)
        for ax in (top, bottom):
            lo, hi = min(ax.get_xlim()[0], ax.get_ylim()[0]), max(ax.get_xlim()[1], ax.get_ylim()[1])
            ax.plot([lo, hi], [lo, hi], color="0.6", lw=0.8, ls="--")
        top.set_xlabel("training loss reached, λ = 0")
        top.set_ylabel(f"training loss reached, λ = {lam:g}")
        top.set_title(_SETTINGS[setting])
        bottom.set_xlabel("log₁₀ κ")
        bottom.set_ylabel(f"log₁₀ κ_λ (λ = {lam:g})")
    axes[1][-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
