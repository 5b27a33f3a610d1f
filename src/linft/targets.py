"""LoRA target aliases: which Linear modules of a model a target name means, per architecture.

LoRA targets know the architecture (``config.model_type``): the aliases ``q``, ``k``, ``v``, ``o`` (= ``attn_out``),
``ffn_in``, ``ffn_out`` name the same roles in BERT, RoBERTa, MPNet, DistilBERT, Llama/SmolLM2, Gemma, GPT-2 ...
(:data:`ARCH_TARGETS`), and the sets ``qv``, ``qkv``, ``attn``, ``all`` (:data:`TARGET_SETS`) combine them; any
other name is a module-name suffix, and ``re:<regex>`` a regular expression on full module names.
:func:`resolve_targets` (alias :func:`match_targets`) turns targets and block indices into module names, on a plain
model or one already wrapped by peft; :func:`layer_index` and :func:`num_layers` read transformer blocks.
"""

from __future__ import annotations

import operator
import re

from torch import nn

from linft import LinftError, check_choice


def _family(q, k, v, o, ffn_in, ffn_out, prefix=r".*\.") -> dict[str, str]:
    """Alias table of one architecture family: alias -> regular expression on full module names."""
    table = {"q": q, "k": k, "v": v, "o": o, "ffn_in": ffn_in, "ffn_out": ffn_out}
    table = {alias: f"{prefix}{pattern}$" for alias, pattern in table.items() if pattern is not None}
    if "o" in table:
        table["attn_out"] = table["o"]
    return table


_BERT = _family(
    r"attention\.self\.query",
    r"attention\.self\.key",
    r"attention\.self\.value",
    r"attention\.output\.dense",
    r"intermediate\.dense",
    r"layer\.\d+\.output\.dense",
)
_MPNET = _family(
    r"attention\.attn\.q",
    r"attention\.attn\.k",
    r"attention\.attn\.v",
    r"attention\.attn\.o",
    r"intermediate\.dense",
    r"layer\.\d+\.output\.dense",
)
_DISTILBERT = _family(
    r"attention\.q_lin", r"attention\.k_lin", r"attention\.v_lin", r"attention\.out_lin", r"ffn\.lin1", r"ffn\.lin2"
)
_LLAMA = _family(
    r"self_attn\.q_proj",
    r"self_attn\.k_proj",
    r"self_attn\.v_proj",
    r"self_attn\.o_proj",
    r"mlp\.(?:gate|up)_proj",  # gated MLP: both input projections
    r"mlp\.down_proj",
)
#: Gemma-3 with its vision tower: only the language model's blocks (the SigLIP tower also has q_proj ...).
_GEMMA3_MM = {
    alias: pattern.replace(r".*\.", r".*\.language_model\.layers\.\d+\.", 1) for alias, pattern in _LLAMA.items()
}
#: GPT-2 fuses the q, k and v projections into one Conv1D, ``attn.c_attn``: it is adapted as a whole, as ``qkv``.
_GPT2 = {"qkv": r".*\.attn\.c_attn$", **_family(None, None, None, r"attn\.c_proj", r"mlp\.c_fc", r"mlp\.c_proj")}

#: LoRA target aliases per ``config.model_type``: alias -> regular expression (``re.fullmatch``) on full module names.
ARCH_TARGETS: dict[str, dict[str, str]] = {
    **dict.fromkeys(("bert", "roberta", "xlm-roberta", "camembert", "electra"), _BERT),
    "mpnet": _MPNET,
    "distilbert": _DISTILBERT,
    **dict.fromkeys(("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text"), _LLAMA),
    "gemma3": _GEMMA3_MM,
    "gpt2": _GPT2,
}

#: Architectures whose q, k, v projections are one fused module, adapted as the alias given here.
FUSED_TARGETS: dict[str, tuple[tuple[str, ...], str, str]] = {"gpt2": (("q", "k", "v"), "qkv", "attn.c_attn")}

#: Only modules whose full name matches this are LoRA candidates (multimodal models: the language model only).
_SCOPES = {"gemma3": r".*\.language_model\..*"}

#: Named target sets, usable wherever targets are taken: ``add_lora(model, targets="qkv")``.
TARGET_SETS: dict[str, tuple[str, ...]] = {
    "qv": ("q", "v"),
    "qkv": ("q", "k", "v"),
    "attn": ("q", "k", "v", "o"),
    "all": ("q", "k", "v", "o", "ffn_in", "ffn_out"),
}
TARGET_SET_NAMES = tuple(TARGET_SETS)

