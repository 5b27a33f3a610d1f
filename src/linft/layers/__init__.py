"""Choosing which layers LoRA adapts, from the spectrum of the eNTK before any training.

With LoRA A seeded per module name and B = 0, the eNTK over the LoRA parameters of a set S of layers is the sum of
per-layer kernels, K_S = F + Σ_{l∈S} K_l (F: trained parameters outside the candidate layers, e.g. a trained head;
0 when the head is frozen). One engine pass over a model adapted on every candidate layer gives every K_l; Weyl's
inequalities then bound each eigenvalue of K_S, and so κ and κ_λ, from the per-layer spectra alone.

Public: :class:`LayerKernels` (per-layer kernels, exact spectra and bounds of unions), :func:`weyl_sum_bounds`,
:func:`select_layers` (greedy / exhaustive under a budget), :class:`UnionSpectrum`, :class:`UnionBounds`,
:class:`LayerChoice`, and the baselines of :mod:`linft.layers._baselines`.
"""

from linft.layers._baselines import (
    baselines,
    first_layers,
    gradient_scores,
    last_layers,
    random_layers,
    top_layers,
    trace_layers,
    weight_condition_scores,
)
from linft.layers._kernels import HEADS, LayerKernels, UnionBounds, UnionSpectrum
from linft.layers._select import METHODS, OBJECTIVES, LayerChoice, select_layers
from linft.layers._weyl import weyl_sum_bounds

__all__ = [
    "HEADS",
    "METHODS",
    "OBJECTIVES",
    "LayerChoice",
    "LayerKernels",
    "UnionBounds",
    "UnionSpectrum",
    "baselines",
    "first_layers",
    "gradient_scores",
    "last_layers",
    "random_layers",
    "select_layers",
    "top_layers",
    "trace_layers",
    "weight_condition_scores",
    "weyl_sum_bounds",
]
