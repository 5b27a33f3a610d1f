"""Intervals for the book's numbers: percentile bootstrap over examples (and over seeds), computed verdicts.

Every accuracy the book reports comes with a 95 % interval from :func:`bootstrap_ci`; a difference between two
settings measured on the same examples uses :func:`paired_bootstrap_ci`, which resamples examples jointly.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from linft import LinftError, check_positive_int

__all__ = ["bootstrap_ci", "paired_bootstrap_ci", "hierarchical_ci", "accuracy_ci", "verdict"]


def _as_array(values, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or array.size == 0:
        raise LinftError(f"{name} must be a non-empty 1-D sequence of numbers, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise LinftError(f"{name} has non-finite values: drop NaN/inf before computing an interval")
    return array


def _check_level(level: float) -> float:
    if not isinstance(level, (int, float)) or not 0 < level < 1:
        raise LinftError(f"level must be a number in (0, 1), e.g. 0.95, got {level!r}")
    return float(level)


def bootstrap_ci(values, statistic: Callable[[np.ndarray], float] = np.mean, *, n_boot: int = 2000,
                 level: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """``(estimate, low, high)``: ``statistic(values)`` and its percentile-bootstrap interval at ``level``.

    ``values``: [n] per-example numbers (e.g. 0/1 correctness, per-seed accuracies). ``statistic`` maps a [n]
    array to a number; it is applied to ``n_boot`` resamples drawn with replacement under ``seed``.
    """
    array = _as_array(values, "values")
    n_boot, level = check_positive_int(n_boot, "n_boot"), _check_level(level)
    rng = np.random.default_rng(seed)
    index = rng.integers(0, array.size, size=(n_boot, array.size))
    stats = np.array([statistic(array[row]) for row in index]) if statistic is not np.mean else array[index].mean(1)
    tail = (1 - level) / 2
    return float(statistic(array)), float(np.quantile(stats, tail)), float(np.quantile(stats, 1 - tail))


def paired_bootstrap_ci(a, b, *, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """``(mean(a − b), low, high)`` resampling the pairs (a_i, b_i) jointly: for two settings on the same examples."""
    a, b = _as_array(a, "a"), _as_array(b, "b")
    if a.shape != b.shape:
        raise LinftError(f"a and b must pair up example by example, got {a.size} and {b.size} values")
    return bootstrap_ci(a - b, n_boot=n_boot, level=level, seed=seed)


def hierarchical_ci(per_seed, statistic=np.mean, *, n_boot: int = 2000, level: float = 0.95, seed: int = 0,
                    log: bool = False) -> tuple[float, float, float]:
    """``(estimate, low, high)``: the mean over seeds of ``statistic(per-seed array)`` with a two-level percentile
    bootstrap interval: resample the seeds with replacement, then the rows (examples) of each drawn seed.

    ``per_seed``: one array per seed, rows = examples (1-D, or 2-D with paired columns, e.g. correctness of two
    settings on the same examples). With ``log`` the mean is taken over log ``statistic`` (a geometric mean, for
    ratios). With one seed this is the ordinary bootstrap over examples (:func:`linft.stats.bootstrap_ci`).
    """
    arrays = [np.asarray(a, dtype=np.float64) for a in per_seed]
    if not arrays or any(a.shape[0] == 0 for a in arrays):
        raise LinftError("hierarchical_ci needs one non-empty array per seed")
    n_boot = check_positive_int(n_boot, "n_boot")
    if not 0 < level < 1:
        raise LinftError(f"level must be in (0, 1), got {level!r}")

    def _value(a):
        v = float(statistic(a))
        return math.log(v) if log and v > 0 else (-math.inf if log else v)

    values = [_value(a) for a in arrays]
    if not np.all(np.isfinite(values)):
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    boots = np.empty(n_boot)
    for b in range(n_boot):
        picks = rng.integers(0, len(arrays), len(arrays))
        boots[b] = np.mean([_value(arrays[i][rng.integers(0, arrays[i].shape[0], arrays[i].shape[0])])
                            for i in picks])
    boots = boots[np.isfinite(boots)]
    tail = (1 - level) / 2
    est, low, high = float(np.mean(values)), float(np.quantile(boots, tail)), float(np.quantile(boots, 1 - tail))
    return (math.exp(est), math.exp(low), math.exp(high)) if log else (est, low, high)


def accuracy_ci(predictions, labels, *, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> dict:
    """``{"acc", "low", "high", "n"}``: accuracy of ``predictions`` [n] against ``labels`` [n] with its interval."""
    predictions, labels = np.asarray(predictions).reshape(-1), np.asarray(labels).reshape(-1)
    if predictions.shape != labels.shape or predictions.size == 0:
        raise LinftError(f"predictions and labels must be non-empty and of one length, got {predictions.size} "
                         f"and {labels.size}")
    acc, low, high = bootstrap_ci((predictions == labels).astype(np.float64), n_boot=n_boot, level=level, seed=seed)
    return {"acc": acc, "low": low, "high": high, "n": int(labels.size)}


def verdict(passed: int, total: int, *, all_word: str = "holds", some_word: str = "partly holds",
            none_word: str = "does not hold") -> str:
    """The verdict word for a claim tested ``total`` times and passed ``passed`` times (bar fixed beforehand)."""
    if not (isinstance(passed, (int, np.integer)) and isinstance(total, (int, np.integer)) and 0 <= passed <= total):
        raise LinftError(f"verdict needs 0 <= passed <= total, got passed={passed!r}, total={total!r}")
    if total == 0:
        return "not yet tested"
    return all_word if passed == total else none_word if passed == 0 else some_word
