"""Which parameters an empirical NTK differentiates.

One job: turn the ``params=`` argument of :func:`linft.ntk.empirical_ntk` into a :class:`Selection`: the chosen
parameters, grouped by :func:`linft.models.group_names` ("layer0", …, "other", "head"), and the Linear modules
that own them (:class:`Unit`, what the fast path hooks).
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass, field

import torch
from torch import nn

from linft import LinftError
from linft.models import group_names, group_of, is_head_param, match_targets


@dataclass(frozen=True)
class FullWeights:
    """The full weight matrices of chosen Linear modules: the kernel full fine-tuning of them would see.

    ``targets`` and ``layers`` (block indices, negative from the top; None for all) name the modules as in
    :func:`linft.models.add_lora` (module-name suffixes such as ``"query"``, the architecture's aliases, named
    sets, ``re:<regex>``; resolved by :func:`linft.models.match_targets`). In a LoRA model these weights are the
    frozen ``base_layer`` weights; they need not require grad. Biases are not included.
    """

    targets: tuple = ("query",)
    layers: tuple | None = None


@dataclass
class Unit:
    """One Linear module whose weight and/or bias are in the parameter set."""

    module_name: str
    module: nn.Module
    group: str  # "layer3", "head", "other"
    weight: str | None  # full parameter name, or None when the weight is not selected
    bias: str | None

    @property
    def numel(self) -> int:
        n = self.module.weight.numel() if self.weight else 0
        if self.bias:
            n += self.module.bias.numel()
        return n


@dataclass
class Selection:
    """The chosen parameters: ``names`` in model order, ``groups`` {"layer0": [...], "head": [...]}."""

    names: list[str]
    tensors: dict[str, torch.Tensor]
    groups: OrderedDict[str, list[str]]
    description: str
    spec: str  # canonical text of the params argument (part of the cache key)
    units: list[Unit] | None = field(default=None)  # None when some parameter is not owned by a Linear

    @property
    def n_params(self) -> int:
        return sum(self.tensors[n].numel() for n in self.names)

    @property
    def max_unit_numel(self) -> int:
        """Coordinates of the largest unit (a Linear's selected weight + bias, or one parameter tensor)."""
        if self.units:
            return max(u.numel for u in self.units)
        return max(t.numel() for t in self.tensors.values())

    @property
    def itemsize(self) -> int:
        return next(iter(self.tensors.values())).element_size()


def select(model: nn.Module, params="lora") -> Selection:
    """Resolve ``params`` ("lora", "trainable", "head", a list of name substrings/regexes, or FullWeights)."""
    named = dict(model.named_parameters())
    trainable = [n for n, p in named.items() if p.requires_grad]
    if isinstance(params, FullWeights):
        names = _full_weight_names(model, params)
        targets = _targets(params)
        layers = params.layers if params.layers is None or isinstance(params.layers, int) else tuple(params.layers)
        where = "all layers" if layers is None else f"layers {list(layers) if isinstance(layers, tuple) else layers}"
        what = f"full weights of {'/'.join(targets)} ({where})"
        spec = f"full:{targets}:{layers}"
    elif params == "lora":
        names = [n for n in trainable if "lora_" in n]
        if not names:
            raise LinftError(
                "params='lora' found no trainable LoRA matrices: attach adapters with linft.models.add_lora"
            )
        what = "LoRA (no head)"
        spec = "lora"
    elif params == "trainable":
        names = trainable
        if not names:
            raise LinftError(
                "params='trainable' found no parameter with requires_grad: unfreeze some or pass FullWeights"
            )
        n_lora = sum(1 for n in names if "lora_" in n)
        n_head = sum(1 for n in names if is_head_param(n))
        parts = (["LoRA"] if n_lora else []) + (["head"] if n_head else [])
        if len(names) > n_lora + n_head:
            parts.append("other")
        what = "trainable (" + " + ".join(parts) + ")"
        spec = "trainable"
    elif params == "head":
        names = [n for n in trainable if is_head_param(n)]
        if not names:
            raise LinftError("params='head' found no trainable classifier head: use add_lora(..., train_head=True)")
        what = "head"
        spec = "head"
    elif isinstance(params, (list, tuple)) and params and all(isinstance(p, str) for p in params):
        names = [n for n in trainable if any(p in n or re.search(p, n) for p in params)]
        if not names:
            raise LinftError(
                f"params={list(params)} match no trainable parameter: use substrings of names such as "
                f"{trainable[:2]} (or 'lora', 'trainable', 'head', FullWeights(...))"
            )
        what = f"trainable params matching {list(params)}"
        spec = f"match:{list(params)}"
    else:
        raise LinftError(
            f"params={params!r} is not understood: pass 'lora', 'trainable', 'head', a list of name substrings, "
            "or linft.ntk.FullWeights(targets=..., layers=...)"
        )
    tensors = {n: named[n] for n in names}
    n_params = sum(t.numel() for t in tensors.values())
    sel = Selection(names, tensors, group_names(names), f"{what}, {n_params:,} params", spec)
    sel.units = _units(model, sel)
    return sel


def _units(model: nn.Module, sel: Selection) -> list[Unit] | None:
    """Group the selected parameters by owning ``nn.Linear``; None if some parameter has another owner."""
    modules = dict(model.named_modules())
    units: OrderedDict[str, Unit] = OrderedDict()
    for name in sel.names:
        owner, _, leaf = name.rpartition(".")
        module = modules.get(owner)
        if not isinstance(module, nn.Linear) or leaf not in ("weight", "bias"):
            return None
        unit = units.setdefault(owner, Unit(owner, module, group_of(name), None, None))
        setattr(unit, leaf, name)
    return list(units.values())


def check_linear_only(model: nn.Module, sel: Selection) -> None:
    """Raise unless every selected parameter is a Linear weight or bias (all the fast path handles)."""
    if sel.units is not None:
        return
    modules = dict(model.named_modules())
    bad = next(
        (n for n in sel.names if not isinstance(modules.get(n.rpartition(".")[0]), nn.Linear)
         or n.rpartition(".")[2] not in ("weight", "bias")),
        sel.names[0],
    )
    raise LinftError(
        f"the fast path handles Linear-layer weights and biases only, and the parameter set includes others "
        f"(e.g. {bad}): use implementation='reference'"
    )


# ---------------------------------------------------------------------------------------------- full weights


def _targets(spec: FullWeights) -> tuple:
    if isinstance(spec.targets, str):
        return (spec.targets,)
    try:
        return tuple(spec.targets)
    except TypeError:
        raise LinftError(f"FullWeights targets must be a name or a list of names, got {spec.targets!r}") from None


def _full_weight_names(model: nn.Module, spec: FullWeights) -> list[str]:
    """``<module>.weight`` of every Linear that ``spec`` names, in model order (``base_layer`` under LoRA)."""
    targets = _targets(spec)
    if not targets:
        raise LinftError("FullWeights(targets=()) selects nothing: pass module names such as ('query',)")
    try:
        modules = match_targets(model, targets, spec.layers)
    except LinftError as err:
        raise LinftError(f"FullWeights(targets={targets}, layers={spec.layers}): {err}") from None
    return [name + ".weight" for name in modules]
