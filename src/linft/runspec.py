"""One run, one specification: what a run fine-tunes, where its kernel points come from, and one ``prepare``.

A :class:`RunSpec` names everything that determines a run's starting point, checked once when it is built (peft's
``LoraConfig`` is the model): the model, the task, the LoRA configuration (:class:`LoraSpec`), the head policy,
**the kernel points separately from the fine-tuning set**, the held-out split and sizes, and the seeds.
:func:`prepare` turns a spec into the model at θ0 and its three batches.

Where the kernel points come from (``kernel_points``):

- ``"train_prefix"`` — the first ``n_kernel`` examples of the fine-tuning sample (the reference study's protocol:
  its kernel is over "the first 32 training examples", then it fine-tunes on the whole training set). Smaller
  calibration sizes are prefixes of the same sample, so κ at N = 16 … 256 come from one kernel, sliced.
- ``"same"`` — the kernel points *are* the fine-tuning set (``n_kernel == n_train``): the few-shot variant of
  chapter 5's first study, where the kernel is over exactly the examples that are then memorised.

The held-out split is the task's **test** split (:data:`HELDOUT_SPLIT`; ``heldout_split="validation"`` only for the
chapters' earlier protocols), drawn with ``split_seed`` from the split the task makes with ``split_seed`` (0 by
default, fixed across seeds, so every run of a study is scored on the same examples and
configurations are compared pairwise); the run's ``seed`` draws the fine-tuning sample, the head, LoRA A and the
minibatch order. ``n_heldout`` is capped at the split's size (the cap is recorded in the prepared run); 0 draws no
held-out batch. A study whose runs each split the task with their own seed (chapter 5's few-shot study) sets
``split_seed = seed``.

``task`` is a registry key (``linft.data.TASKS``) or the path of the user's data
(:func:`linft.userdata.resolve_task`, columns ``text_col`` and ``label_col``).

A spec round-trips through a flat row of strings (:meth:`RunSpec.as_row` / :meth:`RunSpec.from_row`), which is how
the study CSV stores it.
"""

from __future__ import annotations

import numbers
import time
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

from linft import LinftError, check_choice

if TYPE_CHECKING:  # no torch import at module level: the CLI's parser reads HEADS from here
    from torch import nn

__all__ = ["LoraSpec", "RunSpec", "PreparedRun", "prepare", "HEADS", "KERNEL_POINTS", "HELDOUT_SPLIT",
           "HELDOUT_SPLITS"]

#: the classifier head during fine-tuning: kept at its seeded initialization, or trained with the LoRA matrices
HEADS = ("frozen", "trained")
#: where the kernel points come from (see the module docstring)
KERNEL_POINTS = ("train_prefix", "same")
#: the one held-out split every protocol evaluates on (``linft predict``, ``linft layers``, the study)
HELDOUT_SPLIT = "test"
#: the held-out splits a spec may name: :data:`HELDOUT_SPLIT`, and "validation" only for the chapters' protocols of
#: chapters 1-4, which predate this spec and keep their draws (their committed numbers come from that split)
HELDOUT_SPLITS = (HELDOUT_SPLIT, "validation")


#: fields that :meth:`RunSpec.as_row` writes only when they are not their defaults
_OPTIONAL_COLUMNS = ("heldout_split", "text_col", "label_col")


