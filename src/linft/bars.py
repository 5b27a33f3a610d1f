"""The pass bars, defined once: the thresholds a claim's verdict is judged against.

:mod:`linft.claims` reads them (and re-exports them), and a chapter's results may carry the bar it used; the
chapter protocols in :mod:`linft.experiments` are to import them from here rather than keep their own copies.
"""

from __future__ import annotations

__all__ = ["AGREEMENT_BAR", "LOSS_ERROR_BAR", "GAP_RATIO_BAR", "KERNEL_CHANGE_BAR"]

AGREEMENT_BAR = 0.9
"""Label agreement a linearized/kernel model must reach (chapter 3, :mod:`linft.experiments.kernel_regression`)."""
LOSS_ERROR_BAR = 0.1
"""Mean relative error of a predicted loss curve it may not exceed (chapter 3)."""
GAP_RATIO_BAR = 5.0
"""Factor by which anchoring must shrink the linearization gap, lower 95 % bound (chapter 2,
:mod:`linft.experiments.anchoring`)."""
KERNEL_CHANGE_BAR = 0.1
"""Largest relative kernel change ‖K_T − K_0‖_F/‖K_0‖_F that counts as "nearly constant" (set on the claims page:
the chapters state no bar for it; 10 % is chapter 3's tolerance for a predicted loss curve)."""
