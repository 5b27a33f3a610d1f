"""One fine-tuning loop for the real model and its linearization, with anchoring and linearization-gap logging.

:func:`fine_tune` trains a model from :mod:`linft.models` (LoRA + head) or a :class:`linft.linearize.LinearizedModel`
in place, and logs per logged step:

- ``loss`` (task + penalty), ``task_loss`` (R), ``penalty`` ((λ/2)‖θ_A − θ_A0‖² over the *anchored* tensors A, see
  ``anchor``) and ``train_acc``, all on the *whole* training batch; ``eval_loss`` and ``eval_acc`` on the eval batch;
- ``drift_total`` = ‖θ − θ0‖ over every trained tensor, ``drift_layer0`` … ``drift_head`` per layer group, and
  ``drift_anchored`` = ‖θ_A − θ_A0‖ over the anchored tensors (equal to ``drift_total`` with ``anchor="all"``);
- the same-parameters linearization gap on the first ``gap_n`` train and eval examples: ``gap_train`` =
  ‖f(θ) − f_lin(θ)‖_F, ``rel_gap_train`` = gap / ‖f(θ)‖_F, ``agree_train`` (argmax agreement),
  ``rel_change_gap_train`` = gap / ‖f(θ) − f(θ0)‖_F (the gap as a share of how far the outputs moved; NaN while
  they have not moved), ``gap_per_drift2_train`` = gap / drift_total² (NaN at zero drift; the Taylor bound says
  ≤ L/2), and ``*_eval``. Both sides are at the current θ of the model being trained. For the real model, f_lin
  comes from ``lin_reference`` (or a linearization built at the start). For a linearized model, f comes from its
  ``real_logits``. This is the quantity the anchored bound controls.

Full-batch runs also record the anchored objective R + penalty at *every* step (``TrainResult.objective``), from
the training forward pass, so that descent violations can be counted on every step, not only the logged ones.
:func:`gd_step_size` gives the gradient-descent step η = c/(β̂ + λ) of the descent condition, and
:func:`linear_probe` trains the classifier head alone.

Two standard settings:

- theory: ``loss="mse", optimizer="gd"``, full batch (``batch_size=None``);
- practice: ``loss="ce", optimizer="adamw", batch_size=16``.

The model is kept in eval mode (dropout off), so the real and the linear model are the same function at θ0 and runs
are deterministic. Same seed, same inputs and the same starting model give an identical log.

The loop is made of parts that can be used and tested alone:

- :class:`TrainConfig`: the run's settings, checked when built (stored on the result as ``TrainResult.config``);
- :func:`gap_reference`: the :class:`~linft.linearize.LinearizedModel` the gap columns compare against;
- :class:`MinibatchSampler`: minibatch indices, seeded epochs drawn without replacement;
- :class:`Evaluator`: one logged row (losses, accuracies, drift, gap columns) at the model's current θ.
"""

from __future__ import annotations

import math
import numbers
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from functools import partial

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from linft import LinftError, check_choice, check_positive_int
from linft.batches import apply_in_length_chunks, check_batch, to_device, trim_padding
from linft.device import seed_everything
from linft.functional import logits_of
from linft.linearize import LinearizedModel, gap_numbers, trainable_parameters
from linft.regularize import ANCHORS, GRANULARITIES, AnchoredStep, anchored_names, check_lam, drift, snapshot

__all__ = [
    "fine_tune",
    "gd_step_size",
    "linear_probe",
    "TrainConfig",
    "TrainResult",
    "gap_reference",
    "MinibatchSampler",
    "Evaluator",
    "task_loss",
    "LOSSES",
    "OPTIMIZERS",
    "PENALTIES",
    "MSE_TARGETS",
    "KINDS",
    "ANCHORS",
    "SCHEDULES",
]

