"""The parts of :func:`linft.train.fine_tune`'s loop (``fine_tune`` below) that can be used and tested alone
(re-exported from :mod:`linft.train`):

- :func:`task_loss`: the mean task loss (cross-entropy or squared error);
- :func:`gap_reference`: the :class:`~linft.linearize.LinearizedModel` the gap columns compare against;
- :class:`MinibatchSampler`: minibatch indices, seeded epochs drawn without replacement;
- :class:`Evaluator`: one logged row (losses, accuracies, drift, gap columns) at the model's current θ;
- :func:`gd_step_size`: the gradient-descent step η = c/(β̂ + λ) of the descent condition, from the kernel at θ0.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from linft import LinftError, check_choice, check_positive_int
from linft.batches import apply_in_length_chunks, check_batch, to_device
from linft.functional import logits_of
from linft.linearize import LinearizedModel, gap_numbers
from linft.regularize import AnchoredStep, anchored_names, check_lam, drift, snapshot

__all__ = ["task_loss", "gap_reference", "MinibatchSampler", "Evaluator", "gd_step_size", "LOSSES", "MSE_TARGETS"]

LOSSES = ("ce", "mse")
MSE_TARGETS = ("onehot", "logit_diff")


def is_integer(value) -> bool:
    return not isinstance(value, bool) and isinstance(value, numbers.Integral)



def positive_or_none(value, name: str, none_means: str) -> int | None:
    if value is None:
        return None
    return check_positive_int(value, f"{name} (or None for {none_means})")


def task_loss(logits: torch.Tensor, labels: torch.Tensor, loss: str = "ce", mse_target: str = "onehot") -> torch.Tensor:
    """Mean task loss over the batch (a scalar).

    - ``"ce"``: cross-entropy of the softmax of ``logits`` [N, C] (nats per example).
    - ``"mse"`` with ``mse_target="onehot"``: (1/N) Σ_i ½‖f(x_i) − e_{y_i}‖², with one-hot targets e_y ∈ R^C.
    - ``"mse"`` with ``mse_target="logit_diff"`` (binary tasks only): (1/N) Σ_i ½(f_1(x_i) − f_0(x_i) − t_i)², with
      t_i = +1 for label 1 and −1 for label 0. This is the scalar-output setting of NTK theory.
    """
    check_choice("loss", loss, LOSSES)
    if loss == "ce":
        return F.cross_entropy(logits, labels)
    check_choice("mse_target", mse_target, MSE_TARGETS)
    if mse_target == "onehot":
        target = F.one_hot(labels, logits.shape[-1]).to(logits.dtype)
        return 0.5 * (logits - target).pow(2).sum(-1).mean()
    if logits.shape[-1] != 2:
        raise LinftError(f"mse_target='logit_diff' needs a 2-class head, this one has {logits.shape[-1]}")
    target = labels.to(logits.dtype) * 2 - 1
    return 0.5 * (logits[:, 1] - logits[:, 0] - target).pow(2).mean()


# ---------------------------------------------------------------------------------------------- model calls


def check_model(model) -> None:
    if not isinstance(model, nn.Module):
        kind = type(model).__name__
        raise LinftError(f"model must be an nn.Module (a linft model or a LinearizedModel), got {kind}")


def num_labels(model: nn.Module) -> int | None:
    base = model.model if isinstance(model, LinearizedModel) else model
    n = getattr(getattr(base, "config", None), "num_labels", None)
    return int(n) if n is not None else None


def _model_inputs(batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in batch.items() if k != "labels"}


def model_logits(model: nn.Module, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Logits [N, C] of ``model`` (real or linearized) on a checked batch (its labels are not passed on)."""
    if isinstance(model, LinearizedModel):
        return model(batch)
    return logits_of(model(**_model_inputs(batch)))


