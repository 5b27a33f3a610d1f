"""Layer-selection baselines: the choices the spectral advisor (:func:`linft.layers.select_layers`) is compared with.

Every selector returns layer indices as a sorted tuple of ``budget`` distinct integers:

- :func:`first_layers`, :func:`last_layers`: the lowest / highest ``budget`` layers;
- :func:`random_layers`: seeded uniform draws, distinct from each other while there are enough subsets;
- :func:`trace_layers`: the layers with the largest kernel trace tr K_l (the largest share of the eNTK);
- :func:`gradient_scores` + :func:`top_layers`: the relative gradient norm ‖∇_W L‖/‖W‖ of each layer's pretrained
  target matrices at initialization, largest first (Auto-RGN of surgical fine-tuning, Lee et al. 2023);
- :func:`weight_condition_scores` + :func:`top_layers` (``largest=False``): the condition number σmax/σmin of
  each layer's pretrained target matrices, smallest first (in the spirit of KappaTune);
- :func:`baselines`: all of them at one budget, keyed by name, plus ``"all"`` (every candidate layer).
"""

from __future__ import annotations

import math
import operator
from collections import defaultdict
from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from linft import LinftError, check_positive_int
from linft.batches import check_batch
from linft.functional import logits_of
from linft.models import layer_index, match_targets

__all__ = ["baselines", "first_layers", "last_layers", "random_layers", "trace_layers", "gradient_scores",
           "weight_condition_scores", "top_layers"]


def _check_count(num_layers, what: str = "num_layers") -> int:
    return check_positive_int(num_layers, what)


def _check_budget(budget, num_layers: int) -> int:
    """``budget`` as an int in 1..num_layers, else one-line :class:`LinftError`."""
    if isinstance(budget, bool) or not hasattr(budget, "__index__"):
        raise LinftError(f"budget must be an integer number of layers in 1..{num_layers}, got {budget!r}")
    budget = operator.index(budget)
    if not 1 <= budget <= num_layers:
        raise LinftError(f"budget must be between 1 and the {num_layers} candidate layers, got {budget}")
    return budget


def first_layers(num_layers: int, budget: int) -> tuple[int, ...]:
    """The ``budget`` lowest layers: ``(0, 1, …, budget − 1)``."""
    budget = _check_budget(budget, _check_count(num_layers))
    return tuple(range(budget))


def last_layers(num_layers: int, budget: int) -> tuple[int, ...]:
    """The ``budget`` highest layers: ``(num_layers − budget, …, num_layers − 1)``."""
    num_layers = _check_count(num_layers)
    budget = _check_budget(budget, num_layers)
    return tuple(range(num_layers - budget, num_layers))


def random_layers(num_layers: int, budget: int, seed: int = 0, draws: int = 5) -> list[tuple[int, ...]]:
    """``draws`` subsets of ``budget`` layers drawn uniformly with ``seed`` (numpy ``default_rng``).

    Draws are distinct from each other as long as there are enough subsets (C(num_layers, budget) ≥ ``draws``);
    beyond that every subset appears once before any repeats. Same arguments, same list.
    """
    num_layers = _check_count(num_layers)
    budget = _check_budget(budget, num_layers)
    draws = check_positive_int(draws, "draws")
    if isinstance(seed, bool) or not hasattr(seed, "__index__"):
        raise LinftError(f"seed must be an integer, got {seed!r}")
    rng = np.random.default_rng(operator.index(seed))
    n_subsets = math.comb(num_layers, budget)
    out: list[tuple[int, ...]] = []
    seen: set[tuple[int, ...]] = set()
    while len(out) < draws:
        pick = tuple(sorted(int(i) for i in rng.choice(num_layers, size=budget, replace=False)))
        if pick in seen and len(seen) < n_subsets:
            continue
        if len(seen) == n_subsets:
            seen = set()  # every subset drawn once: start another round
        seen.add(pick)
        out.append(pick)
    return out


def top_layers(scores: Mapping[int, float], budget: int, largest: bool = True) -> tuple[int, ...]:
    """The ``budget`` layers with the largest (``largest``) or smallest scores, as a sorted tuple.

    ``scores``: ``{layer index: score}``, numbers (±inf allowed, NaN not). Ties go to the lower layer index.
    """
    if not isinstance(scores, Mapping) or not scores:
        raise LinftError("scores must be a non-empty {layer index: score} mapping")
    budget = _check_budget(budget, len(scores))
    values = {int(k): float(v) for k, v in scores.items()}
    bad = [k for k, v in values.items() if math.isnan(v)]
    if bad:
        raise LinftError(f"scores of layers {sorted(bad)} are NaN: a selector needs a number for every layer")
    sign = -1.0 if largest else 1.0
    ranked = sorted(values, key=lambda layer: (sign * values[layer], layer))
    return tuple(sorted(ranked[:budget]))


def trace_layers(lk, budget: int) -> tuple[int, ...]:
    """The ``budget`` layers of ``lk`` (:class:`linft.layers.LayerKernels`) with the largest trace tr K_l."""
    return top_layers({layer: lk.trace(layer) for layer in lk.layers}, budget, largest=True)