LOSSES = ("ce", "mse")
OPTIMIZERS = ("adamw", "gd")
PENALTIES = ("loss", "decoupled")
MSE_TARGETS = ("onehot", "logit_diff")
KINDS = ("real", "linearized")
#: learning-rate schedules: constant, or linear warm-up over ``warmup``·steps then linear decay to 0 at ``steps``
#: (transformers' ``get_linear_schedule_with_warmup``, the reference study's schedule)
SCHEDULES = ("constant", "linear")


# ---------------------------------------------------------------------------------------------- config


def _is_integer(value) -> bool:
    return not isinstance(value, bool) and isinstance(value, numbers.Integral)


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """The settings of one :func:`fine_tune` run, checked when built: bad values raise :class:`linft.LinftError`
    with one line that says which and what to use.

    The fields are :func:`fine_tune`'s arguments of the same names (numbers normalized: ``lr`` and ``lam`` as
    floats, integers as ``int``). ``kind`` (``"real"`` or ``"linearized"``), ``n_train`` and ``n_eval`` describe the
    run; :func:`fine_tune` fills them in (None until then).

    It reads like the dict it replaced: ``config["lam"]``, ``"lam" in config``, ``dict(config)``,
    ``config.as_dict()``.
    """

    lr: float
    steps: int
    loss: str = "ce"
    optimizer: str = "adamw"
    batch_size: int | None = None
    lam: float = 0.0
    selective: bool = False
    penalty: str = "loss"
    granularity: str = "tensor"
    anchor: str = "lora"
    seed: int = 0
    log_every: int = 1
    track_gap: bool = True
    gap_n: int | None = 64
    mse_target: str = "onehot"
    eval_chunk: int = 64
    progress: bool = True
    schedule: str = "constant"
    warmup: float = 0.0
    log_steps: tuple[int, ...] | None = None
    score_n: int | None = None
    kind: str | None = None
    n_train: int | None = None
    n_eval: int | None = None

    def __post_init__(self):
        check_choice("loss", self.loss, LOSSES)
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_choice("penalty", self.penalty, PENALTIES)
        check_choice("granularity", self.granularity, GRANULARITIES)
        check_choice("anchor", self.anchor, ANCHORS)
        check_choice("mse_target", self.mse_target, MSE_TARGETS)
        check_choice("schedule", self.schedule, SCHEDULES)
        warmup = self.warmup
        if isinstance(warmup, bool) or not isinstance(warmup, numbers.Real) or not 0 <= warmup < 1:
            raise LinftError(f"warmup must be a fraction of the steps in [0, 1), got {warmup!r}")
        log_steps = self.log_steps
        if log_steps is not None:
            if isinstance(log_steps, (str, bytes)) or not all(_is_integer(k) and 0 <= k <= self.steps
                                                               for k in log_steps):
                raise LinftError(f"log_steps must be step numbers in 0..steps = {self.steps}, got {log_steps!r}")
            log_steps = tuple(sorted({int(k) for k in log_steps}))
        lr = self.lr
        if isinstance(lr, bool) or not isinstance(lr, numbers.Real) or not math.isfinite(lr) or not lr > 0:
            raise LinftError(f"lr must be a positive number, got {lr!r}")
        if not _is_integer(self.steps) or self.steps < 0:
            raise LinftError(f"steps must be an integer >= 0, got {self.steps!r}")
        if not _is_integer(self.seed):
            raise LinftError(f"seed must be an integer, got {self.seed!r}")
        normalized = {
            "lr": float(lr),
            "steps": int(self.steps),
            "seed": int(self.seed),
            "log_every": check_positive_int(self.log_every, "log_every"),
            "batch_size": _positive_or_none(self.batch_size, "batch_size", "the full batch"),
            "gap_n": _positive_or_none(self.gap_n, "gap_n", "all examples"),
            "eval_chunk": check_positive_int(self.eval_chunk, "eval_chunk"),
            "lam": check_lam(self.lam),
            "selective": bool(self.selective),
            "track_gap": bool(self.track_gap),
            "progress": bool(self.progress),
            "warmup": float(warmup),
            "log_steps": log_steps,
            "score_n": _positive_or_none(self.score_n, "score_n", "every training example"),
        }
        if self.penalty == "decoupled" and normalized["lam"] * normalized["lr"] > 1:
            raise LinftError(
                f"decoupled pull lr·λ = {normalized['lr'] * normalized['lam']:g} > 1 overshoots the anchor: "
                "lower lr or λ"
            )
        if self.kind is not None:
            check_choice("kind", self.kind, KINDS)
        if self.n_train is not None:
            normalized["n_train"] = check_positive_int(self.n_train, "n_train")
        if self.n_eval is not None:
            if not _is_integer(self.n_eval) or self.n_eval < 0:
                raise LinftError(f"n_eval must be an integer >= 0, got {self.n_eval!r}")
            normalized["n_eval"] = int(self.n_eval)
        for name, value in normalized.items():
            object.__setattr__(self, name, value)  # frozen: store the checked values

    def __getitem__(self, key: str):
        if key not in self:
            raise KeyError(key)
        return getattr(self, key)

    def __contains__(self, key) -> bool:
        return key in self.keys()

    def keys(self) -> tuple[str, ...]:
        """The field names, in order (with ``__getitem__``, so ``dict(config)`` works)."""
        return tuple(f.name for f in fields(self))

    def as_dict(self) -> dict:
        """The fields as a plain dict."""
        return asdict(self)


