"""Figures of the layer-selection chapter: per-layer spectra, Weyl bounds along a growing union of layers, κ_λ of
each choice with its bounds, accuracy per choice, the single-layer profile, predicted vs measured loss curves.

Inputs are tidy DataFrames (those of :mod:`linft.experiments.layer_selection`). Each function returns the
``Figure`` and never saves or closes it.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from linft import LinftError, require_columns

__all__ = ["per_layer_spectra", "bounds_path", "choice_intervals", "accuracy_by_choice", "layer_profile",
           "loss_curves"]

_QUANTITY_LABELS = {"λmin": "λmin(K_l)", "λmax": "λmax(K_l)", "trace": "tr K_l"}


def _colors(n: int) -> list:
    return sns.color_palette("colorblind", max(n, 1))


def _frames(frames: dict, columns, what: str) -> dict:
    if not isinstance(frames, dict) or not frames:
        raise LinftError(f"{what} needs a non-empty {{label: DataFrame}} dict")
    for frame in frames.values():
        require_columns(frame, columns, what)
    return frames


def per_layer_spectra(tables: dict, quantities=("λmin", "λmax", "trace"), title: str | None = None):
    """λmin, λmax and trace of each layer's own kernel K_l against the layer index, one panel per model (log y).

    ``tables``: ``{model label: DataFrame with "layer" and the quantities}`` (:func:`per_layer_table`).
    """
    _frames(tables, ["layer", *quantities], "per_layer_spectra")
    fig, axes = plt.subplots(1, len(tables), figsize=(4.6 * len(tables) + 0.6, 3.6), squeeze=False)
    colors = _colors(len(quantities))
    for ax, (label, table) in zip(axes[0], tables.items()):
        for color, quantity in zip(colors, quantities):
            values = table[quantity].astype(float)
            keep = values > 0
            ax.plot(table["layer"][keep], values[keep], "-o", ms=3, color=color,
                    label=_QUANTITY_LABELS.get(quantity, quantity))
        ax.set_yscale("log")
        ax.set_xlabel("layer")
        ax.set_title(str(label))
    axes[0][0].set_ylabel("eigenvalue / trace")
    axes[0][-1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def bounds_path(paths: dict, quantities=("λmin", "λmax", "κ_λ"), title: str | None = None):
    """Exact λmin, λmax and κ_λ of K_S (lines, dots) inside their Weyl intervals (shaded) as layers are added one
    by one; one panel per quantity, one colour per model. Log y; infinite bounds are left open (not drawn).

    ``paths``: ``{model label: DataFrame with "size", q, q_lo, q_hi for each quantity q}`` (:func:`growth_path`).
    """
    _frames(paths, ["size", *[f"{q}{s}" for q in quantities for s in ("", "_lo", "_hi")]], "bounds_path")
    fig, axes = plt.subplots(1, len(quantities), figsize=(4.1 * len(quantities) + 0.8, 3.6), squeeze=False)
    colors = _colors(len(paths))
    for ax, quantity in zip(axes[0], quantities):
        for color, (label, path) in zip(colors, paths.items()):
            x = path["size"].to_numpy()
            lo = path[f"{quantity}_lo"].to_numpy(dtype=float)
            hi = path[f"{quantity}_hi"].to_numpy(dtype=float)
            finite = np.isfinite(hi) & (lo > 0)
            ax.fill_between(x[finite], lo[finite], hi[finite], color=color, alpha=0.2, lw=0)
            ax.plot(x, path[quantity].astype(float), "-o", ms=3, color=color, label=f"{label}: exact")
            ax.plot(x[finite], lo[finite], ":", lw=0.8, color=color)
            ax.plot(x[finite], hi[finite], ":", lw=0.8, color=color)
        ax.set_yscale("log")
        ax.set_xlabel("layers in the union (added in layer order)")
        ax.set_title(quantity)
    axes[0][-1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False,
                       title="shaded: Weyl bounds", title_fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def choice_intervals(table: pd.DataFrame, value: str = "κ_λ", facet: str = "model", highlight: str = "advisor",
                     title: str | None = None):
    """Each choice's exact ``value`` (dot) with its Weyl interval (bar), one row per choice, one panel per
    ``facet`` value; the ``highlight`` choice in its own colour. Log x; an infinite upper bound is drawn to the
    panel's edge with an arrow.

    ``table``: columns ``choice``, ``layers``, ``value``, ``value_lo``, ``value_hi`` and ``facet``
    (:func:`choice_table` rows with a model column).
    """
    require_columns(table, ["choice", "layers", value, f"{value}_lo", f"{value}_hi", facet], "choice_intervals")
    panels = list(dict.fromkeys(table[facet]))
    height = 0.32 * table.groupby(facet).size().max() + 1.4
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), height), squeeze=False)
    base, special = _colors(2)
    for ax, panel in zip(axes[0], panels):
        part = table[table[facet] == panel].reset_index(drop=True)
        y = np.arange(len(part))[::-1]
        finite_hi = part[f"{value}_hi"].astype(float).replace(np.inf, np.nan)
        edge = float(np.nanmax([finite_hi.max(), part[value].max()])) * 2
        for yi, row in zip(y, part.itertuples(index=False)):
            row = row._asdict()
            color = special if row["choice"] == highlight else base
            lo, hi = float(row[f"{value}_lo"]), float(row[f"{value}_hi"])
            ax.plot([lo, hi if np.isfinite(hi) else edge], [yi, yi], lw=3, alpha=0.35, color=color)
            if not np.isfinite(hi):
                ax.annotate("", xy=(edge, yi), xytext=(edge / 1.5, yi), arrowprops={"arrowstyle": "->"})
            ax.plot(float(row[value]), yi, "o", color=color)
        ax.set_yticks(y)
        ax.set_yticklabels([f"{c} ({layers})" for c, layers in zip(part["choice"], part["layers"])], fontsize=8)
        ax.set_xscale("log")
        ax.set_xlabel(f"{value}: exact (dot), Weyl interval (bar)")
        ax.set_title(str(panel))
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def accuracy_by_choice(summary: pd.DataFrame, verdicts: pd.DataFrame | None = None, highlight: str = "advisor",
                       reference: str = "all", title: str | None = None):
    """Held-out accuracy per choice with its 95 % interval, one panel per task; the ``highlight`` choice in its own
    colour, the ``reference`` choice grey, and (with ``verdicts``) the median baseline as a dashed line.

    ``summary``: columns ``task``, ``choice``, ``acc``, ``acc_low``, ``acc_high`` (:func:`summarize`); ``verdicts``:
    ``task``, ``median_baseline_acc`` (:func:`advisor_verdicts`).
    """
    require_columns(summary, ["task", "choice", "acc", "acc_low", "acc_high"], "accuracy_by_choice")
    tasks = list(dict.fromkeys(summary["task"]))
    n_rows = summary.groupby("task").size().max()
    fig, axes = plt.subplots(1, len(tasks), figsize=(3.6 * len(tasks) + 1.2, 0.3 * n_rows + 1.6), squeeze=False,
                             sharex=True)
    base, special = _colors(2)
    for ax, task in zip(axes[0], tasks):
        part = summary[summary["task"] == task].reset_index(drop=True)
        y = np.arange(len(part))[::-1]
        for yi, row in zip(y, part.itertuples(index=False)):
            color = special if row.choice == highlight else "0.55" if row.choice == reference else base
            ax.errorbar(row.acc, yi, xerr=[[row.acc - row.acc_low], [row.acc_high - row.acc]], fmt="o", ms=4,
                        color=color, capsize=2)
        if verdicts is not None:
            median = verdicts.loc[verdicts["task"] == task, "median_baseline_acc"]
            if len(median):
                ax.axvline(float(median.iloc[0]), ls="--", lw=1, color="0.4")
        ax.set_yticks(y)
        ax.set_yticklabels(part["choice"], fontsize=8)
        ax.set_title(str(task))
        ax.set_xlabel("held-out accuracy")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def layer_profile(profile: pd.DataFrame, x: str = "κ_λ", y: str = "acc", title: str | None = None):
    """The single-layer profile: each layer's outcome (``y``, mean over seeds) against its own kernel's ``x`` (log),
    points labelled with the layer index, one panel per task.

    ``profile``: columns ``task``, ``layer``, ``x``, ``y`` (one row per task, seed, layer).
    """
    require_columns(profile, ["task", "layer", x, y], "layer_profile")
    tasks = list(dict.fromkeys(profile["task"]))
    fig, axes = plt.subplots(1, len(tasks), figsize=(3.6 * len(tasks) + 0.6, 3.4), squeeze=False, sharey=True)
    for ax, task in zip(axes[0], tasks):
        means = profile[profile["task"] == task].groupby("layer")[[x, y]].mean()
        ax.plot(means[x], means[y], "o", color=_colors(1)[0])
        for layer, row in means.iterrows():
            ax.annotate(str(layer), (row[x], row[y]), textcoords="offset points", xytext=(4, 3), fontsize=8)
        ax.set_xscale("log")
        ax.set_xlabel(f"{x} of the layer's kernel")
        ax.set_title(str(task))
    axes[0][0].set_ylabel("held-out accuracy" if y == "acc" else y)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def loss_curves(curves: pd.DataFrame, hue: str = "choice", x: str = "step", measured: str = "measured",
                predicted: str = "predicted", title: str | None = None):
    """Measured training objective (solid, dots) and its kernel-regression prediction (dashed) on the same axes,
    one colour per ``hue`` value (a choice of layers). Log y.

    ``curves``: tidy, columns ``hue``, ``x``, ``measured``, ``predicted`` (:func:`gd_curves`).
    """
    require_columns(curves, [hue, x, measured, predicted], "loss_curves")
    fig, ax = plt.subplots(figsize=(6.8, 3.8))
    groups = list(dict.fromkeys(curves[hue]))
    for color, name in zip(_colors(len(groups)), groups):
        part = curves[curves[hue] == name]
        label = f"{name} ({part['layers'].iloc[0]})" if "layers" in part else str(name)
        ax.plot(part[x], part[measured], "-o", ms=2.5, color=color, label=f"{label}, measured")
        ax.plot(part[x], part[predicted], "--", color=color, label=f"{label}, predicted")
    ax.set_yscale("log")
    ax.set_xlabel(x)
    ax.set_ylabel("training objective (MSE)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig
