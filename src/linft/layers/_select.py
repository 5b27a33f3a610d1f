"""Choosing k layers by the spectrum of their summed kernel: greedy, or exhaustive with Weyl-bound pruning."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

from linft import LinftError, check_choice, check_positive_int
from linft.layers._kernels import LayerKernels, UnionBounds, UnionSpectrum
from linft.regularize import check_lam

__all__ = ["METHODS", "OBJECTIVES", "LayerChoice", "select_layers"]

#: "kappa_lambda": minimise κ_λ of K_S; "lambda_min": maximise its smallest eigenvalue
OBJECTIVES = ("kappa_lambda", "lambda_min")
METHODS = ("auto", "greedy", "exhaustive")
#: "auto" is exhaustive up to this many subsets, greedy beyond
MAX_SUBSETS = 5000
#: a subset is pruned when the best its bounds allow is worse than the best exact value by this relative margin
#: (the bounds and the exact values come from separate float64 eigen-decompositions)
PRUNE_RTOL = 1e-9


@dataclass(frozen=True)
class LayerChoice:
    """The selected layers and how they were found.

    ``value``: the objective at the choice (κ_λ, or λmin); ``path``: greedy steps ``[(layer added, value)]`` (for
    exhaustive: the single best); ``n_candidates``: subsets considered; ``n_exact``: exact eigen-decompositions done
    (the rest were pruned by their Weyl bounds).
    """

    layers: tuple[int, ...]
    objective: str
    value: float
    method: str
    lam: float
    bounds: UnionBounds
    exact: UnionSpectrum
    path: list = field(default_factory=list)
    n_candidates: int = 0
    n_exact: int = 0

    def as_dict(self) -> dict:
        return {"layers": list(self.layers), "objective": self.objective, "value": self.value, "method": self.method,
                "lam": self.lam, "path": [list(p) for p in self.path], "n_candidates": self.n_candidates,
                "n_exact": self.n_exact, "bounds": self.bounds.as_dict(), "exact": self.exact.as_dict()}


def _score(spectrum: UnionSpectrum, objective: str) -> float:
    """Smaller is better: κ_λ, or −λmin."""
    return spectrum.kappa_lambda if objective == "kappa_lambda" else -spectrum.lambda_min


def _best_possible(bounds: UnionBounds, objective: str) -> float:
    """The best score any matrix within the bounds can have (κ_λ's lower bound, or −(λmin's upper bound))."""
    return bounds.kappa_lambda[0] if objective == "kappa_lambda" else -bounds.lambda_min[1]


def _value(score: float, objective: str) -> float:
    return score if objective == "kappa_lambda" else -score


def select_layers(lk: LayerKernels, budget: int, *, objective: str = "kappa_lambda", lam: float = 0.0,
                  method: str = "auto", max_subsets: int = MAX_SUBSETS) -> LayerChoice:
    """Pick ``budget`` of ``lk``'s candidate layers minimising κ_λ (or maximising λmin) of their summed kernel.

    ``method``: "greedy" adds, one at a time, the layer that gives the best exact value; "exhaustive" scores every
    subset of size ``budget`` — first by its Weyl bounds (cheap), then exactly, in order of the best value the bounds
    allow, stopping when no remaining subset can beat the best exact one (so the result is the exact optimum);
    "auto": exhaustive when there are at most ``max_subsets`` subsets, else greedy.
    """
    check_choice("objective", objective, OBJECTIVES)
    check_choice("method", method, METHODS)
    lam = check_lam(lam)
    budget = check_positive_int(budget, "budget")
    candidates = lk.layers
    if budget > len(candidates):
        raise LinftError(f"budget {budget} is larger than the {len(candidates)} candidate layers: pass a budget from 1 "
                         f"to {len(candidates)}")
    n_subsets = math.comb(len(candidates), budget)
    if method == "auto":
        method = "exhaustive" if n_subsets <= max_subsets else "greedy"
    if method == "greedy":
        return _greedy(lk, budget, objective, lam)
    return _exhaustive(lk, budget, objective, lam, n_subsets)


def _greedy(lk: LayerKernels, budget: int, objective: str, lam: float) -> LayerChoice:
    chosen: list[int] = []
    path, n_exact = [], 0
    best = None
    for _ in range(budget):
        best = None
        for layer in lk.layers:
            if layer in chosen:
                continue
            spectrum = lk.exact([*chosen, layer], lam)
            n_exact += 1
            score = _score(spectrum, objective)
            if best is None or score < best[0]:
                best = (score, layer, spectrum)
        chosen.append(best[1])
        path.append((best[1], _value(best[0], objective)))
    spectrum = best[2]
    return LayerChoice(spectrum.layers, objective, _value(best[0], objective), "greedy", lam,
                       lk.bounds(spectrum.layers, lam), spectrum, path, n_exact, n_exact)


def _exhaustive(lk: LayerKernels, budget: int, objective: str, lam: float, n_subsets: int) -> LayerChoice:
    bounded = [(_best_possible(b, objective), b) for b in
               (lk.bounds(subset, lam) for subset in itertools.combinations(lk.layers, budget))]
    bounded.sort(key=lambda item: item[0])
    best, n_exact = None, 0
    for optimistic, bounds in bounded:
        if best is not None and optimistic - best[0] >= PRUNE_RTOL * abs(best[0]):
            break  # no remaining subset can do better than the best exact value (up to round-off)
        spectrum = lk.exact(bounds.layers, lam)
        n_exact += 1
        score = _score(spectrum, objective)
        if best is None or score < best[0]:
            best = (score, bounds, spectrum)
    score, bounds, spectrum = best
    value = _value(score, objective)
    return LayerChoice(spectrum.layers, objective, value, "exhaustive", lam, bounds, spectrum,
                       [(spectrum.layers, value)], n_subsets, n_exact)
