"""Does a predictor rank configurations the way their outcomes do? Rank correlations with their uncertainty.

For a predictor x (e.g. log κ at initialization) and an outcome y (eval accuracy, training loss) over runs:

- :func:`rank_correlation`: Spearman ρ or Kendall τ with a two-sided permutation p-value and a percentile bootstrap
  interval over the pairs;
- :func:`grouped_rank_correlation`: the same within each group (a task) and pooled across groups after
  normalising per group (ranks within the group, centred and scaled to [−1, 1]), with permutations and bootstrap
  resamples drawn within groups, so a task that is simply easier cannot make a predictor look good;
- :func:`noise_ceiling`: how well the outcome ranks itself across seeds (split-half Spearman of per-configuration
  means, Spearman–Brown corrected) — no predictor can be expected to do better than the outcome's own reliability.

Runs with a non-finite x or y are dropped (and counted); fewer than 3 pairs, or a constant x or y, give NaN
statistics with the reason in ``note`` rather than an error, so a sweep's summary table always has every row.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from linft import LinftError, check_choice, check_positive_int, require_columns

__all__ = ["METHODS", "RankCorrelation", "grouped_rank_correlation", "noise_ceiling", "rank_correlation"]

METHODS = ("spearman", "kendall")


@dataclass(frozen=True)
class RankCorrelation:
    """``r`` (ρ or τ), two-sided permutation ``p_value``, bootstrap interval ``low``–``high`` at ``level``, ``n`` pairs
    used, ``dropped`` non-finite pairs, and ``note`` when a statistic is undefined."""

    method: str
    r: float
    p_value: float
    low: float
    high: float
    n: int
    dropped: int = 0
    level: float = 0.95
    note: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


def _statistic(method: str):
    if method == "spearman":
        return lambda x, y: scipy_stats.spearmanr(x, y).statistic
    return lambda x, y: scipy_stats.kendalltau(x, y).statistic


def _rowwise_spearman(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman ρ of each row pair of x, y [B, n] (Pearson of average ranks); NaN for a constant row."""
    rx = scipy_stats.rankdata(x, axis=1)
    ry = scipy_stats.rankdata(y, axis=1)
    rx -= rx.mean(axis=1, keepdims=True)
    ry -= ry.mean(axis=1, keepdims=True)
    denominator = np.sqrt((rx**2).sum(1) * (ry**2).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, (rx * ry).sum(1) / denominator, np.nan)


