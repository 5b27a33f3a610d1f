"""Every figure of the book, one function each, grouped by topic in sub-modules.

Each function takes tidy data (a DataFrame or tensors) and returns the matplotlib ``Figure``; it never saves
or closes it, so notebooks show it inline. :func:`set_style` is called once by each chapter.

Sub-modules: :mod:`linft.plots.data` (chapter 0), :mod:`linft.plots.linearization` (chapters 1-2),
:mod:`linft.plots.ntk` (chapter 3), :mod:`linft.plots.layers` (chapter 4).
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import seaborn as sns

PALETTE = "colorblind"


def set_style() -> None:
    """The book's one plotting style: seaborn whitegrid, colour-blind palette, readable sizes."""
    sns.set_theme(context="notebook", style="whitegrid", palette=PALETTE)
    plt.rcParams.update({"figure.dpi": 110, "savefig.dpi": 150, "figure.figsize": (7.0, 4.0), "axes.titlesize": 12})