def _positive_or_none(value, name: str, none_means: str) -> int | None:
    if value is None:
        return None
    return check_positive_int(value, f"{name} (or None for {none_means})")


@dataclass
class TrainResult:
    """What :func:`fine_tune` returns.

    Attributes:
        log: tidy ``pandas.DataFrame``, one row per logged step (columns in the module docstring, plus ``step``
            and ``pull_frac``: the share of units the anchor pulled in the update made at that step, NaN when
            none was made).
        final: the last row as a dict, plus ``R0`` (task loss at θ0 on the train batch), ``steps``, ``seconds``
            (wall time of the whole run), ``seconds_per_step`` (updates only, without logging) and ``kind``
            (``"real"`` or ``"linearized"``).
        model: the trained model (the same object that was passed in).
        anchor: θ0 by name (every trainable tensor at the start, anchored or not).
        config: the run's :class:`TrainConfig` (also readable as a dict: ``config["lam"]``).
        objective: for full-batch runs, the anchored objective R(θ_t) + (λ/2)‖θ_A,t − θ_A0‖² at every step
            t = 0 … steps (float64, ``steps + 1`` values): entries 0 … steps − 1 from each update's forward pass
            (before the update), the last from the final evaluation. It equals the ``loss`` column at the logged
            steps (up to float rounding). None for minibatch runs (their forward pass sees a minibatch only).
    """

    log: pd.DataFrame
    final: dict
    model: nn.Module
    anchor: dict = field(repr=False)
    config: TrainConfig | None = None
    objective: np.ndarray | None = field(default=None, repr=False)


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


def _check_model(model) -> None:
    if not isinstance(model, nn.Module):
        kind = type(model).__name__
        raise LinftError(f"model must be an nn.Module (a linft model or a LinearizedModel), got {kind}")


def _num_labels(model: nn.Module) -> int | None:
    base = model.model if isinstance(model, LinearizedModel) else model
    n = getattr(getattr(base, "config", None), "num_labels", None)
    return int(n) if n is not None else None


def _model_inputs(batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in batch.items() if k != "labels"}