@torch.no_grad()
def _chunked(fn, batch: Mapping[str, torch.Tensor], chunk: int, n: int | None = None) -> torch.Tensor:
    """``fn`` (a batch dict → logits) over the first ``n`` examples of ``batch``, ``chunk`` examples of similar
    length at a time, each cut to its longest (:func:`linft.batches.apply_in_length_chunks`); rows in the batch's
    order."""
    return apply_in_length_chunks(fn, _model_inputs(batch), chunk, n=n)


# ---------------------------------------------------------------------------------------------- parts


def gap_reference(
    model: nn.Module, lin_reference: LinearizedModel | None = None, anchor: Mapping[str, torch.Tensor] | None = None
) -> LinearizedModel:
    """The linearization the gap columns of :func:`fine_tune` compare ``model`` with.

    A :class:`~linft.linearize.LinearizedModel` is its own reference (``lin_reference`` is ignored): its gap is
    between its real network (``real_logits``) and itself. For a real model, ``lin_reference`` is returned after
    checking that it linearizes exactly the tensors ``model`` trains, around their values ``anchor`` (default: their
    current values, i.e. call this before training); with ``lin_reference=None`` a new ``LinearizedModel(model)`` is
    built.
    """
    if isinstance(model, LinearizedModel):
        return model
    check_model(model)
    if lin_reference is None:
        return LinearizedModel(model)
    if not isinstance(lin_reference, LinearizedModel):
        raise LinftError(f"lin_reference must be a LinearizedModel, got {type(lin_reference).__name__}")
    anchor = snapshot(model) if anchor is None else anchor
    if lin_reference.names != list(anchor):
        raise LinftError("lin_reference linearizes different tensors than model trains: wrap the same model")
    far = [n for n, t0 in lin_reference.theta0.items() if not torch.allclose(t0, anchor[n], atol=1e-6, rtol=0)]
    if far:
        raise LinftError(
            f"lin_reference's θ0 differs from model's starting parameters (e.g. {far[0]!r}): "
            "wrap the same starting model (LinearizedModel(model) before training)"
        )
    return lin_reference


class MinibatchSampler:
    """Minibatch indices for ``n`` examples, in seeded epochs drawn without replacement.

    The index stream is a sequence of random permutations of ``range(n)`` (one per epoch, from a
    ``torch.Generator`` seeded with ``seed``) cut into consecutive minibatches of ``batch_size``; a minibatch that
    crosses the end of an epoch takes the rest of that epoch and the start of the next. So every example is drawn
    exactly once in each epoch (each run of ``n`` indices), and the same seed gives the same stream.

    With ``batch_size`` None or ≥ ``n``, ``full`` is True: every minibatch is the whole batch in order
    (``arange(n)``) and no random numbers are drawn. ``next(sampler)`` returns an int64 tensor on ``device``.
    """

    def __init__(self, n: int, batch_size: int | None = None, seed: int = 0, device: torch.device | str | None = None):
        self.n = check_positive_int(n, "n")
        if batch_size is not None:
            batch_size = check_positive_int(batch_size, "batch_size (or None for the full batch)")
        if not is_integer(seed):
            raise LinftError(f"seed must be an integer, got {seed!r}")
        self.full = batch_size is None or batch_size >= self.n
        self.batch_size = self.n if self.full else batch_size
        self.device = device
        self._generator = torch.Generator().manual_seed(int(seed))
        self._order: list[int] = []

    def __iter__(self) -> MinibatchSampler:
        return self

    def __next__(self) -> torch.Tensor:
        if self.full:
            return torch.arange(self.n, device=self.device)
        if len(self._order) < self.batch_size:
            self._order += torch.randperm(self.n, generator=self._generator).tolist()
        idx, self._order = self._order[: self.batch_size], self._order[self.batch_size :]
        return torch.tensor(idx, device=self.device)


