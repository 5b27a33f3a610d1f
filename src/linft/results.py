"""Each chapter's headline numbers, written to ``_build/results/<chapter>-<scale>.json``; the one reader and
writer of linft's JSON (results files and the CLI's ``--json`` output).

Non-finite numbers, one way: JSON has no inf or NaN, so :func:`json_safe` (and with it :func:`dumps`,
:func:`write_results` and ``linft … --json``) writes every non-finite float (inf, −inf, NaN) as ``null``.
:func:`load_results` and :func:`read_results` map each ``null`` back to ``float("nan")`` ("no finite value": the
file does not keep which non-finite value it was, nor a None that was written), so numeric code keeps working
(``float(x)``, comparisons are False). Files written before this rule hold ``"inf"``, ``"-inf"`` and ``"nan"``
strings; the reader maps those to the floats they name.
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from pathlib import Path
from typing import Any

from linft import LinftError, __version__

__all__ = ["results_dir", "json_safe", "dumps", "load_results", "write_results", "read_results", "glue_all"]

#: the strings earlier versions wrote for non-finite floats, read back as those floats
_LEGACY_NONFINITE = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}


def results_dir() -> Path:
    """``$LINFT_RESULTS_DIR`` when set, else ``_build/results`` under the current directory."""
    return Path(os.environ.get("LINFT_RESULTS_DIR") or Path("_build") / "results")


def json_safe(value: Any) -> Any:
    """Tensors, numpy values and nested containers as JSON-ready Python values, non-finite floats as None."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 1) == 0:
        return json_safe(value.item())  # 0-d tensors and numpy scalars
    if hasattr(value, "tolist"):
        return json_safe(value.tolist())  # tensors and arrays
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def dumps(payload: Any, **kwargs) -> str:
    """``json.dumps`` of :func:`json_safe` ``(payload)`` (strict JSON: ``allow_nan=False``); ``kwargs`` go to
    ``json.dumps`` (``indent``, ``default``, ...)."""
    return json.dumps(json_safe(payload), allow_nan=False, **kwargs)


def _from_json(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    if value is None:
        return math.nan
    if isinstance(value, str) and value in _LEGACY_NONFINITE:
        return _LEGACY_NONFINITE[value]
    return value


def load_results(path: Path | str) -> Any:
    """The whole JSON payload of a results file, ``null`` as NaN (and legacy ``"inf"``/``"-inf"``/``"nan"``
    strings as floats; see the module docstring)."""
    return _from_json(json.loads(Path(path).read_text()))


def write_results(chapter: str, scale: str, numbers: dict[str, Any], directory: Path | None = None) -> Path:
    """Write ``numbers`` (nested dict) to ``<directory>/<chapter>-<scale>.json`` and return the path.

    A ``meta`` block (linft/torch versions, platform, time) is added. Non-finite floats are written as ``null``
    so the file stays valid JSON (:func:`json_safe`).
    """
    import torch

    if not numbers:
        raise LinftError(f"no headline numbers given for chapter {chapter!r}: pass a non-empty dict")
    directory = Path(directory) if directory is not None else results_dir()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{chapter}-{scale}.json"
    payload = {
        "chapter": chapter,
        "scale": scale,
        "numbers": json_safe(numbers),
        "meta": {
            "linft": __version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
            "machine": platform.machine(),
            "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        },
    }
    path.write_text(dumps(payload, indent=2, sort_keys=False) + "\n")
    return path


def glue_all(mapping: dict[str, Any]) -> None:
    """Glue every ``name: value`` of ``mapping`` into the executed notebook for ``{glue:text}`name``` references
    (``myst_nb.glue`` with ``display=False``), so a chapter's prose quotes only numbers the run computed."""
    from myst_nb import glue

    for name, value in mapping.items():
        glue(str(name), value, display=False)


def read_results(chapter: str, scale: str, directory: Path | None = None) -> dict[str, Any]:
    """Read back what :func:`write_results` wrote (the ``numbers`` block; ``null`` as NaN, :func:`load_results`)."""
    directory = Path(directory) if directory is not None else results_dir()
    path = directory / f"{chapter}-{scale}.json"
    if not path.exists():
        raise LinftError(f"no results at {path}: run chapter {chapter!r} at scale {scale!r} first")
    return load_results(path)["numbers"]
