"""Each chapter's headline numbers, written to ``_build/results/<chapter>-<scale>.json``."""

from __future__ import annotations

import json
import math
import os
import platform
import time
from pathlib import Path
from typing import Any

import torch

from linft import LinftError, __version__


def results_dir() -> Path:
    """``$LINFT_RESULTS_DIR`` when set, else ``_build/results`` under the current directory."""
    return Path(os.environ.get("LINFT_RESULTS_DIR") or Path("_build") / "results")


def _plain(value: Any) -> Any:
    """Convert tensors, numpy scalars and nested containers into JSON-ready Python values."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, torch.Tensor):
        return _plain(value.tolist())
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 1) == 0:
        return _plain(value.item())
    if hasattr(value, "tolist"):
        return _plain(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def write_results(chapter: str, scale: str, numbers: dict[str, Any], directory: Path | None = None) -> Path:
    """Write ``numbers`` (nested dict) to ``<directory>/<chapter>-<scale>.json`` and return the path.

    A ``meta`` block (linft/torch versions, platform, time) is added. Non-finite floats are written as
    strings so the file stays valid JSON.
    """
    if not numbers:
        raise LinftError(f"no headline numbers given for chapter {chapter!r}: pass a non-empty dict")
    directory = Path(directory) if directory is not None else results_dir()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{chapter}-{scale}.json"
    payload = {
        "chapter": chapter,
        "scale": scale,
        "numbers": _plain(numbers),
        "meta": {
            "linft": __version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
            "machine": platform.machine(),
            "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        },
    }
    path.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")
    return path


def glue_all(mapping: dict[str, Any]) -> None:
    """Glue every ``name: value`` of ``mapping`` into the executed notebook for ``{glue:text}`name``` references
    (``myst_nb.glue`` with ``display=False``), so a chapter's prose quotes only numbers the run computed."""
    from myst_nb import glue

    for name, value in mapping.items():
        glue(str(name), value, display=False)


def read_results(chapter: str, scale: str, directory: Path | None = None) -> dict[str, Any]:
    """Read back what :func:`write_results` wrote (the ``numbers`` block)."""
    directory = Path(directory) if directory is not None else results_dir()
    path = directory / f"{chapter}-{scale}.json"
    if not path.exists():
        raise LinftError(f"no results at {path}: run chapter {chapter!r} at scale {scale!r} first")
    return json.loads(path.read_text())["numbers"]
