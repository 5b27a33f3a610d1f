"""Chapter 4's kernel side: per-layer kernels of one model on one task and seed (:func:`layer_setup`, through
:func:`linft.experiments.tasks.prepare_chapter`), the advisor's and the baselines' choices, and the Weyl-bound checks
on unions of layers (:mod:`linft.experiments.layer_selection` trains those choices and re-exports every name here).
"""

from __future__ import annotations

import itertools
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from torch import nn

from linft import models
from linft.experiments.tasks import prepare_chapter
from linft.layers import LayerChoice, LayerKernels, baselines, select_layers
from linft.scales import Scale

__all__ = ["ADVISOR", "REFERENCE", "LayerSetup", "layer_setup", "per_layer_table", "tested_unions", "union_checks",
           "growth_path", "containment", "choice_table", "spearman", "format_layers", "one_thread"]

#: the advisor's key among the choices
ADVISOR = "advisor"
#: the choice that adapts every layer: a reference, not a baseline at the same budget
REFERENCE = "all"


def format_layers(layers) -> str:
    """``(0, 2)`` → ``"0, 2"`` (how a layer set is shown in tables)."""
    return ", ".join(str(int(layer)) for layer in layers)


def spearman(a, b) -> float:
    """Spearman rank correlation of two equal-length sequences (NaN for < 3 values or a constant one)."""
    a, b = pd.Series(np.asarray(a, dtype=float)), pd.Series(np.asarray(b, dtype=float))
    if len(a) < 3 or a.nunique() < 2 or b.nunique() < 2:
        return float("nan")
    return float(a.rank().corr(b.rank()))


# ---------------------------------------------------------------------------------------------- kernel side


