"""Load a language model as a sequence classifier and attach LoRA to chosen layers.

Shipped model keys: ``minilm`` (default), ``smollm2``, ``mpnet`` (see :mod:`linft.model_files`, where they are
described and checked); any other name (a Hugging Face id such as ``roberta-base``, or a local folder) goes to
``from_pretrained``. Every tokenizer pads on the right.

LoRA targets know the architecture (``config.model_type``): the aliases ``q``, ``k``, ``v``, ``o`` (= ``attn_out``),
``ffn_in``, ``ffn_out`` name the same roles in BERT, RoBERTa, MPNet, DistilBERT, Llama/SmolLM2, Gemma, GPT-2 ...
(:data:`ARCH_TARGETS`), and the sets ``qv``, ``qkv``, ``attn``, ``all`` (:data:`TARGET_SETS`) combine them.

This module holds :func:`load`; the rest lives in one module per concept and is re-exported here, so
``from linft import models; models.add_lora(...)`` keeps working:

- ``linft.model_files``: the shipped checkpoints, their sha256 checks, GGUF dequantization and cached folders,
  :func:`resolve`;
- ``linft.targets``: LoRA target aliases per architecture, :func:`resolve_targets` / :func:`match_targets`,
  :func:`layer_index`, :func:`num_layers`;
- ``linft.lora``: :func:`add_lora` with per-module seeding of LoRA A (:func:`lora_seed`), :func:`default_alpha`;
- ``linft.param_groups``: parameter names grouped by block and head (:func:`group_of`, :func:`group_names`,
  :func:`lora_param_groups`), :func:`count_parameters`, :func:`architecture_summary`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from linft import LinftError
from linft import lora as _lora
from linft import model_files as _model_files
from linft import targets as _targets
from linft.lora import add_lora, default_alpha, lora_seed
from linft.model_files import (
    MODEL_KEYS,
    SMOLLM2_GGUF,
    SMOLLM2_SHA256,
    gguf_dir,
    minilm_dir,
    mpnet_dir,
    resolve,
    smollm2_dir,
)
from linft.param_groups import (
    architecture_summary,
    count_parameters,
    group_names,
    group_of,
    group_sort_key,
    is_head_param,
    lora_param_groups,
)
from linft.targets import (
    TARGET_SET_NAMES,
    base_module_name,
    layer_index,
    linear_module_names,
    match_targets,
    num_layers,
    resolve_targets,
    target_aliases,
)

# Order of the API reference (book/api.md documents this module): files and loading, targets, LoRA, groups.
__all__ = [
    "MINILM_SHA256", "SMOLLM2_GGUF", "SMOLLM2_SHA256", "MODEL_KEYS", "LoadedModel", "minilm_dir", "gguf_dir",
    "smollm2_dir", "mpnet_dir", "resolve", "load",
    "ARCH_TARGETS", "FUSED_TARGETS", "TARGET_SETS", "TARGET_SET_NAMES", "TARGET_ALIASES", "target_aliases",
    "layer_index", "num_layers", "base_module_name", "linear_module_names", "resolve_targets", "match_targets",
    "DEFAULT_ALPHA_PER_RANK", "default_alpha", "lora_seed", "LORA_INITS", "add_lora",
    "is_head_param", "group_of", "group_sort_key", "group_names", "lora_param_groups", "count_parameters",
    "architecture_summary",
]

# The constants are bound by assignment so that their doc comments show in the API reference too.

#: sha256 of the shipped weight files, checked before first use.
MINILM_SHA256 = _model_files.MINILM_SHA256
#: LoRA target aliases per ``config.model_type``: alias -> regular expression (``re.fullmatch``) on full module names.
ARCH_TARGETS: dict[str, dict[str, str]] = _targets.ARCH_TARGETS
#: Architectures whose q, k, v projections are one fused module, adapted as the alias given here.
FUSED_TARGETS: dict[str, tuple[tuple[str, ...], str, str]] = _targets.FUSED_TARGETS
#: Named target sets, usable wherever targets are taken: ``add_lora(model, targets="qkv")``.
TARGET_SETS: dict[str, tuple[str, ...]] = _targets.TARGET_SETS
#: BERT's alias table (alias -> regex), kept under its old name for code that imports it to list aliases in errors;
#: :func:`target_aliases` gives the table of any model.
TARGET_ALIASES = _targets.TARGET_ALIASES
#: The default LoRA scale: ``alpha = DEFAULT_ALPHA_PER_RANK * rank`` (so alpha / rank = 2 whatever the rank).
DEFAULT_ALPHA_PER_RANK = _lora.DEFAULT_ALPHA_PER_RANK
#: how LoRA A matrices are drawn: per module name (default) or by peft under one global seed
LORA_INITS = _lora.LORA_INITS


@dataclass
class LoadedModel:
    """A classifier and its tokenizer. ``source`` is the folder or id the weights came from."""

    model: nn.Module
    tokenizer: object
    key: str
    source: str

    def __iter__(self):  # allows ``model, tokenizer = load(...)``
        return iter((self.model, self.tokenizer))


def load(
    name_or_path: str = "minilm",
    num_labels: int = 2,
    device: str | torch.device | None = None,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> LoadedModel:
    """Load ``name_or_path`` as a sequence classifier with a fresh ``num_labels``-way head.

    The head is initialized under ``torch.manual_seed(seed)`` so runs are reproducible. Attention is
    eager (the NTK code relies on plain autograd through it). The tokenizer pads on the right (many decoder
    checkpoints ship left-padding tokenizers); decoders without a pad token get ``pad_token = eos``.
    Returns a :class:`LoadedModel` (unpacks as ``model, tokenizer``), model in eval mode on ``device``.
    """
    if not isinstance(num_labels, int) or num_labels < 1:
        raise LinftError(f"num_labels must be a positive integer, got {num_labels!r}")
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    source = resolve(name_or_path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError) as err:
        raise LinftError(
            f"could not load a tokenizer for {name_or_path!r} ({type(err).__name__}): pass a local model folder, "
            f"a reachable hub id, or one of {MODEL_KEYS}"
        ) from err
    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()  # the "newly initialized classifier" notice is expected
    hf_logging.disable_progress_bar()  # loading takes well under a second; keep notebooks clean
    try:
        torch.manual_seed(seed)
        model = AutoModelForSequenceClassification.from_pretrained(
            source, num_labels=num_labels, attn_implementation="eager", dtype=dtype
        )
    except (OSError, ValueError) as err:
        raise LinftError(
            f"could not load model {name_or_path!r} as a sequence classifier ({type(err).__name__}: "
            f"{str(err).splitlines()[0][:160]}): pass a Hugging Face model folder or id"
        ) from err
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
    tokenizer.padding_side = "right"
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise LinftError(
                f"the tokenizer of {name_or_path!r} has neither a pad nor an eos token: give it a pad token "
                "(tokenizer.pad_token = ...) and save the folder again"
            )
        tokenizer.pad_token = tokenizer.eos_token
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    model.to(device or "cpu").eval()
    key = name_or_path if name_or_path in MODEL_KEYS else Path(name_or_path.rstrip("/\\") or source).name
    return LoadedModel(model=model, tokenizer=tokenizer, key=key, source=source)
