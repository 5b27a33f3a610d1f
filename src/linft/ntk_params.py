"""Which parameters an empirical NTK differentiates, and checks on the batches it is computed for.

One job: turn the ``params=`` argument of :func:`linft.ntk.empirical_ntk` into a :class:`Selection` (the chosen
parameters, grouped by transformer block, and the Linear modules that own them), and validate batches.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass, field

import torch
from torch import nn

from linft import LinftError
from linft.models import TARGET_ALIASES, is_head_param, layer_index


@dataclass(frozen=True)
class FullWeights:
    """The full weight matrices of chosen Linear modules: the kernel full fine-tuning of them would see.

    ``targets``: module-name suffixes (``"query"``, ``"attention.output.dense"``), aliases (``attn_out``,
    ``ffn_in``, ``ffn_out``) or ``re:<regex>`` on full names, as in :func:`linft.models.add_lora`.
    ``layers``: block indices (negative from the top), or None for all. In a LoRA model these weights are the
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
    groups: "OrderedDict[str, list[str]]"
    description: str
    spec: str  # canonical text of the params argument (part of the cache key)
    units: list[Unit] | None = field(default=None)  # None when some parameter is not owned by a Linear

    @property
    def n_params(self) -> int:
        return sum(self.tensors[n].numel() for n in self.names)


def group_of(name: str) -> str:
    """Block key of a parameter: ``head`` for the classifier, ``layer<i>`` inside block i, else ``other``."""
    if is_head_param(name):
        return "head"
    idx = layer_index(name)
    return f"layer{idx}" if idx is not None else "other"


def _group_order(key: str) -> tuple:
    if key.startswith("layer"):
        return (1, int(key[5:]))
    return (0, 0) if key == "other" else (2, 0)


def _full_weight_names(model: nn.Module, spec: FullWeights) -> list[str]:
    targets = [spec.targets] if isinstance(spec.targets, str) else list(spec.targets)
    if not targets:
        raise LinftError("FullWeights(targets=()) selects nothing: pass module names such as ('query',)")
    linears = [
        (n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear) and "lora_" not in n and layer_index(n)
        is not None
    ]
    n_layers = 1 + max((layer_index(n) for n, _ in linears), default=-1)
    wanted = None
    if spec.layers is not None:
        wanted = set()
        for idx in spec.layers:
            if not -n_layers <= int(idx) < n_layers:
                raise LinftError(f"FullWeights layer {idx} does not exist: this model has layers 0..{n_layers - 1}")
            wanted.add(int(idx) % n_layers)
    chosen = []
    for name, _ in linears:
        logical = name[: -len(".base_layer")] if name.endswith(".base_layer") else name
        if wanted is not None and layer_index(name) not in wanted:
            continue
        for target in targets:
            pattern = TARGET_ALIASES.get(target) or (target[3:] if target.startswith("re:") else None)
            hit = re.fullmatch(pattern, logical) if pattern else (logical == target or logical.endswith("." + target))
            if hit:
                chosen.append(name + ".weight")
                break
    if not chosen:
        suffixes = sorted({n.split(".")[-1] for n, _ in linears if not n.endswith("base_layer")})
        raise LinftError(
            f"FullWeights(targets={tuple(targets)}, layers={spec.layers}) matches no Linear module: "
            f"use names such as {suffixes} or aliases {sorted(TARGET_ALIASES)}"
        )
    return chosen


def select(model: nn.Module, params="lora") -> Selection:
    """Resolve ``params`` ("lora", "trainable", "head", a list of name substrings/regexes, or FullWeights)."""
    named = dict(model.named_parameters())
    trainable = [n for n, p in named.items() if p.requires_grad]
    if isinstance(params, FullWeights):
        names = _full_weight_names(model, params)
        layers = "all layers" if params.layers is None else f"layers {list(params.layers)}"
        targets = params.targets if isinstance(params.targets, str) else "/".join(params.targets)
        what = f"full weights of {targets} ({layers})"
        spec = f"full:{tuple(params.targets)}:{params.layers}"
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
    groups: dict[str, list[str]] = {}
    for n in names:
        groups.setdefault(group_of(n), []).append(n)
    groups = OrderedDict(sorted(groups.items(), key=lambda kv: _group_order(kv[0])))
    n_params = sum(t.numel() for t in tensors.values())
    sel = Selection(names, tensors, groups, f"{what}, {n_params:,} params", spec)
    sel.units = _units(model, sel)
    return sel


def _units(model: nn.Module, sel: Selection) -> list[Unit] | None:
    """Group the selected parameters by owning ``nn.Linear``; None if some parameter has another owner."""
    modules = dict(model.named_modules())
    units: "OrderedDict[str, Unit]" = OrderedDict()
    for name in sel.names:
        owner, _, leaf = name.rpartition(".")
        module = modules.get(owner)
        if not isinstance(module, nn.Linear) or leaf not in ("weight", "bias"):
            return None
        unit = units.setdefault(owner, Unit(owner, module, group_of(name), None, None))
        setattr(unit, leaf, name)
    return list(units.values())


# ---------------------------------------------------------------------------------------------- batches


def check_batch(batch, which: str = "batch") -> dict[str, torch.Tensor]:
    """Validate a tokenizer batch (right-padded ``input_ids`` + ``attention_mask``); return a plain dict."""
    if batch is None or not hasattr(batch, "keys"):
        raise LinftError(f"{which} must be a dict with 'input_ids' and 'attention_mask' (what a tokenizer returns)")
    if "input_ids" not in batch:
        raise LinftError(
            f"{which} has no 'input_ids': pass what tokenizer(texts, padding=True, return_tensors='pt') returns"
        )
    if "attention_mask" not in batch:
        raise LinftError(f"{which} has no 'attention_mask': tokenize with padding=True so the mask comes along")
    ids, mask = batch["input_ids"], batch["attention_mask"]
    if not (torch.is_tensor(ids) and torch.is_tensor(mask)) or ids.dim() != 2 or ids.shape != mask.shape:
        raise LinftError(
            f"{which}: input_ids and attention_mask must be tensors of the same shape [N, L] (return_tensors='pt')"
        )
    if ids.shape[0] == 0 or ids.shape[1] == 0:
        raise LinftError(f"{which} is empty (shape {tuple(ids.shape)}): pass at least one example with one token")
    mask = mask.to(torch.long)
    lengths = mask.sum(1)
    if (lengths == 0).any():
        row = int((lengths == 0).nonzero()[0])
        raise LinftError(f"{which} has an example with no unmasked token (row {row}): drop it")
    ar = torch.arange(ids.shape[1])
    if not torch.equal(mask, (ar[None, :] < lengths[:, None]).long()):
        raise LinftError(f"{which}: attention_mask must be 0/1 and right-padded: set tokenizer.padding_side = 'right'")
    out = {"input_ids": ids, "attention_mask": mask}
    for key in ("token_type_ids",):
        if key in batch and batch[key] is not None:
            if tuple(batch[key].shape) != tuple(ids.shape):
                raise LinftError(f"{which}: {key} must have the shape of input_ids {tuple(ids.shape)}")
            out[key] = batch[key]
    return out


def lengths_of(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return batch["attention_mask"].sum(1)


def slice_examples(batch: dict[str, torch.Tensor], index: torch.Tensor, length: int, device) -> dict:
    """Rows ``index`` of ``batch`` cut to ``length`` tokens, on ``device``."""
    return {k: v[index, :length].to(device) for k, v in batch.items()}
