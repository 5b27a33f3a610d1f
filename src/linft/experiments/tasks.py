"""The set-up every chapter shares: a LoRA-adapted model at θ0 and its tokenized batches, through
:func:`linft.runspec.prepare` (one run, one spec).

The chapters' protocols (chapters 1-4) predate :class:`linft.runspec.RunSpec` and keep their draws, so their
committed numbers stand: the task's split and every sample are drawn with the run's ``seed`` (``split_seed =
seed``) and the held-out examples come from the **validation** split (``heldout_split="validation"``); the kernel
points are the training sample itself (``kernel_points="same"``). New protocols use the test split
(:data:`linft.runspec.HELDOUT_SPLIT`), as ``linft predict`` and the study do.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from linft.runspec import LoraSpec, PreparedRun, RunSpec, prepare
from linft.scales import Scale

__all__ = ["TaskSetup", "chapter_spec", "prepare_chapter", "setup_task"]


def chapter_spec(task: str, cfg: Scale, seed: int = 0, *, n_train: int | None = None, n_heldout: int | None = None,
                 head: str = "trained", targets=None, model: str | None = None) -> RunSpec:
    """The :class:`~linft.runspec.RunSpec` of a chapter's run: ``model`` (default ``cfg.model``) + LoRA of rank
    ``cfg.lora_rank`` on ``targets`` (default ``cfg.lora_targets``, α = 2·rank), ``head`` "trained" | "frozen",
    ``n_train`` (default ``cfg.n_train``) training examples that are also the kernel points, ``n_heldout`` (default
    ``cfg.n_eval``; 0: none) validation examples, ``cfg.max_length`` tokens, everything drawn with ``seed``."""
    targets = targets if targets is not None else cfg.lora_targets
    n_train = cfg.n_train if n_train is None else n_train
    return RunSpec(model=model or cfg.model, task=task, lora=LoraSpec(targets=targets, rank=cfg.lora_rank),
                   head=head, n_train=n_train, n_kernel=n_train, kernel_points="same",
                   n_heldout=cfg.n_eval if n_heldout is None else n_heldout, max_length=cfg.max_length, seed=seed,
                   split_seed=seed, heldout_split="validation")


def prepare_chapter(task: str, cfg: Scale, seed: int = 0, *, device="cpu", **options) -> PreparedRun:
    """:func:`linft.runspec.prepare` of :func:`chapter_spec` (``options`` as there), on ``device`` (the CPU by
    default, where the chapters' protocols have always run)."""
    return prepare(chapter_spec(task, cfg, seed, **options), device=device)


@dataclass
class TaskSetup:
    """What a fine-tuning experiment on one task starts from.

    ``model``: the LoRA-adapted classifier at θ0 (copy it before training); ``train``/``eval``: batches
    ``{"input_ids", "attention_mask": [N, L], "labels": [N]}`` of ``cfg.n_train`` training and ``cfg.n_eval``
    validation examples (at most the split), truncated to ``cfg.max_length`` tokens.
    """

    task: str
    model: nn.Module
    tokenizer: object
    train: dict
    eval: dict
    num_labels: int
    seed: int


def setup_task(task: str, cfg: Scale, seed: int = 0) -> TaskSetup:
    """``cfg.model`` with a ``task``-sized trained head and LoRA, seeded train/validation batches
    (:func:`prepare_chapter`)."""
    run = prepare_chapter(task, cfg, seed)
    return TaskSetup(task, run.model, run.tokenizer, run.train, run.heldout, run.num_labels, seed)