def _logits(model: nn.Module, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
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
    _check_model(model)
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
        if not _is_integer(seed):
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
        _check_model(model)
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
        n_labels = _num_labels(model)
        self.train = to_device(check_batch(train_batch, "train_batch", labels=True, num_labels=n_labels), device)
        self.eval = None
        if eval_batch is not None:
            self.eval = to_device(check_batch(eval_batch, "eval_batch", labels=True, num_labels=n_labels), device)
        self.loss, self.mse_target = loss, mse_target
        self.reference = reference
        self.gap_n = _positive_or_none(gap_n, "gap_n", "all examples")
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
        logits = _chunked(partial(_logits, self.model), batch, self.chunk)
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


# ---------------------------------------------------------------------------------------------- the loop


def _optimizer(config: TrainConfig, params: Iterable[torch.Tensor]) -> torch.optim.Optimizer:
    params = list(params)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=0.0)
    return torch.optim.SGD(params, lr=config.lr)


def _scheduler(config: TrainConfig, opt: torch.optim.Optimizer):
    """The ``"linear"`` schedule as a ``LambdaLR`` (None for ``"constant"``): factor k/w for k < w warm-up steps,
    then (steps − k)/(steps − w)."""
    if config.schedule == "constant":
        return None
    total, warm = config.steps, int(config.warmup * config.steps)

    def factor(k: int) -> float:
        if k < warm:
            return k / warm
        return max(0.0, (total - k) / max(1, total - warm))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def _update(
    model: nn.Module, opt: torch.optim.Optimizer, anchored: AnchoredStep, batch: Mapping, config: TrainConfig, step: int
) -> tuple[float, dict[str, bool]]:
    """One optimizer update on ``batch`` with the anchor's pull; returns the batch's task loss and the pulled units."""
    opt.zero_grad(set_to_none=True)
    r = task_loss(_logits(model, batch), batch["labels"], config.loss, config.mse_target)
    if not torch.isfinite(r):
        raise LinftError(f"training diverged at step {step} (task loss {r.item()}): lower lr (now {config.lr:g})")
    r.backward()
    pulled = anchored.add_to_grad() if config.penalty == "loss" else {}
    opt.step()
    if config.penalty == "decoupled":
        pulled = anchored.step()
    return r.item(), pulled


