"""One fine-tuning loop for the real model and its linearization, with anchoring and linearization-gap logging.

:func:`fine_tune` trains a model from :mod:`linft.models` (LoRA + head) or a :class:`linft.linearize.LinearizedModel`
in place, and logs per logged step:

- ``loss`` (task + penalty), ``task_loss`` (R), ``penalty`` ((λ/2)‖θ − θ0‖²) and ``train_acc``, all on the *whole*
  training batch; ``eval_loss`` and ``eval_acc`` on the eval batch;
- ``drift_total`` = ‖θ − θ0‖ and ``drift_layer0`` … ``drift_head`` per layer group;
- the same-parameters linearization gap on the first ``gap_n`` train and eval examples: ``gap_train`` =
  ‖f(θ) − f_lin(θ)‖_F, ``rel_gap_train`` = gap / ‖f(θ)‖_F, ``agree_train`` (argmax agreement), and ``*_eval``.
  Both sides are at the current θ of the model being trained. For the real model, f_lin comes from
  ``lin_reference`` (or a linearization built at the start). For a linearized model, f comes from its
  ``real_logits``. This is the quantity the anchored bound controls.

Two standard settings:

- theory: ``loss="mse", optimizer="gd"``, full batch (``batch_size=None``);
- practice: ``loss="ce", optimizer="adamw", batch_size=16``.

The model is kept in eval mode (dropout off), so the real and the linear model are the same function at θ0 and runs
are deterministic. Same seed, same inputs and the same starting model give an identical log.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from linft import LinftError, check_choice
from linft.device import seed_everything
from linft.linearize import LinearizedModel, _gap_numbers, logits_of, trainable_parameters
from linft.regularize import GRANULARITIES, AnchoredStep, drift, snapshot

__all__ = ["fine_tune", "TrainResult", "task_loss", "LOSSES", "OPTIMIZERS", "PENALTIES", "MSE_TARGETS"]

LOSSES = ("ce", "mse")
OPTIMIZERS = ("adamw", "gd")
PENALTIES = ("loss", "decoupled")
MSE_TARGETS = ("onehot", "logit_diff")


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
        anchor: θ0 by name (the trainable tensors at the start).
        config: the arguments of the run.
    """

    log: pd.DataFrame
    final: dict
    model: nn.Module
    anchor: dict = field(repr=False)
    config: dict = field(default_factory=dict)


def task_loss(logits: torch.Tensor, labels: torch.Tensor, loss: str = "ce", mse_target: str = "onehot") -> torch.Tensor:
    """Mean task loss over the batch (a scalar).

    - ``"ce"``: cross-entropy of the softmax of ``logits`` [N, C] (nats per example).
    - ``"mse"`` with ``mse_target="onehot"``: (1/N) Σ_i ½‖f(x_i) − e_{y_i}‖², with one-hot targets e_y ∈ R^C.
    - ``"mse"`` with ``mse_target="logit_diff"`` (binary tasks only): (1/N) Σ_i ½(f_1(x_i) − f_0(x_i) − t_i)², with
      t_i = +1 for label 1 and −1 for label 0. This is the scalar-output setting of NTK theory.
    """
    if loss == "ce":
        return F.cross_entropy(logits, labels)
    if loss == "mse":
        if mse_target == "onehot":
            target = F.one_hot(labels, logits.shape[-1]).to(logits.dtype)
            return 0.5 * (logits - target).pow(2).sum(-1).mean()
        if mse_target == "logit_diff":
            if logits.shape[-1] != 2:
                raise LinftError(f"mse_target='logit_diff' needs a 2-class head, this one has {logits.shape[-1]}")
            target = labels.to(logits.dtype) * 2 - 1
            return 0.5 * (logits[:, 1] - logits[:, 0] - target).pow(2).mean()
        raise LinftError(f"unknown mse_target {mse_target!r}: use one of {MSE_TARGETS}")
    raise LinftError(f"unknown loss {loss!r}: use one of {LOSSES}")


def _num_labels(model: nn.Module) -> int | None:
    base = model.model if isinstance(model, LinearizedModel) else model
    n = getattr(getattr(base, "config", None), "num_labels", None)
    return int(n) if n is not None else None


