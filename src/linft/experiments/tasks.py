"""The set-up every chapter shares: a LoRA-adapted model and tokenized train/eval batches of a task."""

from __future__ import annotations

from dataclasses import dataclass

import datasets
from torch import nn

from linft import data, models
from linft.scales import Scale

__all__ = ["TaskSetup", "batch_of", "lora_model", "setup_task", "task_sample"]


def batch_of(ds: datasets.Dataset, tokenizer, max_length: int) -> dict:
    """Tokenize ``ds`` (padded to ``max_length``) into ``{"input_ids", "attention_mask": [N, L], "labels": [N]}``."""
    return data.as_batch(data.tokenize(ds, tokenizer, max_length))


def task_sample(task: str, n: int, seed: int = 0, split: str = "train") -> datasets.Dataset:
    """A stratified sample of ``n`` examples of ``task``'s ``split``, drawn with ``seed``."""
    return data.subsample(data.load_task(task, seed=seed)[split], n, seed=seed)


def lora_model(cfg: Scale, num_labels: int, seed: int = 0, *, targets=None, model: str | None = None) -> nn.Module:
    """``cfg.model`` (or ``model``) with a fresh seeded ``num_labels``-way head and LoRA of rank ``cfg.lora_rank``
    on ``targets`` (default ``cfg.lora_targets``), α = 2·rank, B = 0, head trainable."""
    base = models.load(model or cfg.model, num_labels=num_labels, seed=seed).model
    return models.add_lora(base, targets if targets is not None else cfg.lora_targets, rank=cfg.lora_rank, seed=seed)


@dataclass
class TaskSetup:
    """What a fine-tuning experiment on one task starts from.

    ``model``: the LoRA-adapted classifier at θ0 (copy it before training); ``train``/``eval``: batches
    ``{"input_ids", "attention_mask": [N, L], "labels": [N]}`` of ``cfg.n_train`` training and ``cfg.n_eval``
    validation examples, truncated to ``cfg.max_length`` tokens.
    """

    task: str
    model: nn.Module
    tokenizer: object
    train: dict
    eval: dict
    num_labels: int
    seed: int


def setup_task(task: str, cfg: Scale, seed: int = 0) -> TaskSetup:
    """Load ``cfg.model`` with a ``task``-sized head, attach LoRA, tokenize seeded train/validation samples."""
    splits = data.load_task(task, seed=seed)
    num_labels = len(data.get_task(task).label_names)
    loaded = models.load(cfg.model, num_labels=num_labels, seed=seed)
    train = batch_of(data.subsample(splits["train"], cfg.n_train, seed=seed), loaded.tokenizer, cfg.max_length)
    evalb = batch_of(data.subsample(splits["validation"], cfg.n_eval, seed=seed), loaded.tokenizer, cfg.max_length)
    model = models.add_lora(loaded.model, cfg.lora_targets, rank=cfg.lora_rank, seed=seed)
    return TaskSetup(task, model, loaded.tokenizer, train, evalb, num_labels, seed)
