"""Where linft keeps caches and downloaded source files.

Everything goes under one cache root: ``$LINFT_CACHE`` when set, else ``~/.cache/linft``.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """The cache root (created on demand)."""
    root = Path(os.environ.get("LINFT_CACHE") or Path.home() / ".cache" / "linft").expanduser()
    root.mkdir(parents=True, exist_ok=True)
    return root


def cache_dir(kind: str) -> Path:
    """A sub-folder of the cache root for one kind of artifact (``models``, ``sources``, ``ntk``, ...)."""
    path = cache_root() / kind
    path.mkdir(parents=True, exist_ok=True)
    return path
