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

__all__ = ["SETTINGS", "Sizes", "AdapterConfig", "SweepConfig", "RunKey", "load_config", "check_against_model",
           "plan_runs"]

#: "mse_gd": squared loss on one-hot targets, full-batch gradient descent at the descent step 1/(μmax/N + λ) of the
#: SGD kernel; "ce_adamw": cross-entropy + AdamW (minibatches), compared with the SignGD kernel
SETTINGS = ("mse_gd", "ce_adamw")

_TOP_KEYS = ("name", "model", "sizes", "tasks", "configs", "seeds", "settings", "lambdas", "threads")
_REQUIRED_TOP = ("model", "sizes", "tasks", "configs", "seeds", "settings", "lambdas")
_ADAPTER_KEYS = ("name", "layers", "targets", "rank")


# ---------------------------------------------------------------------------------------------- value checks


def _fail(where: str, message: str) -> LinftError:
    return LinftError(f"sweep config: {where} {message}")


def _int(value, where: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < minimum:
        raise _fail(where, f"must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _float(value, where: str, *, positive: bool) -> float:
    """A finite float (> 0 when ``positive``, else >= 0); numeric strings such as "1e-3" are accepted, since YAML
    1.1 (PyYAML) reads ``1e-3`` without a dot as a string."""
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise _fail(where, f"must be a number, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise _fail(where, f"must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise _fail(where, f"must be a finite number {'> 0' if positive else '>= 0'}, got {value!r}")
    return value


def _text(value, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _fail(where, f"must be a non-empty string, got {value!r}")
    if any(c in value for c in "\n\r"):
        raise _fail(where, f"must be one line, got {value!r}")
    return value.strip()


def _list(value, where: str) -> list:
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, (list, tuple)):
        raise _fail(where, f"must be a list, got {type(value).__name__} {value!r}")
    if not value:
        raise _fail(where, "is empty: give at least one entry")
    return list(value)


def _unique(values: list, where: str) -> list:
    seen = set()
    for v in values:
        if v in seen:
            raise _fail(where, f"lists {v!r} twice: give each entry once")
        seen.add(v)
    return values


def _keys(mapping, where: str, allowed, required) -> None:
    if not isinstance(mapping, Mapping):
        raise _fail(where, f"must be a mapping, got {type(mapping).__name__} {mapping!r}")
    unknown = [k for k in mapping if k not in allowed]
    if unknown:
        raise _fail(where, f"has unknown key {unknown[0]!r}: use {', '.join(allowed)}")
    missing = [k for k in required if k not in mapping]
    if missing:
        raise _fail(where, f"lacks {missing[0]!r} (required: {', '.join(required)})")


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
        _keys(raw, "sizes", names, names[:-1])
        return cls(
            n_train=_int(raw["n_train"], "sizes.n_train", 1),
            n_test=_int(raw["n_test"], "sizes.n_test", 1),
            max_length=_int(raw["max_length"], "sizes.max_length", 2),
            steps=_int(raw["steps"], "sizes.steps", 0),
            lr=_float(raw["lr"], "sizes.lr", positive=True),
            batch_size=_int(raw.get("batch_size", 16), "sizes.batch_size", 1),
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
        _keys(raw, where, _ADAPTER_KEYS, ("name", "targets", "rank"))
        name = _text(raw["name"], f"{where}.name")
        layers = raw.get("layers")
        if layers is None or layers == "all":
            layers = None
        else:
            if isinstance(layers, numbers.Integral) and not isinstance(layers, bool):
                layers = [layers]
            layers = _list(layers, f"{where}.layers")
            for i, idx in enumerate(layers):
                if isinstance(idx, bool) or not isinstance(idx, numbers.Integral):
                    raise _fail(f"{where}.layers[{i}]", f"must be a block index (integer), got {idx!r}")
            layers = tuple(_unique([int(i) for i in layers], f"{where}.layers"))
        targets = raw["targets"]
        targets = [targets] if isinstance(targets, str) else _list(targets, f"{where}.targets")
        targets = tuple(_unique([_text(t, f"{where}.targets[{i}]") for i, t in enumerate(targets)],
                                f"{where}.targets"))
        return cls(name=name, layers=layers, targets=targets, rank=_int(raw["rank"], f"{where}.rank", 1))


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
        _keys(raw, "the document", _TOP_KEYS, _REQUIRED_TOP)
        from linft import data

        tasks = _list(raw["tasks"], "tasks")
        for i, task in enumerate(tasks):
            if not isinstance(task, str) or task not in data.TASKS:
                raise _fail(f"tasks[{i}]", f"is unknown ({task!r}): use one of {tuple(data.TASKS)}")
            if not data.task_available(task):
                raise _fail(f"tasks[{i}]", f"{task!r} has no source files here: run `linft fetch` or drop it")
        configs = [AdapterConfig.parse(c, f"configs[{i}]") for i, c in enumerate(_list(raw["configs"], "configs"))]
        _unique([c.name for c in configs], "configs[].name")
        settings = _list(raw["settings"], "settings")
        for i, setting in enumerate(settings):
            if setting not in SETTINGS:
                raise _fail(f"settings[{i}]", f"is unknown ({setting!r}): use one of {SETTINGS}")
        seeds = [_int(s, f"seeds[{i}]", 0) for i, s in enumerate(_list(raw["seeds"], "seeds"))]
        lambdas = [_float(v, f"lambdas[{i}]", positive=False) for i, v in enumerate(_list(raw["lambdas"], "lambdas"))]
        return cls(
            model=_text(raw["model"], "model"),
            sizes=Sizes.parse(raw["sizes"]),
            tasks=tuple(_unique(tasks, "tasks")),
            configs=tuple(configs),
            seeds=tuple(_unique(seeds, "seeds")),
            settings=tuple(_unique(settings, "settings")),
            lambdas=tuple(_unique(lambdas, "lambdas")),
            threads=_int(raw.get("threads", 1), "threads", 1),
            name=_text(raw.get("name", name), "name"),
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
    if isinstance(source, SweepConfig):
        config = source
    elif isinstance(source, Mapping):
        config = SweepConfig.parse(source)
    elif isinstance(source, (str, Path)):
        path = Path(source).expanduser()
        config = SweepConfig.parse(_read_yaml(path), name=path.stem)
    else:
        raise LinftError(f"a sweep config must be a YAML path, a mapping or a SweepConfig, got {type(source).__name__}")
    return check_against_model(config) if check_model and not config.model_checked else config


def _skeleton(model: str, num_labels: int):
    """The model's module tree on the meta device (no weights read), for matching LoRA targets."""
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification

    from linft import models

    source = models.resolve(model)
    try:
        hf_config = AutoConfig.from_pretrained(source, num_labels=num_labels)
    except (OSError, ValueError) as err:
        raise _fail("model", f"{model!r} cannot be read ({type(err).__name__}): use one of {models.MODEL_KEYS}, "
                    "a local model folder or a reachable hub id") from None
    with torch.device("meta"):
        return AutoModelForSequenceClassification.from_config(hf_config)


def check_against_model(config: SweepConfig) -> SweepConfig:
    """Resolve ``config.model`` and match every configuration's targets/layers on it; return the config with each
    layer list normalized (indices mod the number of blocks, sorted). Raises a one-line :class:`LinftError` naming
    the configuration otherwise."""
    from linft import models

    try:
        skeleton = _skeleton(config.model, 2)
    except LinftError as err:
        msg = str(err)
        raise err if msg.startswith("sweep config") else _fail("model", f"{config.model!r}: {msg}") from None
    n_layers = models.num_layers(skeleton)
    checked = []
    for i, adapter in enumerate(config.configs):
        try:
            models.resolve_targets(skeleton, list(adapter.targets), None if adapter.layers is None else
                                   list(adapter.layers))
        except LinftError as err:
            raise _fail(f"configs[{i}] ({adapter.name!r})", f"does not fit {config.model!r}: {err}") from None
        layers = None if adapter.layers is None else tuple(sorted({i % n_layers for i in adapter.layers}))
        checked.append(replace(adapter, layers=layers))
    return replace(config, configs=tuple(checked), model_checked=True)


def plan_runs(config) -> list[RunKey]:
    """Every run of the sweep, one :class:`RunKey` each: tasks × seeds × configs × settings × λ, in that order
    (``len == len(tasks)·len(configs)·len(seeds)·len(settings)·len(lambdas)``). ``config``: as :func:`load_config`
    (a file path or mapping is checked against the model first)."""
    config = load_config(config)
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
