"""The eNTK disk cache: a key for everything a kernel depends on, and atomic save / load.

One job: :func:`cache_key` hashes the model (config and every weight, frozen or not), the parameter set, both
batches, the output and the kernel variant; :func:`save` writes a file atomically (a temporary file in the same
folder, then ``os.replace``), so a reader never sees a half-written kernel; :func:`load` returns None for a
missing or unreadable file (a miss: the kernel is computed again and the file rewritten).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import torch
from torch import nn


def cache_key(
    model: nn.Module,
    batch: dict[str, torch.Tensor],
    batch2: dict[str, torch.Tensor] | None,
    *,
    spec: str,
    names: list[str],
    output: str,
    kernel: str,
    per_layer: bool,
) -> str:
    """Hex digest of the model config and weights, the parameter set (``spec`` + ``names``), both batches
    (``batch2`` None: the kernel of ``batch`` with itself), ``output``, ``kernel`` and ``per_layer``."""
    h = hashlib.blake2b(digest_size=16)
    config = getattr(model, "config", None)
    h.update((config.to_json_string() if hasattr(config, "to_json_string") else type(model).__name__).encode())
    for name, p in model.named_parameters():  # every weight: frozen ones shape the kernel as much as trainable ones
        t = p.detach().cpu().contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}:{p.requires_grad}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    h.update(json.dumps([spec, list(names), output, kernel, bool(per_layer)]).encode())
    for b in (batch, batch2):
        if b is None:
            h.update(b"same")
            continue
        for key in sorted(b):
            h.update(key.encode())
            h.update(b[key].to(torch.int64).cpu().contiguous().numpy().tobytes())
            h.update(str(tuple(b[key].shape)).encode())
    return h.hexdigest()


def cache_file(cache, key: str) -> Path | None:
    """The file for ``key``: ``cache`` True → ``linft.paths.cache_dir("ntk")``, a path → that folder, else None."""
    if cache is False or cache is None:
        return None
    if cache is True:
        from linft.paths import cache_dir

        folder = cache_dir("ntk")
    else:
        folder = Path(cache).expanduser()
        folder.mkdir(parents=True, exist_ok=True)
    return folder / f"entk-{key}.pt"


def load(path: Path, keys) -> dict | None:
    """The saved dict, or None when the file is missing, unreadable, or does not hold exactly ``keys``."""
    if not path.exists():
        return None
    try:
        saved = torch.load(path, weights_only=True)
    except Exception:  # truncated or foreign file: a miss, rewritten after computing
        return None
    if not isinstance(saved, dict) or set(saved) != set(keys):
        return None
    return saved


def save(path: Path, fields: dict) -> None:
    """Write ``fields`` to ``path`` atomically: a temporary file in the same folder, then ``os.replace``."""
    handle, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".partial", dir=path.parent)
    os.close(handle)
    try:
        torch.save(fields, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
