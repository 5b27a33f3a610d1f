"""LoRA attachment: peft adapters on the chosen Linear modules, with a reproducible initialization.

:func:`add_lora` wraps a classifier with peft LoRA adapters on the modules that :func:`linft.targets.resolve_targets`
names. ``alpha`` defaults to 2·rank (:func:`default_alpha`). Each LoRA A matrix is drawn from a generator seeded by
the run's seed and its module's base-model name (:func:`lora_seed`), so a layer's initialization does not depend on
which other layers are adapted (:data:`LORA_INITS`: ``"global"`` keeps peft's own draws). B starts at zero, so the
adapted model equals the base model at initialization.
"""

from __future__ import annotations

import math
import warnings
import zlib

import torch
from torch import nn

from linft import LinftError, check_choice, check_positive_int
from linft.targets import base_module_name, resolve_targets

#: The default LoRA scale: ``alpha = DEFAULT_ALPHA_PER_RANK * rank`` (so alpha / rank = 2 whatever the rank).
DEFAULT_ALPHA_PER_RANK = 2.0


def default_alpha(rank: int) -> float:
    """The default LoRA ``alpha`` for ``rank``: ``2 * rank``."""
    return DEFAULT_ALPHA_PER_RANK * check_positive_int(rank, "LoRA rank")


def lora_seed(seed: int, module_name: str) -> int:
    """Seed of one module's LoRA A matrix: a stable hash (crc32) of ``seed`` and the module's base-model name."""
    return zlib.crc32(f"{int(seed)}:{base_module_name(module_name)}".encode())


def _seed_lora_a(peft_model: nn.Module, seed: int) -> None:
    """Re-draw each LoRA A as peft does (kaiming_uniform_, a=√5) from a generator seeded by its module's name."""
    for name, module in peft_model.named_modules():
        lora_a = getattr(module, "lora_A", None)
        if not isinstance(lora_a, nn.ModuleDict) or not hasattr(module, "base_layer"):
            continue
        for linear in lora_a.values():
            generator = torch.Generator().manual_seed(lora_seed(seed, name))
            weight = torch.empty(linear.weight.shape, dtype=torch.float32)
            nn.init.kaiming_uniform_(weight, a=math.sqrt(5), generator=generator)
            with torch.no_grad():
                linear.weight.copy_(weight)


#: how LoRA A matrices are drawn: per module name (default) or by peft under one global seed
LORA_INITS = ("per_module", "global")


def add_lora(
    model: nn.Module,
    targets=("query", "value"),
    rank: int = 8,
    alpha: float | None = None,
    layers=None,
    dropout: float = 0.0,
    train_head: bool = True,
    seed: int = 0,
    lora_init: str = "per_module",
):
    """Wrap ``model`` with peft LoRA adapters on the chosen Linear modules.

    ``targets`` and ``layers`` as in :func:`resolve_targets` (``"qv"``, ``("q", "v")``, ``["query", "value"]``,
    ``"all"`` ...). ``alpha`` None means :func:`default_alpha` (2·rank). Each LoRA A is drawn like peft's
    (kaiming-uniform) from a generator seeded by ``seed`` and its module's name (:func:`lora_seed`), so a layer's
    initialization does not depend on which other layers are adapted; ``lora_init="global"`` keeps peft's own draws
    after ``torch.manual_seed(seed)`` instead (linft before 0.2: a layer's A then depends on the other targets).
    LoRA's B matrices start at zero, so the adapted
    model equals the base model at initialization. With ``train_head`` the classifier head is trainable too (peft
    ``modules_to_save``); otherwise only the LoRA matrices are. Everything else is frozen. Returns the
    ``peft.PeftModel``.
    """
    from peft import LoraConfig, get_peft_model

    rank = check_positive_int(rank, "LoRA rank")
    check_choice("lora_init", lora_init, LORA_INITS)
    if alpha is None:
        alpha = default_alpha(rank)
    elif isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not math.isfinite(alpha) or alpha <= 0:
        raise LinftError(f"LoRA alpha must be a positive number (or None for 2·rank = {2 * rank}), got {alpha!r}")
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise LinftError(f"LoRA dropout must be a number in [0, 1), got {dropout!r}")
    modules = resolve_targets(model, targets, layers)
    by_name = dict(model.named_modules())
    config = LoraConfig(
        r=rank,
        lora_alpha=float(alpha),
        lora_dropout=float(dropout),
        target_modules=modules,
        task_type="SEQ_CLS",
        bias="none",
        fan_in_fan_out=not isinstance(by_name[modules[0]], nn.Linear),  # GPT-2's Conv1D stores W transposed
    )
    torch.manual_seed(seed)
    with warnings.catch_warnings():  # peft calls a transformers API deprecated in v5
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", message="fan_in_fan_out is set")
        peft_model = get_peft_model(model, config)
    if lora_init == "per_module":
        _seed_lora_a(peft_model, seed)
    if not train_head:
        for name, param in peft_model.named_parameters():
            if "lora_" not in name:
                param.requires_grad_(False)
    return peft_model.eval()  # like load(): dropout off (a new peft wrapper starts in training mode)