def _resampled(method: str, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The statistic of each row pair of x, y [B, n] (vectorized for Spearman; NaN where a row is constant)."""
    if method == "spearman":
        return _rowwise_spearman(x, y)
    stat = _statistic(method)
    return np.array([stat(a, b) if np.ptp(a) > 0 and np.ptp(b) > 0 else np.nan for a, b in zip(x, y)])


def _pairs(x, y) -> tuple[np.ndarray, np.ndarray, int]:
    x, y = np.asarray(x, dtype=np.float64).reshape(-1), np.asarray(y, dtype=np.float64).reshape(-1)
    if x.shape != y.shape:
        raise LinftError(f"x and y must pair up run by run, got {x.size} and {y.size} values")
    keep = np.isfinite(x) & np.isfinite(y)
    return x[keep], y[keep], int((~keep).sum())


def _undefined(method, n, dropped, level, note) -> RankCorrelation:
    return RankCorrelation(method, math.nan, math.nan, math.nan, math.nan, n, dropped, level, note)


def _degenerate(x: np.ndarray, y: np.ndarray) -> str:
    if x.size < 3:
        return f"only {x.size} finite pairs (need 3)"
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return "x or y is constant"
    return ""


def rank_correlation(x, y, *, method: str = "spearman", n_permutations: int = 2000, n_boot: int = 2000,
                     level: float = 0.95, seed: int = 0) -> RankCorrelation:
    """Rank correlation of ``x`` [n] and ``y`` [n] with a permutation p-value and a bootstrap interval.

    p = (1 + #{|r_perm| ≥ |r|}) / (1 + n_permutations), permuting y; the interval is the percentile bootstrap over
    resampled pairs (resamples with a constant side are skipped).
    """
    check_choice("method", method, METHODS)
    n_permutations, n_boot = check_positive_int(n_permutations, "n_permutations"), check_positive_int(n_boot, "n_boot")
    x, y, dropped = _pairs(x, y)
    note = _degenerate(x, y)
    if note:
        return _undefined(method, x.size, dropped, level, note)
    r = float(_statistic(method)(x, y))
    rng = np.random.default_rng(seed)
    perm = _resampled(method, np.broadcast_to(x, (n_permutations, x.size)),
                      rng.permuted(np.broadcast_to(y, (n_permutations, y.size)), axis=1))
    p = (1 + int((np.abs(perm) >= abs(r) - 1e-12).sum())) / (1 + n_permutations)
    idx = rng.integers(0, x.size, (n_boot, x.size))
    boots = _resampled(method, x[idx], y[idx])
    boots = boots[np.isfinite(boots)]
    tail = (1 - level) / 2
    low, high = (math.nan, math.nan)
    if boots.size:
        low, high = float(np.quantile(boots, tail)), float(np.quantile(boots, 1 - tail))
    return RankCorrelation(method, r, p, low, high, int(x.size), dropped, level)


def _within_group_scores(values: pd.Series, groups: pd.Series) -> np.ndarray:
    """Ranks within each group, centred and scaled to [−1, 1] (0 for a group of one)."""
    ranks = values.groupby(groups).rank(method="average")
    sizes = values.groupby(groups).transform("count")
    return ((2 * ranks - sizes - 1) / np.maximum(sizes - 1, 1)).to_numpy(dtype=np.float64)


def grouped_rank_correlation(frame: pd.DataFrame, x: str, y: str, *, group: str = "task", method: str = "spearman",
                             n_permutations: int = 2000, n_boot: int = 2000, level: float = 0.95,
                             seed: int = 0) -> pd.DataFrame:
    """Rank correlation of columns ``x`` and ``y`` within each ``group``, plus a pooled row (``group`` = "pooled").

    Pooled: both columns replaced by their within-group ranks scaled to [−1, 1]; the permutation test permutes y
    within groups and the bootstrap resamples rows within groups. Returns one row per group: ``group``, ``method``,
    ``r``, ``p_value``, ``low``, ``high``, ``n``, ``dropped``, ``note``.
    """
    require_columns(frame, [x, y, group], "frame")
    check_choice("method", method, METHODS)
    rows = []
    for name, part in frame.groupby(group, sort=True):
        res = rank_correlation(part[x], part[y], method=method, n_permutations=n_permutations, n_boot=n_boot,
                               level=level, seed=seed)
        rows.append({"group": name, **res.as_dict()})
    finite = frame[np.isfinite(frame[x].astype(float)) & np.isfinite(frame[y].astype(float))]
    dropped = len(frame) - len(finite)
    gx = _within_group_scores(finite[x].astype(float), finite[group])
    gy = _within_group_scores(finite[y].astype(float), finite[group])
    labels = finite[group].to_numpy()
    note = _degenerate(gx, gy)
    if note:
        pooled = _undefined(method, len(finite), dropped, level, note).as_dict()
    else:
        r = float(_statistic(method)(gx, gy))
        rng = np.random.default_rng(seed)
        members = [np.flatnonzero(labels == g) for g in pd.unique(labels)]
        shuffled = np.broadcast_to(gy, (n_permutations, gy.size)).copy()
        for idx in members:  # permute y within each group
            shuffled[:, idx] = rng.permuted(shuffled[:, idx], axis=1)
        perm = _resampled(method, np.broadcast_to(gx, shuffled.shape), shuffled)
        p = (1 + int((np.abs(perm) >= abs(r) - 1e-12).sum())) / (1 + n_permutations)
        idx = np.concatenate([m[rng.integers(0, m.size, (n_boot, m.size))] for m in members], axis=1)
        boots = _resampled(method, gx[idx], gy[idx])
        boots = boots[np.isfinite(boots)]
        tail = (1 - level) / 2
        pooled = RankCorrelation(method, r, p, float(np.quantile(boots, tail)), float(np.quantile(boots, 1 - tail)),
                                 len(finite), dropped, level).as_dict()
    rows.append({"group": "pooled", **pooled})
    return pd.DataFrame(rows)


def noise_ceiling(frame: pd.DataFrame, outcome: str, *, unit: str = "config", seed_col: str = "seed",
                  group: str = "task") -> pd.DataFrame:
    """Split-half reliability of the seed-averaged outcome's ranking of ``unit``s within each ``group``.

    The seeds are split into two halves of **equal** size h = ⌊S/2⌋ (every such split, for S ≤ 8 seeds; with an odd
    S one seed sits out of each split in turn); for each split the Spearman ρ between the halves' per-unit mean
    outcomes, over the units that have a run in both halves (a missing run drops that unit from that split only,
    so no NaN spreads). The mean ρ is the reliability of an h-seed mean; Spearman–Brown with k = S/h gives that of
    the S-seed mean, ρ_S = kρ/(1 + (k − 1)ρ) — the quantity a configuration-level test correlates with.
    ``ceiling`` = √ρ_S (clipped at 0) bounds the |ρ| any predictor can reach against the seed-averaged outcome.
    Returns one row per group: ``group``, ``split_half``, ``reliability``, ``ceiling``, ``n_units``, ``n_seeds``.
    """
    require_columns(frame, [outcome, unit, seed_col, group], "frame")
    rows = []
    for name, part in frame.groupby(group, sort=True):
        table = part.pivot_table(index=unit, columns=seed_col, values=outcome, aggfunc="mean")
        seeds = list(table.columns)
        row = {"group": name, "split_half": math.nan, "reliability": math.nan, "ceiling": math.nan,
               "n_units": len(table), "n_seeds": len(seeds)}
        if len(seeds) < 2 or len(table) < 3:
            rows.append(row)
            continue
        if len(seeds) > 8:
            raise LinftError(f"noise_ceiling enumerates seed splits; {len(seeds)} seeds are too many (max 8)")
        half = len(seeds) // 2
        values = []
        for first in itertools.combinations(seeds, half):
            rest = [s for s in seeds if s not in first]
            for second in itertools.combinations(rest, half):
                if min(second) < min(first):
                    continue  # each unordered pair of halves once
                a, b = table[list(first)].mean(axis=1), table[list(second)].mean(axis=1)
                both = a.notna() & b.notna()
                if both.sum() >= 3 and a[both].nunique() > 1 and b[both].nunique() > 1:
                    values.append(scipy_stats.spearmanr(a[both], b[both]).statistic)
        split = float(np.mean(values)) if values else math.nan
        if np.isfinite(split) and split > -1:
            k = len(seeds) / half
            row["reliability"] = max(-1.0, k * split / (1 + (k - 1) * split))
            row["ceiling"] = math.sqrt(max(row["reliability"], 0.0))
        row["split_half"] = split
        rows.append(row)
    return pd.DataFrame(rows)