#: BERT's alias table (alias -> regex), kept under its old name for code that imports it to list aliases in errors;
#: :func:`target_aliases` gives the table of any model.
TARGET_ALIASES = dict(_BERT)


def _model_type(model_or_type) -> str:
    if isinstance(model_or_type, str):
        return model_or_type
    config = getattr(model_or_type, "config", None)
    return str(getattr(config, "model_type", "") or "")


def target_aliases(model_or_type) -> dict[str, str]:
    """Alias table (alias -> regex on full module names) of a model or ``model_type``; empty for unknown types."""
    return dict(ARCH_TARGETS.get(_model_type(model_or_type), {}))


def _is_linear(module: nn.Module) -> bool:
    # GPT-2-style Conv1D is a Linear with a transposed weight; peft adapts it with fan_in_fan_out
    return isinstance(module, nn.Linear) or (
        type(module).__name__ == "Conv1D" and type(module).__module__.startswith("transformers")
    )


_LAYER_INDEX = re.compile(r"\.(?:layer|layers|h|block|blocks)\.(\d+)\.")
_PEFT_PREFIX = "base_model.model."


def layer_index(module_name: str) -> int | None:
    """Transformer block index in a module name (``...encoder.layer.3.attention...`` → 3), else None."""
    match = _LAYER_INDEX.search("." + module_name + ".")
    return int(match.group(1)) if match else None


def num_layers(model: nn.Module) -> int:
    """Number of transformer blocks (from the config; the language model's for multimodal configs)."""
    config = model.config
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    for cfg in (config, text_config):
        for attr in ("num_hidden_layers", "n_layer", "num_layers"):
            if isinstance(getattr(cfg, attr, None), int):
                return int(getattr(cfg, attr))
    raise LinftError(f"cannot tell the number of layers of {type(model).__name__}: its config has no num_hidden_layers")


def base_module_name(name: str) -> str:
    """A module's name in the base model: without peft's ``base_model.model.`` prefix and ``.base_layer`` suffix."""
    if name.startswith(_PEFT_PREFIX):
        name = name[len(_PEFT_PREFIX) :]
    return name[: -len(".base_layer")] if name.endswith(".base_layer") else name


def _candidates(model: nn.Module) -> list[tuple[str, str]]:
    """(name in ``model``, name in the base model) of every Linear/Conv1D weight inside a transformer block.

    On a peft model the adapted modules appear as their ``.base_layer``; LoRA's own matrices and peft's
    ``modules_to_save`` copies are skipped.
    """
    scope = _SCOPES.get(_model_type(model))
    out = []
    for name, module in model.named_modules():
        if not _is_linear(module) or layer_index(name) is None:
            continue
        parts = name.split(".")
        if any(p.startswith("lora_") or p == "modules_to_save" for p in parts):
            continue
        logical = base_module_name(name)
        if scope is None or re.fullmatch(scope, logical):
            out.append((name, logical))
    return out


def linear_module_names(model: nn.Module) -> list[str]:
    """Full names of every ``nn.Linear`` (or GPT-2 ``Conv1D``) inside the transformer blocks, LoRA's own excluded."""
    return [name for name, _ in _candidates(model)]


def _as_target_list(targets) -> list[str]:
    if isinstance(targets, str):
        targets = [targets]
    try:
        targets = list(targets)
    except TypeError:
        raise LinftError(f"LoRA targets must be a name or a list of names, got {targets!r}") from None
    if not targets:
        raise LinftError("no LoRA targets given: pass names such as 'qv', ['q', 'v'] or ['query', 'value']")
    bad = [t for t in targets if not isinstance(t, str) or not t]
    if bad:
        raise LinftError(f"LoRA targets must be non-empty strings, got {bad!r} in {targets!r}")
    return targets


def _expand_targets(model_type: str, targets) -> list[str]:
    """Targets with named sets expanded and fused projections merged (GPT-2: q, k, v -> qkv), deduplicated."""
    expanded: list[str] = []
    for target in _as_target_list(targets):
        for t in TARGET_SETS.get(target, (target,)):
            if t not in expanded:
                expanded.append(t)
    if model_type in FUSED_TARGETS:
        members, fused, module = FUSED_TARGETS[model_type]
        present = [t for t in expanded if t in members]
        if present and len(present) < len(members):
            raise LinftError(
                f"{model_type} fuses {'/'.join(members)} into one module ({module}), so LoRA targets {present} cannot "
                f"be adapted alone: adapt the fused projection as {fused!r} (or the sets 'attn', 'all')"
            )
        if present:
            at = expanded.index(present[0])
            expanded = [t for t in expanded if t not in members]
            if fused not in expanded:
                expanded.insert(at, fused)
    return expanded


