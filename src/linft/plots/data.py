"""Figures of the models-and-tasks chapter: text lengths per task, fine-tuning sanity curves."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from linft import require_columns


def length_distributions(lengths: pd.DataFrame, max_length: int | None = None, unit: str = "tokens"):
    """Box plot of example lengths per task (log x axis).

    ``lengths``: tidy frame with columns ``task`` and ``length`` (one row per example). A dashed line marks the
    truncation length ``max_length`` when given.
    """
    require_columns(lengths, ["task", "length"], "length_distributions")
    order = lengths.groupby("task")["length"].median().sort_values().index
    fig, ax = plt.subplots(figsize=(7.0, 0.45 * len(order) + 1.4))
    sns.boxplot(data=lengths, x="length", y="task", hue="task", order=order, ax=ax, fliersize=1.5,
                palette="colorblind", legend=False)
    ax.set_xscale("log")
    ax.set_xlabel(f"example length ({unit}, log scale)")
    ax.set_ylabel("")
    if max_length:
        ax.axvline(max_length, ls="--", color="0.3", lw=1)
        ax.annotate(f"max_length = {max_length}", (max_length, 0), xytext=(4, -12), textcoords="offset points",
                    fontsize=9, color="0.3", annotation_clip=False)
    fig.tight_layout()
    return fig


def sanity_curves(log: pd.DataFrame, majority: float, loss_col: str = "task_loss", acc_col: str = "eval_acc"):
    """Training loss and eval accuracy against step, with the majority-class accuracy as a reference line.

    ``log``: one row per logged step with columns ``step``, ``loss_col`` and (where evaluated) ``acc_col``.
    """
    require_columns(log, ["step", loss_col, acc_col], "sanity_curves")
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(9.0, 3.4))
    ax_loss.plot(log["step"], log[loss_col], marker=".", lw=1)
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel("training loss (cross-entropy)")
    acc = log.dropna(subset=[acc_col])
    ax_acc.plot(acc["step"], acc[acc_col], marker="o", lw=1, label="LoRA fine-tuning")
    ax_acc.axhline(majority, ls="--", color="0.4", lw=1, label="majority class")
    ax_acc.set_xlabel("step")
    ax_acc.set_ylabel("eval accuracy")
    ax_acc.legend(loc="lower right")
    fig.tight_layout()
    return fig
