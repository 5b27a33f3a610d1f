"""A sweep's configuration: parsed from YAML (or a mapping), checked field by field, expanded into run keys.

A sweep is tasks × LoRA configurations × seeds × settings × λ at one set of sizes (:class:`SweepConfig`). Every
check raises :class:`linft.LinftError` with one line naming the field (``configs[1].rank``) and what to use.
:func:`check_against_model` also resolves each configuration's targets and layers on the model's architecture
(built on the meta device, no weights read), so an unknown target fails before the first run, not in every run.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from linft import LinftError

__all__ = ["SETTINGS", "Sizes", "AdapterConfig", "draw_adapters", "check_adapters", "SweepConfig", "RunKey",
           "load_config", "check_against_model",
           "plan_runs"]

#: "mse_gd": squared loss on one-hot targets, full-batch gradient descent at the descent step 1/(μmax/N + λ) of the
#: SGD kernel; "ce_adamw": cross-entropy + AdamW (minibatches), compared with the SignGD kernel
SETTINGS = ("mse_gd", "ce_adamw")

_TOP_KEYS = ("name", "model", "sizes", "tasks", "configs", "seeds", "settings", "lambdas", "threads")
_REQUIRED_TOP = ("model", "sizes", "tasks", "configs", "seeds", "settings", "lambdas")
_ADAPTER_KEYS = ("name", "layers", "targets", "rank")


# ---------------------------------------------------------------------------------------------- value checks


def config_error(where: str, message: str) -> LinftError:
    return LinftError(f"sweep config: {where} {message}")


def check_int(value, where: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < minimum:
        raise config_error(where, f"must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_float(value, where: str, *, positive: bool) -> float:
    """A finite float (> 0 when ``positive``, else >= 0); numeric strings such as "1e-3" are accepted, since YAML
    1.1 (PyYAML) reads ``1e-3`` without a dot as a string."""
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise config_error(where, f"must be a number, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise config_error(where, f"must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise config_error(where, f"must be a finite number {'> 0' if positive else '>= 0'}, got {value!r}")
    return value


def check_text(value, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise config_error(where, f"must be a non-empty string, got {value!r}")
    if any(c in value for c in "\n\r"):
        raise config_error(where, f"must be one line, got {value!r}")
    return value.strip()


def check_list(value, where: str) -> list:
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, (list, tuple)):
        raise config_error(where, f"must be a list, got {type(value).__name__} {value!r}")
    if not value:
        raise config_error(where, "is empty: give at least one entry")
    return list(value)


def check_unique(values: list, where: str) -> list:
    seen = set()
    for v in values:
        if v in seen:
            raise config_error(where, f"lists {v!r} twice: give each entry once")
        seen.add(v)
    return values


def check_keys(mapping, where: str, allowed, required) -> None:
    if not isinstance(mapping, Mapping):
        raise config_error(where, f"must be a mapping, got {type(mapping).__name__} {mapping!r}")
    unknown = [k for k in mapping if k not in allowed]
    if unknown:
        raise config_error(where, f"has unknown key {unknown[0]!r}: use {', '.join(allowed)}")
    missing = [k for k in required if k not in mapping]
    if missing:
        raise config_error(where, f"lacks {missing[0]!r} (required: {', '.join(required)})")


# ---------------------------------------------------------------------------------------------- records


@dataclass(frozen=True)
class Sizes:
    """The sizes every run of a sweep shares.

    ``n_train``: N training examples (the kernel is [N, N, C, C]; GD is full-batch over them); ``n_test``: held-out
    examples from the task's test split (at most its size); ``max_length``: tokens per example; ``steps``: optimizer
    updates; ``lr``: the AdamW learning rate (gradient descent uses the descent step 1/(μmax/N + λ) instead);
    ``batch_size``: AdamW minibatch size (≥ n_train: full batch).
    """

    n_train: int
    n_test: int
    max_length: int
    steps: int
    lr: float
    batch_size: int = 16

    @classmethod
    def parse(cls, raw) -> Sizes:
        names = tuple(f.name for f in fields(cls))
        check_keys(raw, "sizes", names, names[:-1])
        return cls(
            n_train=check_int(raw["n_train"], "sizes.n_train", 1),
            n_test=check_int(raw["n_test"], "sizes.n_test", 1),
            max_length=check_int(raw["max_length"], "sizes.max_length", 2),
            steps=check_int(raw["steps"], "sizes.steps", 0),
            lr=check_float(raw["lr"], "sizes.lr", positive=True),
            batch_size=check_int(raw.get("batch_size", 16), "sizes.batch_size", 1),
        )


@dataclass(frozen=True)
class AdapterConfig:
    """One LoRA configuration: ``name`` (its label in the CSV), ``layers`` (block indices, or None for every block),
    ``targets`` (aliases/sets of :func:`linft.models.add_lora`, e.g. ``("qv",)``), ``rank``."""

    name: str
    layers: tuple[int, ...] | None
    targets: tuple[str, ...]
    rank: int

    @classmethod
    def parse(cls, raw, where: str) -> AdapterConfig:
        check_keys(raw, where, _ADAPTER_KEYS, ("name", "targets", "rank"))
        name = check_text(raw["name"], f"{where}.name")
        layers = raw.get("layers")
        if layers is None or layers == "all":
            layers = None
        else:
            if isinstance(layers, numbers.Integral) and not isinstance(layers, bool):
                layers = [layers]
            layers = check_list(layers, f"{where}.layers")
            for i, idx in enumerate(layers):
                if isinstance(idx, bool) or not isinstance(idx, numbers.Integral):
                    raise config_error(f"{where}.layers[{i}]", f"must be a block index (integer), got {idx!r}")
            layers = tuple(check_unique([int(i) for i in layers], f"{where}.layers"))
        targets = raw["targets"]
        targets = [targets] if isinstance(targets, str) else check_list(targets, f"{where}.targets")
        targets = tuple(check_unique([check_text(t, f"{where}.targets[{i}]") for i, t in enumerate(targets)],
                                f"{where}.targets"))
        return cls(name=name, layers=layers, targets=targets, rank=check_int(raw["rank"], f"{where}.rank", 1))


    def as_yaml(self) -> dict:
        """The configuration as a sweep file writes it (``layers`` "all" or a list)."""
        return {"name": self.name, "layers": "all" if self.layers is None else list(self.layers),
                "targets": self.targets[0] if len(self.targets) == 1 else list(self.targets), "rank": self.rank}


#: what :func:`draw_adapters` draws from: target sets, layer subsets, ranks
DRAW_TARGETS = ("q", "k", "v", "o", "ffn_in", "ffn_out", "qv", "qkv", "attn", "all")
DRAW_LAYERS = ("all", "top2", "bottom2", "middle2", "one", "three")
DRAW_RANKS = (1, 2, 4, 8, 16)


def _draw_layers(kind: str, n_layers: int, rng) -> tuple[int, ...] | None:
    if kind == "all":
        return None
    if kind == "top2":
        return (n_layers - 2, n_layers - 1)
    if kind == "bottom2":
        return (0, 1)
    if kind == "middle2":
        return (n_layers // 2 - 1, n_layers // 2)
    count = 1 if kind == "one" else 3
    return tuple(sorted(int(i) for i in rng.choice(n_layers, count, replace=False)))


def draw_adapters(n: int, *, seed: int, n_layers: int) -> list[AdapterConfig]:
    """The reference configuration (q, k, v of every block, r = 8) and ``n − 1`` distinct LoRA configurations drawn
    uniformly (numpy ``seed``) from :data:`DRAW_TARGETS` × :data:`DRAW_LAYERS` × :data:`DRAW_RANKS` for a model of
    ``n_layers`` blocks, so a study spans small to large adapters and its configurations differ from task to task.
    Names read ``<targets>-r<rank>-<layers>`` (e.g. ``qv-r8-all``, ``k-r2-l5``, ``ffn_in-r4-l0.1``)."""
    import numpy as np

    rng = np.random.default_rng(check_int(seed, "seed", 0))
    chosen = [AdapterConfig("qkv-r8-all", None, ("qkv",), 8)]
    names = {chosen[0].name}
    while len(chosen) < check_int(n, "n", 1):
        targets = str(rng.choice(DRAW_TARGETS))
        layers = _draw_layers(str(rng.choice(DRAW_LAYERS)), n_layers, rng)
        rank = int(rng.choice(DRAW_RANKS))
        where = "all" if layers is None else "l" + ".".join(str(i) for i in layers)
        name = f"{targets}-r{rank}-{where}"
        if name not in names:
            names.add(name)
            chosen.append(AdapterConfig(name, layers, (targets,), rank))
    return chosen


@dataclass(frozen=True)
class RunKey:
    """What identifies (and fully determines) one run: a row key of the CSV store.

    Every field is a key column; :meth:`as_row` gives their canonical text, so a run found in a CSV file is matched
    exactly. ``layers`` None means every block.
    """

    model: str
    task: str
    config: str
    layers: tuple[int, ...] | None
    targets: tuple[str, ...]
    rank: int
    seed: int
    setting: str
    lam: float
    n_train: int
    n_test: int
    max_length: int
    steps: int
    adamw_lr: float
    batch_size: int

    def as_row(self) -> dict[str, str]:
        """The key columns as canonical strings (floats by ``repr``, layers "all" or "0,5", targets "q,v")."""
        row = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "layers":
                value = "all" if value is None else ",".join(str(i) for i in value)
            elif f.name == "targets":
                value = ",".join(value)
            elif isinstance(value, float):
                value = repr(value)
            row[f.name] = str(value)
        return row

    @property
    def id(self) -> tuple[str, ...]:
        """The key as a tuple of its canonical strings (what the CSV store matches on)."""
        return tuple(self.as_row().values())

    def label(self) -> str:
        """A short human-readable name, for progress bars and error lines."""
        return f"{self.task}/{self.config}/seed{self.seed}/{self.setting}/λ={self.lam:g}"


#: the key columns of the CSV store, in order
KEY_COLUMNS = tuple(f.name for f in fields(RunKey))


@dataclass(frozen=True)
class SweepConfig:
    """A checked sweep: ``model`` × ``tasks`` × ``configs`` × ``seeds`` × ``settings`` × ``lambdas`` at ``sizes``.

    ``threads``: torch threads inside each run (default 1; the same value on every backend gives identical rows).
    ``name``: a label (the config file's stem when read from a file).
    """

    model: str
    sizes: Sizes
    tasks: tuple[str, ...]
    configs: tuple[AdapterConfig, ...]
    seeds: tuple[int, ...]
    settings: tuple[str, ...]
    lambdas: tuple[float, ...]
    threads: int = 1
    name: str = "sweep"
    #: set by :func:`check_against_model` (targets and layers matched, layer lists normalized)
    model_checked: bool = field(default=False, repr=False, compare=False)

    @classmethod
    def parse(cls, raw, name: str = "sweep") -> SweepConfig:
        """Check a mapping (a parsed YAML document) field by field; see the module docstring."""
        check_keys(raw, "the document", _TOP_KEYS, _REQUIRED_TOP)
        from linft import data

        tasks = check_list(raw["tasks"], "tasks")
        for i, task in enumerate(tasks):
            if not isinstance(task, str) or task not in data.TASKS:
                raise config_error(f"tasks[{i}]", f"is unknown ({task!r}): use one of {tuple(data.TASKS)}")
            if not data.task_available(task):
                raise config_error(f"tasks[{i}]", f"{task!r} has no source files here: run `linft fetch` or drop it")
        configs = [AdapterConfig.parse(c, f"configs[{i}]") for i, c in enumerate(check_list(raw["configs"], "configs"))]
        check_unique([c.name for c in configs], "configs[].name")
        settings = check_list(raw["settings"], "settings")
        for i, setting in enumerate(settings):
            if setting not in SETTINGS:
                raise config_error(f"settings[{i}]", f"is unknown ({setting!r}): use one of {SETTINGS}")
        seeds = [check_int(s, f"seeds[{i}]", 0) for i, s in enumerate(check_list(raw["seeds"], "seeds"))]
        lambdas = [check_float(v, f"lambdas[{i}]", positive=False)
                   for i, v in enumerate(check_list(raw["lambdas"], "lambdas"))]
        return cls(
            model=check_text(raw["model"], "model"),
            sizes=Sizes.parse(raw["sizes"]),
            tasks=tuple(check_unique(tasks, "tasks")),
            configs=tuple(configs),
            seeds=tuple(check_unique(seeds, "seeds")),
            settings=tuple(check_unique(settings, "settings")),
            lambdas=tuple(check_unique(lambdas, "lambdas")),
            threads=check_int(raw.get("threads", 1), "threads", 1),
            name=check_text(raw.get("name", name), "name"),
        )


# ---------------------------------------------------------------------------------------------- loading


def _read_yaml(path: Path):
    import yaml

    if not path.is_file():
        raise LinftError(f"sweep config {path} does not exist: pass the path of a YAML file (see sweeps/smoke.yaml)")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        first = str(err).replace("\n", " ")[:200]
        raise LinftError(f"sweep config {path} is not valid YAML ({first}): fix the file") from None


def load_config(source, *, check_model: bool = True) -> SweepConfig:
    """A :class:`SweepConfig` from a YAML file path, a mapping, or a SweepConfig (returned checked).

    With ``check_model`` the model is resolved and every configuration's targets and layers are matched on its
    architecture (:func:`check_against_model`); the layer lists come back normalized (sorted, non-negative).
    """
    if isinstance(source, SweepConfig) or getattr(source, "protocol", None) == "reference":
        config = source
    elif isinstance(source, Mapping):
        config = _parse(source, "sweep")
    elif isinstance(source, (str, Path)):
        path = Path(source).expanduser()
        config = _parse(_read_yaml(path), path.stem)
    else:
        raise LinftError(f"a sweep config must be a YAML path, a mapping or a SweepConfig, got {type(source).__name__}")
    if getattr(config, "protocol", "fewshot") == "reference":
        return config.checked() if check_model else config
    return check_against_model(config) if check_model and not config.model_checked else config


def _parse(raw, name: str):
    """A :class:`SweepConfig`, or for ``protocol: reference`` a reference sweep
    (:mod:`linft.study._reference_config`)."""
    protocol = raw.get("protocol", "fewshot") if isinstance(raw, Mapping) else "fewshot"
    if protocol == "reference":
        from linft.study._reference_config import ReferenceSweep

        return ReferenceSweep.parse(raw, name=name)
    if protocol != "fewshot":
        raise config_error("protocol", f"is unknown ({protocol!r}): use 'fewshot' (the default) or 'reference'")
    if isinstance(raw, Mapping):
        raw = {k: v for k, v in raw.items() if k != "protocol"}
    return SweepConfig.parse(raw, name=name)


def _skeleton(model: str, num_labels: int):
    """The model's module tree on the meta device (no weights read), for matching LoRA targets."""
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification

    from linft import models

    source = models.resolve(model)
    try:
        hf_config = AutoConfig.from_pretrained(source, num_labels=num_labels)
    except (OSError, ValueError) as err:
        raise config_error("model", f"{model!r} cannot be read ({type(err).__name__}): use one of {models.MODEL_KEYS}, "
                    "a local model folder or a reachable hub id") from None
    with torch.device("meta"):
        return AutoModelForSequenceClassification.from_config(hf_config)


def check_adapters(model: str, adapters) -> tuple[AdapterConfig, ...]:
    """Match every configuration's targets/layers on ``model``'s architecture; return them with each layer list
    normalized (indices mod the number of blocks, sorted). Raises a one-line :class:`LinftError` naming the
    configuration otherwise."""
    from linft import models

    try:
        skeleton = _skeleton(model, 2)
    except LinftError as err:
        msg = str(err)
        raise err if msg.startswith("sweep config") else config_error("model", f"{model!r}: {msg}") from None
    n_layers = models.num_layers(skeleton)
    checked = []
    for i, adapter in enumerate(adapters):
        try:
            models.resolve_targets(skeleton, list(adapter.targets), None if adapter.layers is None else
                                   list(adapter.layers))
        except LinftError as err:
            raise config_error(f"configs[{i}] ({adapter.name!r})", f"does not fit {model!r}: {err}") from None
        layers = None if adapter.layers is None else tuple(sorted({i % n_layers for i in adapter.layers}))
        checked.append(replace(adapter, layers=layers))
    return tuple(checked)


def check_against_model(config: SweepConfig) -> SweepConfig:
    """Resolve ``config.model`` and match every configuration's targets/layers on it (:func:`check_adapters`)."""
    return replace(config, configs=check_adapters(config.model, config.configs), model_checked=True)


def plan_runs(config) -> list[RunKey]:
    """Every run of the sweep, one :class:`RunKey` each: tasks × seeds × configs × settings × λ, in that order
    (``len == len(tasks)·len(configs)·len(seeds)·len(settings)·len(lambdas)``). ``config``: as :func:`load_config`
    (a file path or mapping is checked against the model first)."""
    config = load_config(config)
    if getattr(config, "protocol", "fewshot") == "reference":
        return config.plan()
    s = config.sizes
    return [
        RunKey(model=config.model, task=task, config=adapter.name, layers=adapter.layers, targets=adapter.targets,
               rank=adapter.rank, seed=seed, setting=setting, lam=lam, n_train=s.n_train, n_test=s.n_test,
               max_length=s.max_length, steps=s.steps, adamw_lr=s.lr, batch_size=s.batch_size)
        for task in config.tasks
        for seed in config.seeds
        for adapter in config.configs
        for setting in config.settings
        for lam in config.lambdas
    ]