class Evaluator:
    """One logged row of a run at the model's current θ: losses, accuracies, drift and the gap columns.

    Args:
        model: the model being trained (real, or a :class:`~linft.linearize.LinearizedModel`).
        train_batch: labelled batch (:func:`linft.batches.check_batch`), moved to the model's device.
        eval_batch: the same, or None (no ``eval_*`` and ``*_eval`` columns).
        anchor: θ0 by name (default: the trainable tensors now, :func:`linft.regularize.snapshot`).
        lam: λ of the ``penalty`` column (λ/2)‖θ_A − θ_A0‖² (``loss`` = ``task_loss`` + ``penalty``).
        anchored: the tensors A of the ``penalty`` and ``drift_anchored`` columns, ``"all"`` (default here) or
            ``"lora"`` (:func:`linft.regularize.anchored_names`; :func:`fine_tune` passes its ``anchor``).
        loss, mse_target: the task loss (:func:`task_loss`).
        reference: the linearization of the gap columns (:func:`gap_reference`; the model itself for a
            LinearizedModel), or None for no gap columns.
        gap_n: leading examples of each batch used for the gap columns (None: all).
        chunk: examples per forward pass.

    ``evaluator(step)`` returns the row as a dict: ``step``, ``loss``, ``task_loss``, ``penalty``, ``train_acc``,
    [``eval_loss``, ``eval_acc``], ``drift_total``, ``drift_<group>`` …, ``drift_anchored``, [``gap_train``,
    ``rel_gap_train``, ``agree_train``, ``rel_change_gap_train``, ``gap_per_drift2_train``, ``gap_eval``, …] and
    ``pull_frac`` (NaN: :func:`fine_tune` fills it in after the update).

    ``rel_change_gap`` divides the gap by ‖f − f0‖_F, where f0 are the real network's outputs at ``anchor`` (θ0) on
    the same gap examples, computed once when the Evaluator is built (through the reference, at θ0 whatever the
    model's current θ); it is NaN while θ = θ0 (drift 0) or f = f0. ``gap_per_drift2`` = gap / drift_total² is NaN
    at zero drift.
    """

    def __init__(
        self,
        model: nn.Module,
        train_batch: Mapping,
        eval_batch: Mapping | None = None,
        *,
        anchor: Mapping[str, torch.Tensor] | None = None,
        lam: float = 0.0,
        loss: str = "ce",
        mse_target: str = "onehot",
        reference: LinearizedModel | None = None,
        gap_n: int | None = 64,
        chunk: int = 64,
        anchored: str = "all",
    ):
        check_model(model)
        check_choice("loss", loss, LOSSES)
        check_choice("mse_target", mse_target, MSE_TARGETS)
        if reference is not None and not isinstance(reference, LinearizedModel):
            raise LinftError(f"reference must be a LinearizedModel (see gap_reference), got {type(reference).__name__}")
        if isinstance(model, LinearizedModel) and reference not in (None, model):
            raise LinftError(
                "a LinearizedModel is its own gap reference: pass reference=model (or gap_reference(model))"
            )
        self.model = model
        self.anchor = snapshot(model) if anchor is None else anchor
        self._penalty = AnchoredStep(model, self.anchor, lam, names=anchored_names(model, anchored))
        device = next(iter(self.anchor.values())).device
        n_labels = num_labels(model)
        self.train = to_device(check_batch(train_batch, "train_batch", labels=True, num_labels=n_labels), device)
        self.eval = None
        if eval_batch is not None:
            self.eval = to_device(check_batch(eval_batch, "eval_batch", labels=True, num_labels=n_labels), device)
        self.loss, self.mse_target = loss, mse_target
        self.reference = reference
        self.gap_n = positive_or_none(gap_n, "gap_n", "all examples")
        self.chunk = check_positive_int(chunk, "chunk")
        self._f0: dict[str, torch.Tensor] = {}
        if reference is not None:  # the real network at θ0 on the gap examples, once
            theta0 = {n: self.anchor[n] for n in reference.names}
            for split, batch in (("train", self.train), ("eval", self.eval)):
                if batch is not None:
                    self._f0[split] = _chunked(partial(reference.real_logits, params=theta0), batch, self.chunk,
                                               self._gap_k(batch))

    def _gap_k(self, batch: Mapping[str, torch.Tensor]) -> int:
        n = batch["labels"].shape[0]
        return n if self.gap_n is None else min(self.gap_n, n)

    def _scores(self, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, float, float]:
        logits = _chunked(partial(model_logits, self.model), batch, self.chunk)
        value = task_loss(logits, batch["labels"], self.loss, self.mse_target).item()
        accuracy = (logits.argmax(-1) == batch["labels"]).double().mean().item()
        return logits, value, accuracy

    def _gap(self, batch: Mapping[str, torch.Tensor], logits: torch.Tensor) -> tuple[dict[str, float], torch.Tensor]:
        """The gap numbers and the real network's outputs f on the first gap_n examples."""
        k = self._gap_k(batch)
        if isinstance(self.model, LinearizedModel):  # real network at the linear model's θ vs the linear model
            real = _chunked(self.model.real_logits, batch, self.chunk, k)
            return gap_numbers(real, logits[:k]), real
        linear = _chunked(partial(self.reference, params=self.model), batch, self.chunk, k)
        return gap_numbers(logits[:k], linear), logits[:k]

    def __call__(self, step: int) -> dict:
        row: dict = {"step": step}
        f_train, r, acc = self._scores(self.train)
        pen = self._penalty.penalty()
        row.update(loss=r + pen, task_loss=r, penalty=pen, train_acc=acc)
        f_eval = None
        if self.eval is not None:
            f_eval, row["eval_loss"], row["eval_acc"] = self._scores(self.eval)
        for key, value in drift(self.model, self.anchor).items():
            row[f"drift_{key}"] = value
        row["drift_anchored"] = self._penalty.distance()
        d2 = row["drift_total"] ** 2
        if self.reference is not None:
            for split, batch, logits in (("train", self.train, f_train), ("eval", self.eval, f_eval)):
                if batch is None:
                    continue
                g, real = self._gap(batch, logits)
                row[f"gap_{split}"] = g["gap"]
                row[f"rel_gap_{split}"] = g["rel_gap"]
                row[f"agree_{split}"] = g["agreement"]
                moved = torch.linalg.vector_norm(real.double() - self._f0[split].double()).item()
                row[f"rel_change_gap_{split}"] = g["gap"] / moved if d2 > 0 and moved > 0 else float("nan")
                row[f"gap_per_drift2_{split}"] = g["gap"] / d2 if d2 > 0 else float("nan")
        row["pull_frac"] = float("nan")
        return row