def _target_pattern(model: nn.Module, target: str):
    """Compiled regex for a ``re:`` target or an alias of the model's architecture, else None (suffix matching)."""
    if target.startswith("re:"):
        try:
            return re.compile(target[3:])
        except re.error as err:
            raise LinftError(f"LoRA target {target!r} is not a valid regular expression ({err})") from None
    pattern = ARCH_TARGETS.get(_model_type(model), {}).get(target)
    return re.compile(pattern) if pattern else None


def _hits(pattern, target: str, logical: str) -> bool:
    if pattern is not None:
        return pattern.fullmatch(logical) is not None
    return logical == target or logical.endswith("." + target)


def _wanted_layers(model: nn.Module, layers) -> set[int] | None:
    if layers is None:
        return None
    try:
        layers = [layers] if isinstance(layers, int) else list(layers)
        if any(isinstance(i, bool) for i in layers):
            raise TypeError
        indices = [operator.index(i) for i in layers]
    except TypeError:
        raise LinftError(f"layers must be block indices (integers) or None for all, got {layers!r}") from None
    if not indices:
        raise LinftError("layers=[] selects no block: pass block indices such as [0, -1], or None for all")
    n_layers = num_layers(model)
    for idx in indices:
        if not -n_layers <= idx < n_layers:
            raise LinftError(f"layer {idx} does not exist: this model has layers 0..{n_layers - 1}")
    return {idx % n_layers for idx in indices}


def resolve_targets(model: nn.Module, targets, layers=None) -> list[str]:
    """Full names of the Linear modules LoRA should adapt, in model order.

    ``targets``: one name or a list of names, each

    - a named set of :data:`TARGET_SETS` (``qv``, ``qkv``, ``attn``, ``all``);
    - an alias of the model's architecture, :data:`ARCH_TARGETS` (``q``, ``k``, ``v``, ``o``/``attn_out``,
      ``ffn_in``, ``ffn_out``; GPT-2's fused ``qkv``);
    - a module-name suffix (``"query"``, ``"q_proj"``, ``"attention.output.dense"``), the only kind an unknown
      ``model_type`` understands;
    - ``re:<regex>`` matched (``re.fullmatch``) against full module names of the base model.

    ``layers``: block indices to adapt (negative counts from the top), or None for all.

    Works on a model already wrapped by peft: then the names are those of the base model's Linear modules, which
    for an adapted module is ``...<name>.base_layer`` (never LoRA's ``lora_A``/``lora_B``).
    """
    model_type = _model_type(model)
    expanded = _expand_targets(model_type, targets)
    wanted_layers = _wanted_layers(model, layers)
    candidates = _candidates(model)
    patterns = {t: _target_pattern(model, t) for t in expanded}
    for target, pattern in patterns.items():  # every target must name something in this architecture
        if not any(_hits(pattern, target, logical) for _, logical in candidates):
            suffixes = sorted({logical.split(".")[-1] for _, logical in candidates})
            options = list(dict.fromkeys([*target_aliases(model), *TARGET_SET_NAMES, *suffixes, "re:<regex>"]))
            known = f"model_type {model_type!r}" if model_type in ARCH_TARGETS else f"unknown model_type {model_type!r}"
            check_choice(
                f"LoRA target of {type(model).__name__} ({known}; it would match no Linear module)", target, options
            )
    chosen = [
        name
        for name, logical in candidates
        if (wanted_layers is None or layer_index(logical) in wanted_layers)
        and any(_hits(pattern, target, logical) for target, pattern in patterns.items())
    ]
    if not chosen:
        raise LinftError(
            f"LoRA targets {expanded} match no Linear module of {type(model).__name__} in layers "
            f"{sorted(wanted_layers) if wanted_layers is not None else 'all'}: choose other layers or targets"
        )
    return chosen


def match_targets(model: nn.Module, targets, layers=None) -> list[str]:
    """The public matcher: full names of the Linear modules ``targets`` names in ``layers`` (:func:`resolve_targets`).

    On a peft model these are the base model's Linear modules (``...<name>.base_layer`` where adapted).
    """
    return resolve_targets(model, targets, layers)
