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
  :func:`fine_tune` takes one as ``config=`` or builds it from its keyword settings;

and, from :mod:`linft.train_parts` (re-exported here):

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

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm import tqdm

from linft import LinftError, check_choice, check_positive_int
from linft.batches import check_batch, to_device, trim_padding
from linft.device import seed_everything
from linft.linearize import LinearizedModel, trainable_parameters
from linft.regularize import ANCHORS, GRANULARITIES, AnchoredStep, anchored_names, check_lam, snapshot
from linft.train_parts import (
    LOSSES,
    MSE_TARGETS,
    Evaluator,
    MinibatchSampler,
    check_model,
    gap_reference,
    gd_step_size,
    is_integer,
    model_logits,
    num_labels,
    positive_or_none,
    task_loss,
)

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

OPTIMIZERS = ("adamw", "gd")
PENALTIES = ("loss", "decoupled")
KINDS = ("real", "linearized")
#: learning-rate schedules: constant, or linear warm-up over ``warmup``·steps then linear decay to 0 at ``steps``
#: (transformers' ``get_linear_schedule_with_warmup``, the reference study's schedule)
SCHEDULES = ("constant", "linear")


# ---------------------------------------------------------------------------------------------- config


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
            if isinstance(log_steps, (str, bytes)) or not all(is_integer(k) and 0 <= k <= self.steps
                                                               for k in log_steps):
                raise LinftError(f"log_steps must be step numbers in 0..steps = {self.steps}, got {log_steps!r}")
            log_steps = tuple(sorted({int(k) for k in log_steps}))
        lr = self.lr
        if isinstance(lr, bool) or not isinstance(lr, numbers.Real) or not math.isfinite(lr) or not lr > 0:
            raise LinftError(f"lr must be a positive number, got {lr!r}")
        if not is_integer(self.steps) or self.steps < 0:
            raise LinftError(f"steps must be an integer >= 0, got {self.steps!r}")
        if not is_integer(self.seed):
            raise LinftError(f"seed must be an integer, got {self.seed!r}")
        normalized = {
            "lr": float(lr),
            "steps": int(self.steps),
            "seed": int(self.seed),
            "log_every": check_positive_int(self.log_every, "log_every"),
            "batch_size": positive_or_none(self.batch_size, "batch_size", "the full batch"),
            "gap_n": positive_or_none(self.gap_n, "gap_n", "all examples"),
            "eval_chunk": check_positive_int(self.eval_chunk, "eval_chunk"),
            "lam": check_lam(self.lam),
            "selective": bool(self.selective),
            "track_gap": bool(self.track_gap),
            "progress": bool(self.progress),
            "warmup": float(warmup),
            "log_steps": log_steps,
            "score_n": positive_or_none(self.score_n, "score_n", "every training example"),
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
            if not is_integer(self.n_eval) or self.n_eval < 0:
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
    r = task_loss(model_logits(model, batch), batch["labels"], config.loss, config.mse_target)
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
    config: TrainConfig | None = None,
    lin_reference: LinearizedModel | None = None,
    **settings,
) -> TrainResult:
    """Fine-tune ``model`` (real or :class:`~linft.linearize.LinearizedModel`) in place and log the run.

    Args:
        model: a classifier whose trainable tensors are trained (e.g. ``add_lora(load("minilm", 2).model)``), or a
            LinearizedModel (its θ is trained). Trained **in place**: pass ``copy.deepcopy(model)`` to keep the
            start (a LinearizedModel: build a new one, or ``lin.reset()``).
        train_batch: ``{"input_ids": [N, L], "attention_mask": [N, L], "labels": [N]}`` (``linft.data.as_batch``),
            checked by :func:`linft.batches.check_batch` (``attention_mask`` is required).
        eval_batch: same format, or None (no eval columns).
        config: the run's settings as a :class:`TrainConfig`; or leave it None and pass the settings below as
            keywords (``lr`` and ``steps`` required; they are :class:`TrainConfig`'s fields), which build one
            (``TrainConfig(**settings)``). Not both.
        lin_reference: for a real model, a LinearizedModel wrapping the same starting model, used for the gap
            columns. If it is None and ``track_gap`` is set, one is built at the start (:func:`gap_reference`).
            Ignored for a LinearizedModel, which is its own reference.

    Keyword Args:
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
    config = _run_config(config, settings)
    run = _setup(model, train_batch, eval_batch, config, lin_reference)
    start = time.perf_counter()
    rows, objective, update_seconds = _loop(model, run)
    seconds = time.perf_counter() - start
    return _result(run, rows, objective, seconds, update_seconds)


#: the keyword settings :func:`fine_tune` accepts (the :class:`TrainConfig` fields it does not fill in itself)
SETTINGS = tuple(f.name for f in fields(TrainConfig) if f.name not in ("kind", "n_train", "n_eval"))


def _run_config(config: TrainConfig | None, settings: dict) -> TrainConfig:
    """``config``, or the :class:`TrainConfig` the keyword ``settings`` build (exactly one of the two)."""
    if config is not None:
        if not isinstance(config, TrainConfig):
            raise LinftError(f"config must be a TrainConfig, got {type(config).__name__}")
        if settings:
            raise LinftError(f"pass config= or keyword settings, not both (got config and {', '.join(settings)})")
        return config
    unknown = [k for k in settings if k not in SETTINGS]
    if unknown:
        raise TypeError(f"fine_tune() got an unexpected keyword argument {unknown[0]!r}")
    missing = [k for k in ("lr", "steps") if k not in settings]
    if missing:
        raise TypeError(f"fine_tune() missing required keyword-only argument(s): {', '.join(map(repr, missing))}")
    if settings.get("log_steps") is not None:
        settings = {**settings, "log_steps": tuple(settings["log_steps"])}
    return TrainConfig(**settings)


@dataclass
class _Run:
    """What :func:`fine_tune`'s loop works on, set up by :func:`_setup`."""

    config: TrainConfig
    model: nn.Module
    anchor: dict
    train: dict
    anchored: AnchoredStep
    evaluate: Evaluator
    device: torch.device