def fine_tune(
    model: nn.Module,
    train_batch: Mapping,
    eval_batch: Mapping | None = None,
    *,
    loss: str = "ce",
    optimizer: str = "adamw",
    lr: float,
    steps: int,
    batch_size: int | None = None,
    lam: float = 0.0,
    selective: bool = False,
    penalty: str = "loss",
    granularity: str = "tensor",
    anchor: str = "lora",
    seed: int = 0,
    log_every: int = 1,
    lin_reference: LinearizedModel | None = None,
    track_gap: bool = True,
    gap_n: int | None = 64,
    mse_target: str = "onehot",
    eval_chunk: int = 64,
    progress: bool = True,
    schedule: str = "constant",
    warmup: float = 0.0,
    log_steps=None,
    score_n: int | None = None,
) -> TrainResult:
    """Fine-tune ``model`` (real or :class:`~linft.linearize.LinearizedModel`) in place and log the run.

    Args:
        model: a classifier whose trainable tensors are trained (e.g. ``add_lora(load("minilm", 2).model)``), or a
            LinearizedModel (its θ is trained). Trained **in place**: pass ``copy.deepcopy(model)`` to keep the
            start (a LinearizedModel: build a new one, or ``lin.reset()``).
        train_batch: ``{"input_ids": [N, L], "attention_mask": [N, L], "labels": [N]}`` (``linft.data.as_batch``),
            checked by :func:`linft.batches.check_batch` (``attention_mask`` is required).
        eval_batch: same format, or None (no eval columns).
        loss: ``"ce"`` (cross-entropy) or ``"mse"`` (see :func:`task_loss` and ``mse_target``).
        optimizer: ``"adamw"`` (``torch.optim.AdamW`` with weight_decay=0, so λ is the only pull) or ``"gd"``
            (plain SGD, no momentum; gradient descent when the batch is full).
        lr: learning rate (> 0).
        steps: number of optimizer updates (≥ 0). Rows are logged at steps 0, log_every, 2·log_every, …, steps.
            Step k is the state after k updates.
        batch_size: minibatch size, drawn without replacement in seeded epochs (:class:`MinibatchSampler`); None
            (or ≥ N) means the full batch.
        lam: anchoring strength λ ≥ 0 (see :mod:`linft.regularize`). With λ = 0 the loop does exactly plain
            training.
        selective: pull a unit toward θ0 only when ∇R·(θ − θ0) ≥ 0.
        penalty: ``"loss"`` (gradient λ(θ − θ0) added to the task gradient before the step) or ``"decoupled"``
            (θ ← θ − lr·λ(θ − θ0) after the step; needs lr·λ ≤ 1).
        granularity: unit of the selective test: ``"tensor"``, ``"layer"`` or ``"global"``.
        anchor: which trained tensors the anchored pull applies to (:func:`linft.regularize.anchored_names`):
            ``"lora"`` (default: the LoRA matrices only, names containing ``"lora_"``; the classifier head and any
            other trained tensor train freely) or ``"all"`` (every trained tensor). A freshly initialised head is
            random, and f is linear in the head, so pulling it toward its random start buys no linearity and
            pins the classifier near random. The ``penalty`` column, ``pull_frac`` and ``TrainResult.objective``
            refer to the anchored tensors; the ``drift_*`` columns measure every trained tensor, plus
            ``drift_anchored``. A model with no LoRA tensors (a toy model, or a LinearizedModel of one) needs
            ``anchor="all"`` (``"lora"`` raises). **Changed default:** runs before this argument anchored every
            trained tensor, i.e. ``anchor="all"``; for a model with a trainable head, the default run now differs.
        seed: seeds torch and the minibatch order.
        log_every: log every this many steps (the last step is always logged).
        lin_reference: for a real model, a LinearizedModel wrapping the same starting model, used for the gap
            columns. If it is None and ``track_gap`` is set, one is built at the start (:func:`gap_reference`).
            Ignored for a LinearizedModel, which is its own reference.
        track_gap: log the same-parameters gap (costs one jvp over 2·gap_n examples per logged step for the real
            model, one forward for the linearized one).
        gap_n: number of leading train and eval examples used for the gap columns (None: all).
        mse_target: ``"onehot"`` or ``"logit_diff"`` (binary ±1 targets on f_1 − f_0); see :func:`task_loss`.
        eval_chunk: examples per forward pass when evaluating (memory bound).
        progress: show a tqdm progress bar.
        schedule: ``"constant"`` lr, or ``"linear"``: linear warm-up from 0 over the first ``warmup``·steps updates,
            then linear decay to 0 at ``steps`` (see :data:`SCHEDULES`).
        warmup: the warm-up fraction of ``"linear"``, in [0, 1).
        log_steps: the steps to log (0 and ``steps`` are always logged), instead of every ``log_every``-th.
        score_n: score only the first ``score_n`` training examples at a logged step (``loss``, ``task_loss``,
            ``train_acc`` are then over those; None: all). A long run on a large set logs cheaply this way.

    Returns:
        :class:`TrainResult`; with a full batch (``batch_size`` None or ≥ N) its ``objective`` holds R + penalty at
        every step (``steps + 1`` values), for counting descent violations on every step.

    Costs: an update of the real model is one forward and one backward pass over the minibatch; an update of the
    linearized model is one jvp plus one vjp (a backward pass at θ0), so it costs a small multiple of a real update
    (measured ratios: ``benchmarks/README.md``, "Linearized training cost (measured earlier)"). A logged step adds
    a forward pass over the whole train and eval batches and, with ``track_gap``, one jvp over 2·gap_n examples for
    the real model (a forward pass for the linearized one). Raise ``log_every`` for long runs.

    With ``selective`` and ``penalty="decoupled"``, the selective test uses ∇R at the pre-step θ (still in
    ``.grad``) and θ after the optimizer step. With ``penalty="loss"`` both are at the pre-step θ.
    """
    config = TrainConfig(
        loss=loss, optimizer=optimizer, lr=lr, steps=steps, batch_size=batch_size, lam=lam, selective=selective,
        penalty=penalty, granularity=granularity, anchor=anchor, seed=seed, log_every=log_every, track_gap=track_gap,
        gap_n=gap_n, mse_target=mse_target, eval_chunk=eval_chunk, progress=progress, schedule=schedule,
        warmup=warmup, log_steps=None if log_steps is None else tuple(log_steps), score_n=score_n,
    )
    _check_model(model)
    anchor = snapshot(model)
    if not anchor:
        raise LinftError("model has no trainable parameters: attach LoRA (linft.models.add_lora) first")
    n_labels = _num_labels(model)
    if config.loss == "mse" and config.mse_target == "logit_diff" and n_labels not in (None, 2):
        raise LinftError(f"mse_target='logit_diff' needs a 2-class head, this model has {n_labels}: use 'onehot'")
    device = next(iter(anchor.values())).device  # batches follow the model (CPU or GPU)
    train = to_device(check_batch(train_batch, "train_batch", labels=True, num_labels=n_labels), device)
    evalb = None
    if eval_batch is not None:
        evalb = to_device(check_batch(eval_batch, "eval_batch", labels=True, num_labels=n_labels), device)
    anchored_set = anchored_names(anchor, config.anchor)
    anchored = AnchoredStep(
        model, anchor, config.lam, lr=config.lr, selective=config.selective, granularity=config.granularity,
        names=anchored_set,
    )
    reference = gap_reference(model, lin_reference, anchor) if config.track_gap else None
    model.eval()  # dropout off: same deterministic function as the linearization
    config = replace(
        config,
        kind="linearized" if isinstance(model, LinearizedModel) else "real",
        n_train=int(train["labels"].shape[0]),
        n_eval=int(evalb["labels"].shape[0]) if evalb is not None else 0,
    )
    scored = train if config.score_n is None else {k: v[: config.score_n] for k, v in train.items()}
    evaluate = Evaluator(
        model, scored, evalb, anchor=anchor, lam=config.lam, loss=config.loss, mse_target=config.mse_target,
        reference=reference, gap_n=config.gap_n, chunk=config.eval_chunk, anchored=config.anchor,
    )

    seed_everything(config.seed)
    sampler = MinibatchSampler(config.n_train, config.batch_size, config.seed, device=device)
    opt = _optimizer(config, trainable_parameters(model).values())
    scheduler = _scheduler(config, opt)
    logged = set(config.log_steps) | {0, config.steps} if config.log_steps is not None else None

    if sampler.full and config.score_n is not None and config.score_n < config.n_train:
        raise LinftError("score_n scores part of the training set, but full-batch training reads the whole objective "
                         "at every step: drop score_n or pass a batch_size")
    train_trimmed = trim_padding(train) if sampler.full else train
    rows: list[dict] = []
    objective: list[float] | None = [] if sampler.full else None
    start = time.perf_counter()
    update_seconds = 0.0
    desc = f"fine-tune ({config.kind}, {config.loss}/{config.optimizer}, λ={config.lam:g})"
    bar = tqdm(total=config.steps, disable=not config.progress, desc=desc)
    try:
        for step in range(config.steps + 1):
            row = None
            if (step in logged) if logged is not None else (step % config.log_every == 0 or step == config.steps):
                row = evaluate(step)
                rows.append(row)
            if step == config.steps:
                break
            t0 = time.perf_counter()
            minibatch = train_trimmed
            if not sampler.full:
                idx = next(sampler)
                minibatch = trim_padding({k: v[idx] for k, v in train.items()})  # no column all examples mask
            pen = anchored.penalty() if objective is not None else 0.0  # at θ_t, before the update
            batch_loss, pulled = _update(model, opt, anchored, minibatch, config, step)
            if scheduler is not None:
                scheduler.step()
            if objective is not None:  # the full batch: R(θ_t) from this update's forward pass
                objective.append(batch_loss + pen)
            update_seconds += time.perf_counter() - t0
            if row is not None and pulled:
                row["pull_frac"] = sum(pulled.values()) / len(pulled)
            bar.update(1)
            bar.set_postfix(batch_loss=f"{batch_loss:.4f}")
    finally:
        bar.close()
    seconds = time.perf_counter() - start
    if objective is not None:
        objective.append(rows[-1]["loss"])

    final = {k: v for k, v in rows[-1].items() if k != "pull_frac"}
    final.update(
        R0=rows[0]["task_loss"], steps=config.steps, seconds=seconds,
        seconds_per_step=update_seconds / config.steps if config.steps else float("nan"), kind=config.kind,
    )
    return TrainResult(
        log=pd.DataFrame(rows), final=final, model=model, anchor=anchor, config=config,
        objective=np.asarray(objective, dtype=np.float64) if objective is not None else None,
    )


