"""Figures of the empirical-NTK chapter: spectra, condition numbers, per-layer shares, kernel variants.

Inputs are plain: eigenvalues as tensors/arrays keyed by a label, or tidy DataFrames. Each function returns the
``Figure`` and never saves or closes it.
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from linft import LinftError, require_columns


def _array(values) -> np.ndarray:
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    return np.asarray(values, dtype=np.float64).reshape(-1)


def _legend_outside(ax, frame: pd.DataFrame, hue: str | None) -> None:
    """Move a legend with many entries to the right of the axes, where it hides no data."""
    if hue and ax.get_legend() is not None and frame[hue].nunique() > 4:
        sns.move_legend(ax, "upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, title=hue, frameon=False)


def _finish(fig, ax, shown: pd.DataFrame, hue: str | None, title: str | None, dropped: int, what: str):
    """Legend placement, a title that counts the ``dropped`` rows (``what``) left off the plot, tight layout."""
    _legend_outside(ax, shown, hue)
    text = (title or "") + (f" ({dropped} {what} not shown)" if dropped else "")
    if text:
        ax.set_title(text.strip())
    fig.tight_layout()
    return fig


def spectra(eigenvalues: dict, normalize: bool = False, title: str | None = None, ax=None):
    """Eigenvalues in decreasing order against their index, log y axis, one line per label (e.g. task).

    ``eigenvalues``: ``{label: eigenvalues}`` (any order). Non-positive eigenvalues cannot be shown on a log
    axis; how many were left out is added to the label. ``normalize`` divides each spectrum by its λmax.
    """
    if not eigenvalues:
        raise LinftError("no spectra to plot: pass {label: eigenvalues}")
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(7.0, 4.0))
    for label, values in eigenvalues.items():
        vals = np.sort(_array(values))[::-1]
        if normalize and vals[0] > 0:
            vals = vals / vals[0]
        index = np.arange(1, len(vals) + 1)
        keep = vals > 0
        dropped = int((~keep).sum())
        name = f"{label} ({dropped} ≤ 0 not shown)" if dropped else str(label)
        ax.plot(index[keep], vals[keep], marker=".", ms=3, lw=1.2, label=name)
    ax.set_yscale("log")
    ax.set_xlabel("eigenvalue index (decreasing)")
    ax.set_ylabel("λ / λmax" if normalize else "eigenvalue λ")
    if title:
        ax.set_title(title)
    ax.legend(fontsize=8, ncol=2 if len(eigenvalues) > 5 else 1)
    fig.tight_layout()
    return fig


def kappa_vs_n(frame: pd.DataFrame, x: str = "n", y: str = "kappa", hue: str | None = "task", title: str | None = None):
    """κ against the number of examples N (log-log), one line per ``hue`` value.

    ``frame``: tidy, one row per kernel, with columns ``x`` (N) and ``y`` (κ); rows with infinite κ are left
    out and counted in the title.
    """
    require_columns(frame, [x, y] + ([hue] if hue else []), "kappa_vs_n")
    finite = frame[np.isfinite(frame[y].astype(float))]
    fig, ax = plt.subplots(figsize=(6.5, 4.0))
    sns.lineplot(data=finite, x=x, y=y, hue=hue, marker="o", ax=ax, palette="colorblind" if hue else None)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("examples in the kernel, N")
    ax.set_ylabel("condition number κ")
    return _finish(fig, ax, finite, hue, title, len(frame) - len(finite), "infinite κ")


def kappa_by_targets(frame: pd.DataFrame, x: str = "targets", y: str = "kappa", hue: str | None = "task",
                     title: str | None = None):
    """Bar chart of κ (log scale) per LoRA target set, grouped by ``hue`` (e.g. task)."""
    require_columns(frame, [x, y] + ([hue] if hue else []), "kappa_by_targets")
    finite = frame[np.isfinite(frame[y].astype(float))]
    fig, ax = plt.subplots(figsize=(7.0, 4.0))
    sns.barplot(data=finite, x=x, y=y, hue=hue, ax=ax, palette="colorblind" if hue else None)
    ax.set_yscale("log")
    ax.set_xlabel("LoRA target modules")
    ax.set_ylabel("condition number κ")
    _legend_outside(ax, finite, hue)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def layer_contributions(frame: pd.DataFrame, x: str = "layer", y: str = "share", hue: str | None = None,
                        title: str | None = None):
    """Bars of each layer's share of the kernel's trace, tr K_l / tr K (Σ_l shares = 1).

    ``frame``: one row per (layer[, hue]) with the share; layers are shown in the order they first appear.
    """
    require_columns(frame, [x, y] + ([hue] if hue else []), "layer_contributions")
    fig, ax = plt.subplots(figsize=(7.0, 3.6))
    order = list(dict.fromkeys(frame[x]))
    sns.barplot(data=frame, x=x, y=y, hue=hue, order=order, ax=ax, palette="colorblind" if hue else None,
                color=None if hue else sns.color_palette("colorblind")[0])
    ax.set_xlabel("")
    ax.set_ylabel("share of tr K  (tr K_l / tr K)")
    _legend_outside(ax, frame, hue)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def kernel_variants(matrices: dict, title: str | None = None):
    """Compare kernel variants (e.g. SGD, SignGD, asymmetric SignGD) computed on the same examples.

    Left: each variant's spectrum normalized by its largest eigenvalue (real parts for asymmetric kernels;
    non-positive ones left out). Right: entries of each variant, normalized by its mean diagonal, against the
    first variant's, with the Pearson correlation in the legend.
    """
    if len(matrices) < 2:
        raise LinftError("kernel_variants needs at least two kernels: pass {name: square matrix}")
    from linft.spectral import as_matrix, eigenvalues

    mats = {name: as_matrix(K, name=str(name)).numpy() for name, K in matrices.items()}
    shapes = {m.shape for m in mats.values()}
    if len(shapes) != 1:
        raise LinftError(f"kernel variants have different shapes {sorted(shapes)}: compute them on the same batch")
    fig, (ax_s, ax_e) = plt.subplots(1, 2, figsize=(10.0, 4.0))
    spectra({name: eigenvalues(m) for name, m in mats.items()}, normalize=True, ax=ax_s)
    ax_s.set_title("spectra (λ / λmax)")
    names = list(mats)
    base = mats[names[0]]
    base_n = (base / np.mean(np.diag(base))).reshape(-1)
    colors = sns.color_palette("colorblind")
    for i, name in enumerate(names[1:], start=1):
        other = mats[name]
        other_n = (other / np.mean(np.diag(other))).reshape(-1)
        r = np.corrcoef(base_n, other_n)[0, 1] if base_n.std() > 0 and other_n.std() > 0 else math.nan
        ax_e.scatter(base_n, other_n, s=4, alpha=0.4, color=colors[i % len(colors)], label=f"{name} (r = {r:.3f})")
    lo, hi = float(min(base_n.min(), 0)), float(base_n.max())
    ax_e.plot([lo, hi], [lo, hi], ls="--", lw=1, color="0.4")
    ax_e.set_xlabel(f"{names[0]} entry / mean diagonal")
    ax_e.set_ylabel("variant entry / mean diagonal")
    ax_e.set_title("kernel entries")
    ax_e.legend(fontsize=8, markerscale=3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


__all__ = ["kappa_by_targets", "kappa_vs_n", "kernel_variants", "layer_contributions", "spectra"]


def predicted_vs_measured(curves: pd.DataFrame, x: str = "step", measured: str = "measured",
                          predicted: str = "predicted", facet: str = "task", hue: str = "lam"):
    """Measured training loss (solid, dots) and the kernel-regression prediction (dashed) on the same axes, one
    panel per ``facet`` value and one colour per ``hue`` value (λ). Log y axis."""
    require_columns(curves, [x, measured, predicted, facet, hue], "predicted_vs_measured")
    panels = list(dict.fromkeys(curves[facet]))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels) + 0.8, 3.4), squeeze=False, sharey=True)
    colors = dict(zip(sorted(curves[hue].unique()), sns.color_palette("colorblind", curves[hue].nunique())))
    for ax, panel in zip(axes[0], panels):
        part = curves[curves[facet] == panel]
        for value, rows in part.groupby(hue):
            ax.plot(rows[x], rows[measured], "-o", ms=2.5, color=colors[value], label=f"{hue} = {value:g}, measured")
            ax.plot(rows[x], rows[predicted], "--", color=colors[value], label=f"{hue} = {value:g}, predicted")
        ax.set_yscale("log")
        ax.set_title(str(panel))
        ax.set_xlabel(x)
    axes[0][0].set_ylabel("training loss (MSE)")
    axes[0][-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    return fig


def kappa_lambda_curves(frame: pd.DataFrame, x: str = "lam", y: str = "kappa_lambda", hue: str | None = "task",
                        marks=(), title: str | None = None):
    """κ_λ − 1 against the anchor strength λ (log-log), one line per ``hue`` value, dotted verticals at ``marks``.

    κ_λ = (μmax + Nλ)/(μmin + Nλ) falls from κ (Nλ ≪ μmin) towards 1 (Nλ ≫ μmax), where κ_λ − 1 ≈ (μmax − μmin)/(Nλ);
    plotting κ_λ − 1 keeps that tail visible. ``frame``: tidy, one row per (hue, λ > 0); rows with λ ≤ 0 or an
    infinite κ_λ are left out and counted in the title.
    """
    require_columns(frame, [x, y] + ([hue] if hue else []), "kappa_lambda_curves")
    values = frame[y].astype(float)
    keep = frame[(frame[x].astype(float) > 0) & np.isfinite(values) & (values > 1)].copy()
    keep["_excess"] = keep[y].astype(float) - 1
    fig, ax = plt.subplots(figsize=(6.5, 4.0))
    sns.lineplot(data=keep, x=x, y="_excess", hue=hue, ax=ax, palette="colorblind" if hue else None)
    for mark in marks:
        ax.axvline(float(mark), color="0.5", ls=":", lw=1)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("anchor strength λ")
    ax.set_ylabel("κ_λ − 1")
    return _finish(fig, ax, keep, hue, title, len(frame) - len(keep), "rows with λ ≤ 0 or κ_λ ∉ (1, ∞)")