# ---------------------------------------------------------------------------------------------- step size


def gd_step_size(
    model: nn.Module,
    batch: Mapping,
    lam: float,
    c: float = 1.0,
    *,
    loss: str = "mse",
    mse_target: str = "onehot",
    params="trainable",
) -> dict:
    """The gradient-descent step η = c/(β̂ + λ) of the descent condition η ≤ 1/(β + λ), with β̂ measured at θ0.

    β̂ = μmax(K)/N, where K is the empirical NTK (:func:`linft.ntk.empirical_ntk`, SGD kernel) of the trained
    parameters (``params``, default ``"trainable"``: LoRA and head) on ``batch`` (N examples), with output
    ``"full"`` (the N·C logits) for ``mse_target="onehot"`` or ``"logit_diff"`` (f_1 − f_0) for ``"logit_diff"``.
    K = JJᵀ and JᵀJ have the same nonzero eigenvalues, so β̂ is the largest eigenvalue of the Gauss-Newton Hessian
    JᵀJ/N of the mean squared loss (1/(2N))‖f − Y‖² (:func:`task_loss` with ``loss="mse"``). For the linearized
    model that loss is exactly quadratic with Hessian JᵀJ/N, and the anchored objective adds at most λ (the
    penalty's Hessian is λ on the anchored tensors, 0 elsewhere), so β̂ + λ bounds its curvature everywhere and
    η = c/(β̂ + λ) satisfies the descent condition η ≤ 1/(β + λ) for c ≤ 1: every full-batch gradient-descent step
    lowers the objective by at least (η/2)‖∇F‖². On a quadratic, 1 < c < 2 still descends but outside the
    book's condition (c ≥ 2 diverges along the top eigenvector), hence c ∈ (0, 2).

    β̂ is measured at θ0 (the model's current parameters; for a LinearizedModel, its θ0). The real model's
    curvature can grow as it trains (and has second-order terms Gauss-Newton leaves out), so the condition is not
    guaranteed for the real model: runs count descent violations on every step (``TrainResult.objective`` of a
    full-batch :func:`fine_tune`, :func:`linft.bound.descent_violations`).

    Args:
        model: a real classifier (e.g. MiniLM + LoRA) or a LinearizedModel (its wrapped network at θ0).
        batch: right-padded ``input_ids``/``attention_mask`` [N, L] (labels ignored): the full training batch.
        lam: λ ≥ 0 of the run.
        c: step as a fraction of 1/(β̂ + λ), in (0, 2); 1 is the largest step of the descent condition.
        loss: ``"mse"`` only (the squared loss is the quadratic objective of the condition).
        mse_target: ``"onehot"`` or ``"logit_diff"``, as in :func:`fine_tune`.
        params: the parameter set of the kernel (:func:`linft.ntk.empirical_ntk`); keep ``"trainable"`` (all
            trained tensors) for a step used to train them all.

    Returns:
        the dict
        ``{"beta": β̂, "lr": c/(β̂ + λ), "mu_max": μmax(K), "mu_min": μmin(K) (clipped at 0), "N": N, "c": c,
        "kappa_lambda": (μmax + Nλ)/(μmin + Nλ)}``.
    """
    from linft.ntk import empirical_ntk
    from linft.predict import descent_lr
    from linft.spectral import eigenvalues, kappa_from_extremes

    check_choice("loss", loss, LOSSES)
    if loss != "mse":
        raise LinftError(
            "gd_step_size measures the curvature of the squared loss: pass loss='mse' (cross-entropy runs use adamw)"
        )
    check_choice("mse_target", mse_target, MSE_TARGETS)
    lam = check_lam(lam)
    if isinstance(c, bool) or not isinstance(c, numbers.Real) or not 0 < c < 2:
        raise LinftError(f"c must be a number in (0, 2) (1: the descent condition's largest step), got {c!r}")
    c = float(c)
    check_model(model)
    output = "full" if mse_target == "onehot" else "logit_diff"
    batch = _model_inputs(batch) if isinstance(batch, Mapping) else batch  # labels are not needed
    if isinstance(model, LinearizedModel):
        net = model.model
        current = {n: p.detach().clone() for n, p in net.named_parameters() if n in model.theta0}
        try:  # the kernel of the linearization: the wrapped network at θ0
            _write(net, model.theta0)
            kernel = empirical_ntk(net, batch, params=params, output=output, per_layer=False)
        finally:
            _write(net, current)
    else:
        kernel = empirical_ntk(model, batch, params=params, output=output, per_layer=False)
    values = eigenvalues(kernel)
    mu_max, mu_min = float(values[-1]), max(float(values[0]), 0.0)
    n = int(kernel.values.shape[0])
    beta = mu_max / n
    if not beta + lam > 0:
        raise LinftError("β̂ + λ = 0 (the outputs do not depend on these parameters and λ = 0): no step size follows")
    # the formulas of linft.predict: η = c·descent_lr = c/(μmax/N + λ), κ_λ = (μmax + Nλ)/(μmin + Nλ)
    extremes = torch.tensor([mu_min, mu_max], dtype=torch.float64)
    return {"beta": beta, "lr": c * descent_lr(extremes, N=n, lam=lam), "mu_max": mu_max, "mu_min": mu_min, "N": n,
            "c": c, "kappa_lambda": kappa_from_extremes(mu_max, mu_min, n * lam)}


@torch.no_grad()
def _write(model: nn.Module, values: Mapping[str, torch.Tensor]) -> None:
    named = dict(model.named_parameters())
    for n, v in values.items():
        named[n].copy_(v)