# ---------------------------------------------------------------------------------------------- step size, probe


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
    from linft.spectral import eigenvalues

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
    _check_model(model)
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
    return {"beta": beta, "lr": c / (beta + lam), "mu_max": mu_max, "mu_min": mu_min, "N": n, "c": c,
            "kappa_lambda": (mu_max + n * lam) / (mu_min + n * lam) if mu_min + n * lam > 0 else float("inf")}


@torch.no_grad()
def _write(model: nn.Module, values: Mapping[str, torch.Tensor]) -> None:
    named = dict(model.named_parameters())
    for n, v in values.items():
        named[n].copy_(v)


def linear_probe(
    model: nn.Module,
    train_batch: Mapping,
    *,
    loss: str = "ce",
    lr: float,
    steps: int,
    seed: int = 0,
    mse_target: str = "onehot",
    log_every: int = 1,
) -> TrainResult:
    """Train the classifier head alone (:func:`linft.models.is_head_param` names), everything else frozen.

    For this run every other parameter (LoRA included) has ``requires_grad`` off and the head's is on; the flags
    are restored afterwards, also when the run raises. The run is :func:`fine_tune` on the full batch with
    ``optimizer="gd"`` (full-batch gradient descent) for ``loss="mse"`` and ``"adamw"`` for ``loss="ce"``
    (cross-entropy's curvature varies too much for one fixed GD step), λ = 0 (no anchoring) and no gap columns.
    The model is modified **in place** (its head; pass ``copy.deepcopy(model)`` to keep it). Returns the run's
    :class:`TrainResult` (its ``objective`` holds the task loss at every step).

    Args:
        model: a real classifier with a ``classifier``/``score`` head (not a LinearizedModel).
        train_batch: labelled batch, as for :func:`fine_tune`.
        loss, lr, steps, seed, mse_target, log_every: as for :func:`fine_tune`.
    """
    from linft.models import is_head_param

    _check_model(model)
    if isinstance(model, LinearizedModel):
        raise LinftError("linear_probe trains a real model's head: pass the real model (lin.model), not a "
                         "LinearizedModel")
    check_choice("loss", loss, LOSSES)
    named = list(model.named_parameters())
    if not any(is_head_param(n) for n, _ in named):
        raise LinftError("model has no classifier head (parameters named 'classifier' or 'score') to probe")
    saved = [(p, p.requires_grad) for _, p in named]
    try:
        for n, p in named:
            p.requires_grad_(is_head_param(n))
        return fine_tune(
            model, train_batch, None, loss=loss, optimizer="gd" if loss == "mse" else "adamw", lr=lr, steps=steps,
            lam=0.0, anchor="all", seed=seed, log_every=log_every, track_gap=False, mse_target=mse_target,
            progress=False,
        )
    finally:
        for p, flag in saved:
            p.requires_grad_(flag)