@contextmanager
def one_thread():
    """Run the block on one torch thread, then restore the thread count: the many small float64 eigen-decompositions
    of the union checks (P ≤ a few hundred) gain nothing from a second thread, and on shared cores a second thread
    made each of them up to a hundred times slower (measured)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@one_thread()
def per_layer_table(lk: LayerKernels, lam: float = 0.0) -> pd.DataFrame:
    """One row per candidate layer: λmin, λmax, trace, κ, κ_λ (at ``lam``) and effective rank of its own K_l."""
    rows = []
    for layer in lk.layers:
        exact = lk.exact([layer], lam)
        rows.append({"layer": layer, "λmin": exact.lambda_min, "λmax": exact.lambda_max, "trace": exact.trace,
                     "κ": exact.kappa, "κ_λ": exact.kappa_lambda, "eff. rank": exact.effective_rank})
    return pd.DataFrame(rows)


def tested_unions(layers, extra=(), max_unions: int = 64, seed: int = 0) -> list[tuple[int, ...]]:
    """The unions whose exact spectra are checked against their bounds: every non-empty subset of ``layers`` when
    there are at most ``max_unions``; otherwise the prefixes (layers added one by one), the ``extra`` sets and
    seeded random subsets of random sizes up to ``max_unions`` in all. Sorted tuples, no repeats."""
    layers = [int(layer) for layer in layers]
    n_all = 2 ** len(layers) - 1
    if n_all <= max_unions:
        return [combo for size in range(1, len(layers) + 1) for combo in itertools.combinations(layers, size)]
    unions = dict.fromkeys(tuple(layers[:k]) for k in range(1, len(layers) + 1))
    unions.update(dict.fromkeys(tuple(sorted(int(x) for x in s)) for s in extra))
    rng = np.random.default_rng(seed)
    while len(unions) < max_unions:
        size = int(rng.integers(1, len(layers) + 1))
        unions[tuple(sorted(int(x) for x in rng.choice(layers, size=size, replace=False)))] = None
    return list(unions)


@one_thread()
def union_checks(lk: LayerKernels, unions, lam: float = 0.0) -> pd.DataFrame:
    """For each union S: its size, the exact λmin, λmax, κ_λ of K_S and their Weyl intervals, and how many of its P
    exact eigenvalues fall outside their bounds (``outside``, 0 when Weyl holds)."""
    rows = []
    for union in unions:
        exact, bounds = lk.exact(union, lam), lk.bounds(union, lam)
        rows.append({"layers": format_layers(exact.layers), "size": len(exact.layers), "P": exact.eigenvalues.numel(),
                     "outside": bounds.violations(exact),
                     "λmin": exact.lambda_min, "λmin_lo": bounds.lambda_min[0], "λmin_hi": bounds.lambda_min[1],
                     "λmax": exact.lambda_max, "λmax_lo": bounds.lambda_max[0], "λmax_hi": bounds.lambda_max[1],
                     "κ_λ": exact.kappa_lambda, "κ_λ_lo": bounds.kappa_lambda[0], "κ_λ_hi": bounds.kappa_lambda[1]})
    return pd.DataFrame(rows)


def growth_path(lk: LayerKernels, lam: float = 0.0, order=None) -> pd.DataFrame:
    """:func:`union_checks` of the unions met when layers are added one by one in ``order`` (default: layer order)."""
    order = list(lk.layers if order is None else order)
    return union_checks(lk, [tuple(order[:k]) for k in range(1, len(order) + 1)], lam)


def containment(checks: pd.DataFrame) -> dict:
    """Totals over union checks: unions, eigenvalues, how many lie inside their bounds, unions fully inside."""
    n_eigs = int(checks["P"].sum())
    outside = int(checks["outside"].sum())
    return {"n_unions": len(checks), "n_eigenvalues": n_eigs, "n_inside": n_eigs - outside, "n_outside": outside,
            "n_unions_inside": int((checks["outside"] == 0).sum())}


@one_thread()
def choice_table(lk: LayerKernels, choices: dict, lam: float = 0.0) -> pd.DataFrame:
    """One row per named choice: its layers, exact κ_λ with its Weyl interval, λmin and λmax, and whether the
    exact spectrum lies within the bounds."""
    rows = []
    for name, layers in choices.items():
        exact, bounds = lk.exact(layers, lam), lk.bounds(layers, lam)
        rows.append({"choice": name, "layers": format_layers(exact.layers), "κ_λ": exact.kappa_lambda,
                     "κ_λ_lo": bounds.kappa_lambda[0], "κ_λ_hi": bounds.kappa_lambda[1], "λmin": exact.lambda_min,
                     "λmax": exact.lambda_max, "inside": bounds.contains(exact)})
    return pd.DataFrame(rows)


@dataclass
class LayerSetup:
    """Everything kernel-side for one model on one task and seed.

    ``model``: LoRA on every layer, head frozen (copy it before training); ``train``: the N training examples the
    kernel is computed on (``{"input_ids", "attention_mask": [N, L], "labels": [N]}``); ``lk``: per-layer kernels;
    ``per_layer``: :func:`per_layer_table`; ``advisor``: the :class:`linft.layers.LayerChoice`; ``choices``: {name:
    layers} with the advisor first, then the baselines; ``table``: :func:`choice_table`; ``unions``:
    :func:`union_checks` of :func:`tested_unions`; ``seconds``: wall time per part; ``heldout``: the ``cfg.n_test``
    held-out validation examples (at most the split) the fine-tuning runs are scored on.
    """

    model_key: str
    task: str
    seed: int
    model: nn.Module
    tokenizer: object
    train: dict
    lk: LayerKernels
    per_layer: pd.DataFrame
    advisor: LayerChoice
    choices: dict
    table: pd.DataFrame
    unions: pd.DataFrame
    n_layers: int
    lam: float
    seconds: dict = field(default_factory=dict)
    heldout: dict | None = None


def layer_setup(model_key: str, task: str, cfg: Scale, *, seed: int = 0, n: int | None = None, lam: float = 0.0,
                objective: str = "kappa_lambda", budget: int = 2, n_random: int = 5, max_unions: int = 64
                ) -> LayerSetup:
    """Load ``model_key`` (LoRA everywhere, head frozen), compute per-layer kernels on ``n`` (default
    ``cfg.n_train``) training examples of ``task`` (drawn with ``seed``, ``cfg.max_length`` tokens), choose
    ``budget`` layers by the advisor (``objective`` at ``lam``) and by every baseline, and check the Weyl bounds of
    the tested unions. The model and batches come from :func:`linft.experiments.tasks.prepare_chapter`, with
    ``cfg.n_test`` held-out validation examples (``heldout``) for the fine-tuning runs."""
    seconds = {}
    run = prepare_chapter(task, cfg, seed, n_train=n or cfg.n_train, n_heldout=cfg.n_test, head="frozen",
                          model=model_key)
    model, tokenizer, train = run.model, run.tokenizer, run.train
    seconds["load"] = run.seconds
    lk = LayerKernels.compute(model, train, head="frozen")
    seconds["kernel"] = lk.seconds
    start = time.perf_counter()
    with one_thread():
        advisor = select_layers(lk, budget, objective=objective, lam=lam)
    seconds["select"] = time.perf_counter() - start
    start = time.perf_counter()
    choices = {ADVISOR: advisor.layers, **baselines(model, train, lk, budget, seed=seed, n_random=n_random,
                                                    targets=cfg.lora_targets)}
    seconds["baselines"] = time.perf_counter() - start
    start = time.perf_counter()
    table = choice_table(lk, choices, lam)
    unions = union_checks(lk, tested_unions(lk.layers, choices.values(), max_unions, seed), lam)
    seconds["bounds"] = time.perf_counter() - start
    return LayerSetup(model_key, task, seed, model, tokenizer, train, lk, per_layer_table(lk, lam), advisor, choices,
                      table, unions, models.num_layers(model), lam, seconds, heldout=run.heldout)