def _setup(model, train_batch, eval_batch, config: TrainConfig, lin_reference) -> _Run:
    """Check the model and batches, snapshot θ0 and build the anchored step, the gap reference and the Evaluator;
    the returned config has ``kind``, ``n_train`` and ``n_eval`` filled in."""
    check_model(model)
    anchor = snapshot(model)
    if not anchor:
        raise LinftError("model has no trainable parameters: attach LoRA (linft.models.add_lora) first")
    n_labels = num_labels(model)
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
    return _Run(config, model, anchor, train, anchored, evaluate, device)


def _is_logged(config: TrainConfig, logged: set[int] | None, step: int) -> bool:
    if logged is not None:
        return step in logged
    return step % config.log_every == 0 or step == config.steps


def _loop(model: nn.Module, run: _Run) -> tuple[list[dict], list[float] | None, float]:
    """Seed, then log and update for steps 0 … steps; returns the rows, the full-batch objective (None for
    minibatches) and the seconds spent in updates."""
    config, train, anchored = run.config, run.train, run.anchored
    seed_everything(config.seed)
    sampler = MinibatchSampler(config.n_train, config.batch_size, config.seed, device=run.device)
    opt = _optimizer(config, trainable_parameters(model).values())
    scheduler = _scheduler(config, opt)
    logged = set(config.log_steps) | {0, config.steps} if config.log_steps is not None else None

    if sampler.full and config.score_n is not None and config.score_n < config.n_train:
        raise LinftError("score_n scores part of the training set, but full-batch training reads the whole objective "
                         "at every step: drop score_n or pass a batch_size")
    train_trimmed = trim_padding(train) if sampler.full else train
    rows: list[dict] = []
    objective: list[float] | None = [] if sampler.full else None
    update_seconds = 0.0
    desc = f"fine-tune ({config.kind}, {config.loss}/{config.optimizer}, λ={config.lam:g})"
    bar = tqdm(total=config.steps, disable=not config.progress, desc=desc)
    try:
        for step in range(config.steps + 1):
            row = None
            if _is_logged(config, logged, step):
                row = run.evaluate(step)
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
    return rows, objective, update_seconds


def _result(run: _Run, rows: list[dict], objective: list[float] | None, seconds: float,
            update_seconds: float) -> TrainResult:
    config = run.config
    if objective is not None:
        objective.append(rows[-1]["loss"])
    final = {k: v for k, v in rows[-1].items() if k != "pull_frac"}
    final.update(
        R0=rows[0]["task_loss"], steps=config.steps, seconds=seconds,
        seconds_per_step=update_seconds / config.steps if config.steps else float("nan"), kind=config.kind,
    )
    return TrainResult(
        log=pd.DataFrame(rows), final=final, model=run.model, anchor=run.anchor, config=config,
        objective=np.asarray(objective, dtype=np.float64) if objective is not None else None,
    )


# ---------------------------------------------------------------------------------------------- probe


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

    check_model(model)
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
