"""Chapter 0 (models and tasks): example texts, token lengths, model and LoRA sizes, a fine-tuning sanity run."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import pandas as pd

from linft import data, models
from linft.device import seed_everything
from linft.experiments.tasks import setup_task
from linft.scales import Scale
from linft.train import fine_tune

__all__ = ["LORA_TARGET_CHOICES", "example_rows", "token_lengths", "model_summary", "lora_sizes", "sanity_run",
           "SanityRun"]

#: LoRA target sets compared in chapter 0, by label (architecture-aware aliases of :mod:`linft.models`).
LORA_TARGET_CHOICES = {
    "query, value": ("q", "v"),
    "query, key, value": ("q", "k", "v"),
    "attention output": ("o",),
    "FFN in + out": ("ffn_in", "ffn_out"),
    "all of the above": "all",
}


def example_rows(tasks, seed: int = 0, n: int = 3, width: int = 160) -> pd.DataFrame:
    """``n`` seeded examples per task, texts cut to ``width`` characters; index (task, label), column text."""
    rows = []
    for key in tasks:
        for text, label in data.examples(key, n=n, seed=seed):
            rows.append({"task": key, "label": label, "text": text[:width] + ("…" if len(text) > width else "")})
    return pd.DataFrame(rows).set_index(["task", "label"])


def token_lengths(tasks, tokenizer, max_length: int, seed: int = 0, max_examples: int = 2000):
    """Token counts of up to ``max_examples`` training texts per task.

    Returns ``(lengths, truncated)``: a tidy DataFrame (task, length) and {task: fraction longer than max_length}.
    """
    frames, truncated = [], {}
    for key in tasks:
        train = data.load_task(key, seed=seed)["train"]
        texts = data.column(data.subsample(train, min(max_examples, len(train)), seed=seed, stratified=False), "text")
        counts = [len(ids) for ids in tokenizer(texts, add_special_tokens=True, verbose=False)["input_ids"]]
        frames.append(pd.DataFrame({"task": key, "length": counts}))
        truncated[key] = sum(c > max_length for c in counts) / len(counts)
    return pd.concat(frames, ignore_index=True), truncated


def model_summary(keys, seed: int = 0) -> dict:
    """{model key: architecture facts, parameter counts and load seconds}."""
    summary = {}
    for key in keys:
        start = time.perf_counter()
        base = models.load(key, num_labels=2, seed=seed).model
        summary[key] = {**models.architecture_summary(base), **models.count_parameters(base),
                        "load_s": round(time.perf_counter() - start, 1)}
    return summary


def lora_sizes(model: str, rank: int, choices: dict | None = None) -> pd.DataFrame:
    """LoRA and head parameter counts per target set (rows: the labels of ``choices``)."""
    rows = []
    for label, targets in (choices or LORA_TARGET_CHOICES).items():
        counts = models.count_parameters(models.add_lora(models.load(model, num_labels=2).model, targets, rank=rank))
        rows.append({"LoRA targets": label, "rank": rank, "LoRA params": counts["lora"],
                     "head params": counts["head"], "share of model": f"{counts['lora'] / counts['total']:.3%}"})
    return pd.DataFrame(rows).set_index("LoRA targets")


@dataclass
class SanityRun:
    """A short LoRA + AdamW fine-tuning run: its log, the majority-class baseline and the headline numbers."""

    log: pd.DataFrame
    majority: float
    headline: dict
    text: dict = field(default_factory=dict)
    verdict: str = ""


def sanity_run(task: str, cfg: Scale, seed: int = 0) -> SanityRun:
    """Fine-tune LoRA + head with AdamW and cross-entropy on ``cfg.n_train`` examples of ``task`` for
    ``cfg.train_steps`` steps; evaluate on ``cfg.n_eval`` validation examples against the majority class."""
    setup = setup_task(task, cfg, seed)
    seed_everything(seed)
    start = time.perf_counter()
    run = fine_tune(setup.model, setup.train, setup.eval, loss="ce", optimizer="adamw", lr=cfg.lr,
                    steps=cfg.train_steps, batch_size=cfg.batch_size, seed=seed,
                    log_every=max(1, cfg.train_steps // 6), track_gap=False, progress=False)
    seconds = time.perf_counter() - start
    labels = setup.eval["labels"]
    majority = float((labels == labels.mode().values).float().mean())
    log = run.log
    first, last = float(log["task_loss"].iloc[0]), float(log["task_loss"].iloc[-1])
    acc = float(log["eval_acc"].dropna().iloc[-1])
    n_train, n_eval = int(setup.train["labels"].shape[0]), int(labels.shape[0])
    headline = {"task": task, "first_loss": first, "last_loss": last, "eval_acc": acc, "majority": majority,
                "beats_majority": acc > majority, "seconds": seconds, "n_train": n_train, "n_eval": n_eval,
                "steps": cfg.train_steps}
    text = {"sanity_first_loss": f"{first:.3f}", "sanity_last_loss": f"{last:.3f}", "sanity_acc": f"{acc:.1%}",
            "sanity_majority": f"{majority:.1%}", "sanity_seconds": f"{seconds:.0f}", "sanity_steps": cfg.train_steps,
            "sanity_n_train": n_train, "sanity_n_eval": n_eval}
    verdict = (f"At scale {cfg.name!r} the sanity run {'beats' if acc > majority else 'does NOT beat'} the majority "
               f"class ({acc:.3f} vs {majority:.3f}); its training loss {'fell' if last < first else 'did not fall'}.")
    return SanityRun(log, majority, headline, text, verdict)
