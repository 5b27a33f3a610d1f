"""The sweep configuration of the reference protocol (``protocol: reference``), checked field by field.

A reference sweep (``sweeps/reference.yaml``)::

    protocol: reference
    model: minilm
    sizes: {n_train: 2048, n_eval: 2000, max_length: 64, epochs: 2, lr: 4.0e-3, batch_size: 32, warmup: 0.06,
            short_fraction: 0.1, calib: [16, 32, 64, 128, 256], n_draws: 8, n_kr: 256, alpha_ratio: 1.0,
            split_seed: 0}
    tasks: [mr, subj, vader-movies]
    configs:                        # one list for every task, or one list per task (a mapping task -> list)
      mr:
        - {name: q-r4-l0, layers: [0], targets: q, rank: 4}
    seeds: [0, 1, 2, 3]
    threads: 1

Runs are planned in **blocks of two seeds**: seeds 0–1 of the first task, of the second, …, then seeds 2–3 of each
task, so a sweep cut short still holds whole configuration × seed-pair blocks (the first block is the pilot that
measures configuration effect against seed noise before the rest is read).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields

from linft.runspec import LoraSpec
from linft.study._config import (
    AdapterConfig,
    check_adapters,
    check_float,
    check_int,
    check_keys,
    check_list,
    check_text,
    check_unique,
    config_error,
)
from linft.study._reference import ReferenceKey, reference_key, reference_key_columns, reference_result_columns

__all__ = ["ReferenceSizes", "ReferenceSweep", "PROTOCOLS"]

#: the sweep protocols: chapter 5's few-shot study (kernel points = the fine-tuning set) and the reference protocol
PROTOCOLS = ("fewshot", "reference")

_TOP = ("protocol", "name", "model", "sizes", "tasks", "configs", "seeds", "threads")


@dataclass(frozen=True)
class ReferenceSizes:
    """Sizes shared by every run (see :mod:`linft.study._reference`): ``n_train`` fine-tuning examples, ``n_eval``
    held-out (test split, capped at its size), ``max_length``, ``epochs``, AdamW ``lr``, ``batch_size``,
    ``warmup`` fraction, ``short_fraction`` (the short-run rival), ``calib`` sizes (ascending prefixes),
    ``n_draws`` disjoint draws of 32, ``n_kr`` held-out examples for kernel regression, ``alpha_ratio`` (α = ratio·r),
    ``split_seed``."""

    n_train: int
    n_eval: int
    max_length: int
    epochs: int
    lr: float
    batch_size: int
    warmup: float
    short_fraction: float
    calib: tuple[int, ...]
    n_draws: int
    n_kr: int
    alpha_ratio: float = 1.0
    split_seed: int = 0

    @classmethod
    def parse(cls, raw) -> ReferenceSizes:
        names = tuple(f.name for f in fields(cls))
        check_keys(raw, "sizes", names, names[:-2])
        calib = [check_int(n, f"sizes.calib[{i}]", 2) for i, n in enumerate(check_list(raw["calib"], "sizes.calib"))]
        if calib != sorted(set(calib)):
            raise config_error("sizes.calib", f"must be ascending distinct sizes, got {calib}")
        ints = {name: check_int(raw[name], f"sizes.{name}", low) for name, low in
                (("n_train", 2), ("n_eval", 1), ("max_length", 2), ("epochs", 1), ("batch_size", 1), ("n_draws", 1),
                 ("n_kr", 1))}
        sizes = cls(
            **ints, lr=check_float(raw["lr"], "sizes.lr", positive=True),
            warmup=check_float(raw["warmup"], "sizes.warmup", positive=False),
            short_fraction=check_float(raw["short_fraction"], "sizes.short_fraction", positive=True),
            calib=tuple(calib),
            alpha_ratio=check_float(raw.get("alpha_ratio", 1.0), "sizes.alpha_ratio", positive=True),
            split_seed=check_int(raw.get("split_seed", 0), "sizes.split_seed", 0),
        )
        if sizes.warmup >= 1 or sizes.short_fraction >= 1:
            raise config_error("sizes", "warmup and short_fraction are fractions of the steps: give values below 1")
        if calib[-1] > sizes.n_train:
            raise config_error("sizes.calib", f"{calib[-1]} calibration points cannot be a prefix of n_train = "
                               f"{sizes.n_train} examples")
        if 32 * sizes.n_draws > calib[-1]:
            raise config_error("sizes.n_draws", f"{sizes.n_draws} disjoint draws of 32 need {32 * sizes.n_draws} "
                               f"calibration points, the largest calib size is {calib[-1]}")
        return sizes


@dataclass(frozen=True)
class ReferenceSweep:
    """A checked reference-protocol sweep: ``model`` × ``tasks`` × per-task ``configs`` × ``seeds`` at ``sizes``."""

    model: str
    sizes: ReferenceSizes
    tasks: tuple[str, ...]
    configs: dict[str, tuple[AdapterConfig, ...]]
    seeds: tuple[int, ...]
    threads: int = 1
    name: str = "reference"
    protocol: str = "reference"

    @classmethod
    def parse(cls, raw, name: str = "reference") -> ReferenceSweep:
        from linft import data

        check_keys(raw, "the document", _TOP, ("protocol", "model", "sizes", "tasks", "configs", "seeds"))
        tasks = check_unique(check_list(raw["tasks"], "tasks"), "tasks")
        for i, task in enumerate(tasks):
            if not isinstance(task, str) or task not in data.TASKS:
                raise config_error(f"tasks[{i}]", f"is unknown ({task!r}): use one of {tuple(data.TASKS)}")
        raw_configs = raw["configs"]
        if isinstance(raw_configs, Mapping):
            missing = [t for t in tasks if t not in raw_configs]
            if missing:
                raise config_error("configs", f"has no list for task {missing[0]!r}: give one per task, or one "
                                   "shared list")
            per_task = {t: raw_configs[t] for t in tasks}
        else:
            per_task = dict.fromkeys(tasks, raw_configs)
        configs = {}
        for task, entries in per_task.items():
            where = f"configs.{task}" if isinstance(raw_configs, Mapping) else "configs"
            parsed = [AdapterConfig.parse(c, f"{where}[{i}]") for i, c in enumerate(check_list(entries, where))]
            check_unique([c.name for c in parsed], f"{where}[].name")
            configs[task] = tuple(parsed)
        seeds = [check_int(s, f"seeds[{i}]", 0) for i, s in enumerate(check_list(raw["seeds"], "seeds"))]
        return cls(model=check_text(raw["model"], "model"), sizes=ReferenceSizes.parse(raw["sizes"]),
                   tasks=tuple(tasks), configs=configs, seeds=tuple(check_unique(seeds, "seeds")),
                   threads=check_int(raw.get("threads", 1), "threads", 1),
                   name=check_text(raw.get("name", name), "name"))

    def checked(self) -> ReferenceSweep:
        """The sweep with every configuration matched on the model (layer lists normalized)."""
        from dataclasses import replace

        return replace(self, configs={t: check_adapters(self.model, c) for t, c in self.configs.items()})

    @property
    def columns(self) -> tuple[str, ...]:
        return reference_key_columns() + reference_result_columns(self.sizes.calib, self.sizes.n_draws)

    @property
    def key_columns(self) -> tuple[str, ...]:
        return reference_key_columns()

    #: integer columns of the CSV (nullable Int64 when read back)
    int_columns = ("n_train", "n_kernel", "n_heldout", "max_length", "seed", "split_seed", "rank", "epochs",
                   "batch_size", "n_draws", "n_kr", "n_classes", "n_train_used", "n_heldout_used", "n_kr_used",
                   "n_params_lora", "n_params_trained", "steps", "short_steps", "threads")
    #: text columns (everything else is a float)
    text_columns = ("protocol", "config", "model", "task", "head", "kernel_points", "targets", "layers", "calib",
                    "status", "error", "hostname", "linft_version", "torch_version", "transformers_version",
                    "peft_version")

    def plan(self) -> list[ReferenceKey]:
        """Every run, in blocks of two seeds (see the module docstring)."""
        s = self.sizes
        blocks = [self.seeds[i:i + 2] for i in range(0, len(self.seeds), 2)]
        keys = []
        for block in blocks:
            for task in self.tasks:
                for seed in block:
                    for adapter in self.configs[task]:
                        lora = LoraSpec(targets=adapter.targets, layers=adapter.layers, rank=adapter.rank,
                                        alpha=s.alpha_ratio * adapter.rank)
                        keys.append(reference_key(adapter.name, lora, model=self.model, task=task, seed=seed,
                                                  sizes=s))
        return keys
