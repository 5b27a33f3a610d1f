"""Parameter groups: parameter names sorted into transformer blocks and the classifier head, and counts.

:func:`group_of` names a parameter's group (``layer<i>``, ``other`` or ``head``, :func:`is_head_param`);
:func:`group_names` and :func:`lora_param_groups` group names in the one order :func:`group_sort_key` gives
everywhere; :func:`count_parameters` and :func:`architecture_summary` describe a model in numbers.
"""

from __future__ import annotations

import re
from collections import OrderedDict

from torch import nn

from linft.targets import layer_index, num_layers


def is_head_param(name: str) -> bool:
    """True for the classifier head (``classifier`` in BERT-likes, ``score`` in decoders)."""
    return bool(re.search(r"(^|\.)(classifier|score)(\.|$)", name)) and "lora_" not in name


def group_of(name: str) -> str:
    """Layer group of a parameter name: ``head`` (the classifier), ``layer<i>`` (inside block i), else ``other``."""
    if is_head_param(name):
        return "head"
    idx = layer_index(name)
    return f"layer{idx}" if idx is not None else "other"


def group_sort_key(group: str) -> tuple[int, int]:
    """The one order of layer groups everywhere: ``layer0``, ``layer1``, …, then ``other``, then ``head``."""
    if group.startswith("layer") and group[5:].isdigit():
        return (0, int(group[5:]))
    return (1, 0) if group == "other" else (2, 0)


def group_names(names) -> OrderedDict[str, list[str]]:
    """Parameter names grouped by :func:`group_of`, groups in :func:`group_sort_key` order, names in given order."""
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(group_of(name), []).append(name)
    return OrderedDict(sorted(groups.items(), key=lambda kv: group_sort_key(kv[0])))


def lora_param_groups(model: nn.Module, include_head: bool = True) -> OrderedDict[str, list[str]]:
    """Trainable parameter names grouped by block: ``{"layer0": [...], ..., "other": [...], "head": [...]}``.

    Groups in :func:`group_sort_key` order; ``head`` (the trainable classifier) only with ``include_head``.
    """
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    groups = group_names(names)
    if not include_head:
        groups.pop("head", None)
    return groups


def count_parameters(model: nn.Module) -> dict[str, int]:
    """Parameter counts: total, trainable, LoRA, head (trainable head only)."""
    total = trainable = lora = head = 0
    for name, param in model.named_parameters():
        total += param.numel()
        if param.requires_grad:
            trainable += param.numel()
            if "lora_" in name:
                lora += param.numel()
            elif is_head_param(name):
                head += param.numel()
    return {"total": total, "trainable": trainable, "lora": lora, "head": head}


def architecture_summary(model: nn.Module) -> dict[str, object]:
    """Architecture facts from the config: type, layers, hidden size, heads, FFN size, vocabulary."""
    config = model.config
    return {
        "model_type": config.model_type,
        "layers": num_layers(model),
        "hidden": getattr(config, "hidden_size", None),
        "heads": getattr(config, "num_attention_heads", None),
        "ffn": getattr(config, "intermediate_size", None),
        "vocab": getattr(config, "vocab_size", None),
        "max_positions": getattr(config, "max_position_embeddings", None),
    }