def _positive(value, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < minimum:
        raise LinftError(f"run spec: {name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class LoraSpec:
    """A LoRA configuration: ``targets`` (aliases or sets of :func:`linft.models.add_lora`, e.g. ``("q", "v")``),
    ``layers`` (block indices, None = every block), ``rank`` r, ``alpha`` (None: 2·r), ``dropout`` (0 by default:
    the kernel and the fine-tuning then see the same deterministic function)."""

    targets: tuple[str, ...] = ("q", "v")
    layers: tuple[int, ...] | None = None
    rank: int = 8
    alpha: float | None = None
    dropout: float = 0.0

    def __post_init__(self):
        targets = (self.targets,) if isinstance(self.targets, str) else tuple(self.targets)
        if not targets or not all(isinstance(t, str) and t.strip() for t in targets):
            raise LinftError(f"run spec: LoRA targets must be non-empty names such as ('q', 'v'), got {self.targets!r}")
        object.__setattr__(self, "targets", targets)
        if self.layers is not None:
            layers = (self.layers,) if isinstance(self.layers, numbers.Integral) else tuple(self.layers)
            if not layers or not all(isinstance(i, numbers.Integral) and not isinstance(i, bool) for i in layers):
                raise LinftError(f"run spec: LoRA layers must be block indices or None, got {self.layers!r}")
            object.__setattr__(self, "layers", tuple(int(i) for i in layers))
        object.__setattr__(self, "rank", _positive(self.rank, "LoRA rank"))
        if self.alpha is not None:
            if isinstance(self.alpha, bool) or not isinstance(self.alpha, numbers.Real) or not self.alpha > 0:
                raise LinftError(f"run spec: LoRA alpha must be a positive number or None, got {self.alpha!r}")
            object.__setattr__(self, "alpha", float(self.alpha))
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, numbers.Real) or not 0 <= self.dropout < 1:
            raise LinftError(f"run spec: LoRA dropout must be a number in [0, 1), got {self.dropout!r}")
        object.__setattr__(self, "dropout", float(self.dropout))


@dataclass(frozen=True)
class RunSpec:
    """Everything that determines a run's start; checked when built (bad fields raise one-line
    :class:`linft.LinftError`).

    ``model``: a shipped key, hub id or folder; ``task``: a task key; ``lora``: :class:`LoraSpec`; ``head``:
    "frozen" | "trained"; ``n_train``: fine-tuning examples (drawn from the train split with ``seed``);
    ``n_kernel``: kernel points; ``kernel_points``: "train_prefix" | "same" (then ``n_kernel`` must equal
    ``n_train``); ``n_heldout``: held-out examples of ``heldout_split`` (capped at its size; 0: none);
    ``max_length``: tokens; ``seed``: fine-tuning sample, head, LoRA A, batch order; ``split_seed``: the task's
    train/validation/test split and the held-out sample; ``heldout_split``: :data:`HELDOUT_SPLIT` (or "validation"
    for the chapters' earlier protocols); ``text_col``/``label_col``: the columns of a user's data file.
    """

    model: str = "minilm"
    task: str = "mr"
    lora: LoraSpec = LoraSpec()
    head: str = "trained"
    n_train: int = 2048
    n_kernel: int = 32
    kernel_points: str = "train_prefix"
    n_heldout: int = 1000
    max_length: int = 64
    seed: int = 0
    split_seed: int = 0
    heldout_split: str = HELDOUT_SPLIT
    text_col: str = "text"
    label_col: str = "label"

    def __post_init__(self):
        if not isinstance(self.lora, LoraSpec):
            raise LinftError(f"run spec: lora must be a linft.runspec.LoraSpec, got {type(self.lora).__name__}")
        check_choice("head", self.head, HEADS)
        check_choice("kernel_points", self.kernel_points, KERNEL_POINTS)
        check_choice("heldout_split", self.heldout_split, HELDOUT_SPLITS)
        for name, minimum in (("n_train", 1), ("n_kernel", 1), ("n_heldout", 0), ("max_length", 2), ("seed", 0),
                              ("split_seed", 0)):
            object.__setattr__(self, name, _positive(getattr(self, name), name, minimum))
        if self.kernel_points == "train_prefix" and self.n_kernel > self.n_train:
            raise LinftError(f"run spec: n_kernel = {self.n_kernel} kernel points cannot be a prefix of n_train = "
                             f"{self.n_train} fine-tuning examples: lower n_kernel or raise n_train")
        if self.kernel_points == "same" and self.n_kernel != self.n_train:
            raise LinftError(f"run spec: kernel_points='same' means the kernel is over the fine-tuning set, so "
                             f"n_kernel ({self.n_kernel}) must equal n_train ({self.n_train})")
        from linft import data, userdata

        if not isinstance(self.task, str) or not self.task:
            raise LinftError(f"run spec: task must be a registry key or a path, got {self.task!r}")
        if self.task not in data.TASKS and not userdata.looks_like_path(self.task):
            raise LinftError(f"run spec: task {self.task!r} is unknown: use one of {tuple(data.TASKS)}")

    @property
    def kernel_params(self) -> str:
        """The ``params=`` of :func:`linft.ntk.empirical_ntk` for the kernel of what is trained."""
        return "trainable" if self.head == "trained" else "lora"

    def as_row(self) -> dict[str, str]:
        """The spec as flat canonical strings (layers "all" or "0,5", targets "q,v", alpha "" for None).

        ``heldout_split``, ``text_col`` and ``label_col`` appear only when they differ from their defaults, so the
        study CSV's key columns (every spec there has the defaults) stay as they were; :meth:`from_row` reads a
        missing one as its default."""
        row = {}
        for f in fields(self):
            if f.name == "lora" or (f.name in _OPTIONAL_COLUMNS and getattr(self, f.name) == f.default):
                continue
            row[f.name] = str(getattr(self, f.name))
        lora = self.lora
        row.update(targets=",".join(lora.targets),
                   layers="all" if lora.layers is None else ",".join(str(i) for i in lora.layers),
                   rank=str(lora.rank), alpha="" if lora.alpha is None else repr(lora.alpha),
                   dropout=repr(lora.dropout))
        return row

    @classmethod
    def from_row(cls, row) -> RunSpec:
        """The spec back from :meth:`as_row`'s strings (extra keys in ``row`` are ignored)."""
        try:
            lora = LoraSpec(targets=tuple(str(row["targets"]).split(",")),
                            layers=None if str(row["layers"]) == "all" else
                            tuple(int(i) for i in str(row["layers"]).split(",")),
                            rank=int(row["rank"]), alpha=None if str(row.get("alpha", "")) in ("", "nan") else
                            float(row["alpha"]), dropout=float(row.get("dropout", 0.0)))
            ints = ("n_train", "n_kernel", "n_heldout", "max_length", "seed", "split_seed")
            values = {name: int(row[name]) for name in ints}
        except (KeyError, ValueError) as err:
            raise LinftError(f"run spec: a row lacks or garbles {err}: it was not written by RunSpec.as_row") from None
        return cls(model=str(row["model"]), task=str(row["task"]), lora=lora, head=str(row["head"]),
                   kernel_points=str(row["kernel_points"]), heldout_split=str(row.get("heldout_split", HELDOUT_SPLIT)),
                   text_col=str(row.get("text_col", "text")), label_col=str(row.get("label_col", "label")), **values)


@dataclass
class PreparedRun:
    """A spec made concrete: the model at θ0 and its batches.

    ``model``: the peft model (LoRA B = 0; the head trainable iff ``spec.head == "trained"``), on the device
    :func:`linft.device.pick_device` chose; ``kernel``: ``{"input_ids", "attention_mask": [N_k, L], "labels":
    [N_k]}``, the kernel points; ``train``: the same for the N fine-tuning examples (``kernel`` is its first N_k
    rows, or all of it); ``heldout``: the M held-out examples (M = min(n_heldout, held-out split size); None when
    ``n_heldout`` is 0); ``description``: the task in one line; ``seconds``: wall time of :func:`prepare`.
    """

    spec: RunSpec
    model: nn.Module
    tokenizer: object
    kernel: dict
    train: dict
    heldout: dict | None
    num_labels: int
    seconds: float
    description: str = ""

    @property
    def n_heldout(self) -> int:
        """M, the held-out examples actually drawn (the spec's ``n_heldout`` capped at the split's size)."""
        return 0 if self.heldout is None else int(self.heldout["labels"].shape[0])

    @property
    def layers(self) -> tuple[int, ...]:
        """The adapted blocks (indices of the blocks that hold LoRA matrices)."""
        from linft import models

        names = {models.layer_index(name) for name, _ in self.model.named_parameters() if "lora_" in name}
        return tuple(sorted(names - {None}))


def prepare(spec: RunSpec, *, device=None) -> PreparedRun:
    """The model at θ0 and the kernel, fine-tuning and held-out batches of ``spec`` (see :class:`PreparedRun`).

    The fine-tuning sample is a stratified draw of ``n_train`` examples of the train split with ``spec.seed``; the
    kernel points are its first ``n_kernel`` (``"train_prefix"``) or all of it (``"same"``). Raises
    :class:`linft.LinftError` when the split is smaller than ``n_train``.
    """
    from linft import data, models
    from linft.batches import take, to_device
    from linft.device import pick_device
    from linft.userdata import resolve_task

    start = time.perf_counter()
    splits, num_labels, description = resolve_task(spec.task, spec.text_col, spec.label_col, spec.split_seed)
    if len(splits["train"]) < spec.n_train:
        raise LinftError(f"run spec: task {spec.task!r} has {len(splits['train'])} training examples, fewer than "
                         f"n_train = {spec.n_train}: lower n_train")
    device = pick_device() if device is None else device
    loaded = models.load(spec.model, num_labels=num_labels, seed=spec.seed, device=device)
    lora = spec.lora
    model = models.add_lora(loaded.model, list(lora.targets), rank=lora.rank, alpha=lora.alpha,
                            layers=None if lora.layers is None else list(lora.layers), dropout=lora.dropout,
                            seed=spec.seed, train_head=spec.head == "trained")

    def batch(ds):
        return to_device(data.as_batch(data.tokenize(ds, loaded.tokenizer, spec.max_length)), device)

    train = batch(data.subsample(splits["train"], spec.n_train, seed=spec.seed))
    heldout = None
    if spec.n_heldout:
        split = splits[spec.heldout_split]
        heldout = batch(data.subsample(split, min(spec.n_heldout, len(split)), seed=spec.split_seed))
    kernel = take(train, spec.n_kernel)
    return PreparedRun(spec=spec, model=model, tokenizer=loaded.tokenizer, kernel=kernel, train=train,
                       heldout=heldout, num_labels=num_labels, seconds=time.perf_counter() - start,
                       description=description)