def _check_batch(batch, name: str, num_labels: int | None) -> dict:
    if not isinstance(batch, Mapping):
        raise LinftError(
            f"{name} must be a dict with input_ids, attention_mask, labels (linft.data.as_batch), "
            f"got {type(batch).__name__}"
        )
    missing = [k for k in ("input_ids", "labels") if k not in batch]
    if missing:
        raise LinftError(
            f"{name} lacks {missing}: build it with linft.data.as_batch (keys input_ids, attention_mask, labels)"
        )
    ids = batch["input_ids"]
    if not isinstance(ids, torch.Tensor) or ids.dim() != 2:
        raise LinftError(f"{name}['input_ids'] must be a [N, L] tensor: tokenize with padding to a fixed length")
    n = ids.shape[0]
    if n == 0:
        raise LinftError(f"{name} is empty (0 examples): pass at least one example")
    mask = batch.get("attention_mask")
    if mask is None:
        mask = torch.ones_like(ids)
    if mask.shape != ids.shape:
        raise LinftError(f"{name}['attention_mask'] shape {tuple(mask.shape)} != input_ids shape {tuple(ids.shape)}")
    labels = torch.as_tensor(batch["labels"])
    if labels.shape != (n,):
        raise LinftError(f"{name}['labels'] must have shape [{n}] (one per example), got {tuple(labels.shape)}")
    if labels.is_floating_point():
        raise LinftError(f"{name}['labels'] must be integer class ids, got dtype {labels.dtype}")
    labels = labels.long()
    if labels.min().item() < 0:
        raise LinftError(f"{name} has negative labels ({labels.min().item()}): labels must be class ids 0..C-1")
    if num_labels is not None and labels.max().item() >= num_labels:
        raise LinftError(
            f"{name} has label {labels.max().item()} but the head has {num_labels} outputs: "
            f"load the model with num_labels >= {labels.max().item() + 1}"
        )
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def _forward(model: nn.Module, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    if isinstance(model, LinearizedModel):
        return model(ids, mask)
    return logits_of(model(input_ids=ids, attention_mask=mask))


@torch.no_grad()
def _chunked(fn, batch: dict, chunk: int, n: int | None = None) -> torch.Tensor:
    ids, mask = batch["input_ids"], batch["attention_mask"]
    if n is not None:
        ids, mask = ids[:n], mask[:n]
    return torch.cat([fn(ids[i : i + chunk], mask[i : i + chunk]) for i in range(0, ids.shape[0], chunk)])


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
    seed: int = 0,
    log_every: int = 1,
    lin_reference: LinearizedModel | None = None,
    track_gap: bool = True,
    gap_n: int | None = 64,
    mse_target: str = "onehot",
    eval_chunk: int = 64,
    progress: bool = True,
) -> TrainResult:
    """Fine-tune ``model`` (real or :class:`~linft.linearize.LinearizedModel`) in place and log the run.

    Args:
        model: a classifier whose trainable tensors are trained (e.g. ``add_lora(load("minilm", 2).model)``), or a
            LinearizedModel (its θ is trained). Trained **in place**: pass ``copy.deepcopy(model)`` to keep the
            start (a LinearizedModel: build a new one, or ``lin.reset()``).
        train_batch: ``{"input_ids": [N, L], "attention_mask": [N, L], "labels": [N]}`` (``linft.data.as_batch``).
        eval_batch: same format, or None (no eval columns).
        loss: ``"ce"`` (cross-entropy) or ``"mse"`` (see :func:`task_loss` and ``mse_target``).
        optimizer: ``"adamw"`` (``torch.optim.AdamW`` with weight_decay=0, so λ is the only pull) or ``"gd"``
            (plain SGD, no momentum; gradient descent when the batch is full).
        lr: learning rate (> 0).
        steps: number of optimizer updates (≥ 0). Rows are logged at steps 0, log_every, 2·log_every, …, steps.
            Step k is the state after k updates.
        batch_size: minibatch size, drawn without replacement in seeded epochs; None (or ≥ N) means the full batch.
        lam: anchoring strength λ ≥ 0 (see :mod:`linft.regularize`). With λ = 0 the loop does exactly plain
            training.
        selective: pull a unit toward θ0 only when ∇R·(θ − θ0) ≥ 0.
        penalty: ``"loss"`` (gradient λ(θ − θ0) added to the task gradient before the step) or ``"decoupled"``
            (θ ← θ − lr·λ(θ − θ0) after the step; needs lr·λ ≤ 1).
        granularity: unit of the selective test: ``"tensor"``, ``"layer"`` or ``"global"``.
        seed: seeds torch and the minibatch order.
        log_every: log every this many steps (the last step is always logged).
        lin_reference: for a real model, a LinearizedModel wrapping the same starting model, used for the gap
            columns. If it is None and ``track_gap`` is set, one is built at the start. Ignored for a LinearizedModel,
            which is its own reference.
        track_gap: log the same-parameters gap (costs one jvp over 2·gap_n examples per logged step for the real
            model, one forward for the linearized one).
        gap_n: number of leading train and eval examples used for the gap columns (None: all).
        mse_target: ``"onehot"`` or ``"logit_diff"`` (binary ±1 targets on f_1 − f_0); see :func:`task_loss`.
        eval_chunk: examples per forward pass when evaluating (memory bound).
        progress: show a tqdm progress bar.

    Returns:
        :class:`TrainResult`.

    Costs (MiniLM, LoRA q, v r=8 + head, batch 16 × 64 tokens, CPU): one update of the linearized model costs
    2.1–2.9× an update of the real model (the table is in :mod:`linft.linearize`). A logged step adds a forward
    pass over the whole train and eval batches and, with ``track_gap``, one jvp over 2·gap_n examples for the
    real model (a forward pass for the linearized one). Raise ``log_every`` for long runs.

    With ``selective`` and ``penalty="decoupled"``, the selective test uses ∇R at the pre-step θ (still in
    ``.grad``) and θ after the optimizer step. With ``penalty="loss"`` both are at the pre-step θ.
    """
    # ---------------------------------------------------------------- validate
    check_choice("loss", loss, LOSSES)
    check_choice("optimizer", optimizer, OPTIMIZERS)
    check_choice("penalty", penalty, PENALTIES)
    check_choice("granularity", granularity, GRANULARITIES)
    check_choice("mse_target", mse_target, MSE_TARGETS)
    if not isinstance(lr, (int, float)) or not lr > 0 or not math.isfinite(lr):
        raise LinftError(f"lr must be a positive number, got {lr!r}")
    if not isinstance(steps, int) or steps < 0:
        raise LinftError(f"steps must be an integer >= 0, got {steps!r}")
    if not isinstance(log_every, int) or log_every < 1:
        raise LinftError(f"log_every must be an integer >= 1, got {log_every!r}")
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise LinftError(f"batch_size must be a positive integer or None (full batch), got {batch_size!r}")
    if gap_n is not None and (not isinstance(gap_n, int) or gap_n < 1):
        raise LinftError(f"gap_n must be a positive integer or None (all examples), got {gap_n!r}")
    if not isinstance(model, nn.Module):
        raise LinftError(f"model must be an nn.Module (a linft model or a LinearizedModel), got {type(model).__name__}")
    anchor = snapshot(model)
    if not anchor:
        raise LinftError("model has no trainable parameters: attach LoRA (linft.models.add_lora) first")
    # checks λ (and lr·λ for the decoupled pull) up front
    anchored = AnchoredStep(model, anchor, lam, lr=lr, selective=selective, granularity=granularity)
    if penalty == "decoupled" and anchored.lam * lr > 1:
        raise LinftError(f"decoupled pull lr·λ = {lr * anchored.lam:g} > 1 overshoots the anchor: lower lr or λ")
    n_labels = _num_labels(model)
    if loss == "mse" and mse_target == "logit_diff" and n_labels not in (None, 2):
        raise LinftError(f"mse_target='logit_diff' needs a 2-class head, this model has {n_labels}: use 'onehot'")
    train = _check_batch(train_batch, "train_batch", n_labels)
    evalb = _check_batch(eval_batch, "eval_batch", n_labels) if eval_batch is not None else None
    device = next(iter(anchor.values())).device  # batches follow the model (CPU or GPU)
    train = {k: v.to(device) for k, v in train.items()}
    evalb = {k: v.to(device) for k, v in evalb.items()} if evalb is not None else None

    is_lin = isinstance(model, LinearizedModel)
    reference = None
    if track_gap:
        if is_lin:
            reference = model
        else:
            if lin_reference is not None:
                if not isinstance(lin_reference, LinearizedModel):
                    raise LinftError(f"lin_reference must be a LinearizedModel, got {type(lin_reference).__name__}")
                if lin_reference.names != list(anchor):
                    raise LinftError("lin_reference linearizes different tensors than model trains: wrap the same model")
                far = [
                    n for n, t0 in lin_reference.theta0.items() if not torch.allclose(t0, anchor[n], atol=1e-6, rtol=0)
                ]
                if far:
                    raise LinftError(
                        f"lin_reference's θ0 differs from model's starting parameters (e.g. {far[0]!r}): "
                        "wrap the same starting model (LinearizedModel(model) before training)"
                    )
                reference = lin_reference
            else:
                reference = LinearizedModel(model)
    model.eval()  # dropout off: same deterministic function as the linearization

    config = dict(
        kind="linearized" if is_lin else "real", loss=loss, optimizer=optimizer, lr=lr, steps=steps,
        batch_size=batch_size, lam=anchored.lam, selective=selective, penalty=penalty, granularity=granularity,
        seed=seed, log_every=log_every, track_gap=track_gap, gap_n=gap_n, mse_target=mse_target,
        n_train=int(train["labels"].shape[0]), n_eval=int(evalb["labels"].shape[0]) if evalb else 0,
    )

    # ---------------------------------------------------------------- setup
    seed_everything(seed)
    generator = torch.Generator().manual_seed(seed)
    params = list(trainable_parameters(model).values())
    if optimizer == "adamw":
        opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    else:
        opt = torch.optim.SGD(params, lr=lr)
    n_train = train["labels"].shape[0]
    full = batch_size is None or batch_size >= n_train
    order: list[int] = []

    def next_indices() -> torch.Tensor | None:
        if full:
            return None
        nonlocal order
        if len(order) < batch_size:
            order += torch.randperm(n_train, generator=generator).tolist()
        idx, order = order[:batch_size], order[batch_size:]
        return torch.tensor(idx, device=device)

    forward = lambda ids, mask: _forward(model, ids, mask)  # noqa: E731

    def evaluate(step: int) -> dict:
        row: dict = {"step": step}
        f_train = _chunked(forward, train, eval_chunk)
        r = task_loss(f_train, train["labels"], loss, mse_target).item()
        pen = anchored.penalty()
        row.update(loss=r + pen, task_loss=r, penalty=pen)
        row["train_acc"] = (f_train.argmax(-1) == train["labels"]).double().mean().item()
        f_eval = None
        if evalb is not None:
            f_eval = _chunked(forward, evalb, eval_chunk)
            row["eval_loss"] = task_loss(f_eval, evalb["labels"], loss, mse_target).item()
            row["eval_acc"] = (f_eval.argmax(-1) == evalb["labels"]).double().mean().item()
        for key, value in drift(model, anchor).items():
            row[f"drift_{key}"] = value
        if reference is not None:
            for split, batch, logits in (("train", train, f_train), ("eval", evalb, f_eval)):
                if batch is None:
                    continue
                k = logits.shape[0] if gap_n is None else min(gap_n, logits.shape[0])
                if is_lin:
                    other = _chunked(lambda i, m: reference.real_logits(i, m), batch, eval_chunk, k)
                    g = _gap_numbers(other, logits[:k])
                else:
                    other = _chunked(lambda i, m: reference(i, m, params=model), batch, eval_chunk, k)
                    g = _gap_numbers(logits[:k], other)
                row[f"gap_{split}"] = g["gap"]
                row[f"rel_gap_{split}"] = g["rel_gap"]
                row[f"agree_{split}"] = g["agreement"]
        row["pull_frac"] = float("nan")
        return row

    # ---------------------------------------------------------------- loop
    rows: list[dict] = []
    start = time.perf_counter()
    update_seconds = 0.0
    from tqdm import tqdm

    bar = tqdm(total=steps, disable=not progress, desc=f"fine-tune ({config['kind']}, {loss}/{optimizer}, λ={anchored.lam:g})")
    try:
        for step in range(steps + 1):
            row = None
            if step % log_every == 0 or step == steps:
                row = evaluate(step)
                rows.append(row)
            if step == steps:
                break
            t0 = time.perf_counter()
            idx = next_indices()
            ids, mask, labels = train["input_ids"], train["attention_mask"], train["labels"]
            if idx is not None:
                ids, mask, labels = ids[idx], mask[idx], labels[idx]
            opt.zero_grad(set_to_none=True)
            r = task_loss(forward(ids, mask), labels, loss, mse_target)
            if not torch.isfinite(r):
                raise LinftError(f"training diverged at step {step} (task loss {r.item()}): lower lr (now {lr:g})")
            r.backward()
            if penalty == "loss":
                pulled = anchored.add_to_grad()
            opt.step()
            if penalty == "decoupled":
                pulled = anchored.step()
            update_seconds += time.perf_counter() - t0
            if row is not None and pulled:
                row["pull_frac"] = sum(pulled.values()) / len(pulled)
            bar.update(1)
            bar.set_postfix(batch_loss=f"{r.item():.4f}")
    finally:
        bar.close()
    seconds = time.perf_counter() - start

    log = pd.DataFrame(rows)
    final = {k: v for k, v in rows[-1].items() if k != "pull_frac"}
    final.update(
        R0=rows[0]["task_loss"], steps=steps, seconds=seconds,
        seconds_per_step=update_seconds / steps if steps else float("nan"), kind=config["kind"],
    )
    return TrainResult(log=log, final=final, model=model, anchor=anchor, config=config)