def _weights_by_layer(model: nn.Module, targets) -> dict[int, list[torch.Tensor]]:
    """``{layer: [pretrained weight of each target module]}`` (a peft-adapted module's ``base_layer`` weight)."""
    modules = dict(model.named_modules())
    grouped: dict[int, list[torch.Tensor]] = defaultdict(list)
    for name in match_targets(model, targets):
        weight = getattr(modules[name], "weight", None)
        if not isinstance(weight, torch.Tensor) or weight.dim() != 2:
            raise LinftError(f"target module {name!r} has no 2-D weight: choose Linear modules as targets")
        grouped[layer_index(name)].append(weight)
    return dict(sorted(grouped.items()))


def gradient_scores(model: nn.Module, batch: Mapping, *, targets, loss: str = "ce") -> dict[int, float]:
    """Relative gradient norm of each layer at the model's current weights (Auto-RGN, Lee et al. 2023).

    For layer l with pretrained target matrices W_l (the modules ``targets`` names, e.g. ``("q", "v")``; the
    ``base_layer`` of a LoRA-adapted module), score_l = ‖∇_{W_l} L‖_F / ‖W_l‖_F over the concatenation of its
    matrices, with L the mean loss on ``batch`` (``input_ids``/``attention_mask`` [N, L], ``labels`` [N]): cross-
    entropy (``loss="ce"``) or the one-hot squared loss (``"mse"``). The model is not changed: gradients are taken
    with ``torch.autograd.grad`` and every ``requires_grad`` flag is restored. Works with or without LoRA.
    Returns ``{layer index: score}``.
    """
    if loss not in ("ce", "mse"):
        raise LinftError(f"unknown loss {loss!r}: use 'ce' or 'mse'")
    inputs = check_batch(batch, "batch", labels=True)
    labels = inputs.pop("labels")
    grouped = _weights_by_layer(model, targets)
    weights = [w for ws in grouped.values() for w in ws]
    flags = [w.requires_grad for w in weights]
    try:
        for w in weights:
            w.requires_grad_(True)
        with torch.enable_grad():
            logits = logits_of(model(**inputs))
            if loss == "ce":
                value = torch.nn.functional.cross_entropy(logits, labels)
            else:
                onehot = torch.nn.functional.one_hot(labels, logits.shape[-1]).to(logits.dtype)
                value = 0.5 * (logits - onehot).pow(2).sum(-1).mean()
            grads = torch.autograd.grad(value, weights, allow_unused=True)
    finally:
        for w, flag in zip(weights, flags):
            w.requires_grad_(flag)
    scores, at = {}, 0
    for layer, ws in grouped.items():
        g2 = sum(float(g.double().pow(2).sum()) if g is not None else 0.0 for g in grads[at:at + len(ws)])
        w2 = sum(float(w.detach().double().pow(2).sum()) for w in ws)
        scores[layer] = math.sqrt(g2 / w2) if w2 > 0 else float("inf")
        at += len(ws)
    return scores


def weight_condition_scores(model: nn.Module, *, targets) -> dict[int, float]:
    """Mean over each layer's pretrained target matrices of their condition number σmax/σmin (float64 SVD).

    A lower score means better-conditioned weights; KappaTune-style selection adapts the layers with the lowest
    scores (``top_layers(scores, budget, largest=False)``). A rank-deficient matrix gives ``inf``.
    Returns ``{layer index: score}``.
    """
    scores = {}
    for layer, ws in _weights_by_layer(model, targets).items():
        kappas = []
        for w in ws:
            sv = torch.linalg.svdvals(w.detach().double())
            kappas.append(float(sv[0] / sv[-1]) if float(sv[-1]) > 0 else float("inf"))
        scores[layer] = float(np.mean(kappas))
    return scores


def baselines(model: nn.Module, batch: Mapping, lk, budget: int, *, seed: int = 0, n_random: int = 5,
              targets) -> dict[str, tuple[int, ...]]:
    """Every baseline choice of ``budget`` layers among ``lk.layers`` (the candidate layers of ``lk``, a
    :class:`linft.layers.LayerKernels` of ``model``).

    Keys: ``"first"``, ``"last"``, ``"random0"`` … ``"random{n_random − 1}"`` (:func:`random_layers` with ``seed``),
    ``"trace"`` (largest tr K_l), ``"gradient"`` (largest relative gradient norm on ``batch``, :func:`gradient_scores`),
    ``"weight_kappa"`` (smallest weight condition number, :func:`weight_condition_scores`) and ``"all"`` (every
    candidate layer). ``targets``: the LoRA target modules whose pretrained weights the last two score.
    """
    candidates = [int(layer) for layer in lk.layers]
    if not candidates:
        raise LinftError("lk has no candidate layers")
    budget = _check_budget(budget, len(candidates))
    n_random = check_positive_int(n_random, "n_random")
    count = len(candidates)
    choices = {
        "first": tuple(candidates[i] for i in first_layers(count, budget)),
        "last": tuple(candidates[i] for i in last_layers(count, budget)),
    }
    for i, pick in enumerate(random_layers(count, budget, seed=seed, draws=n_random)):
        choices[f"random{i}"] = tuple(candidates[j] for j in pick)
    choices["trace"] = trace_layers(lk, budget)
    grad = gradient_scores(model, batch, targets=targets)
    choices["gradient"] = top_layers({layer: grad[layer] for layer in candidates}, budget, largest=True)
    kappa = weight_condition_scores(model, targets=targets)
    choices["weight_kappa"] = top_layers({layer: kappa[layer] for layer in candidates}, budget, largest=False)
    choices["all"] = tuple(candidates)
    return choices
