"""linft.rankstats: rank correlations with permutation p-values and bootstrap intervals, pooled within groups,
and the seeds' noise ceiling."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from linft import LinftError
from linft.rankstats import grouped_rank_correlation, noise_ceiling, rank_correlation


def test_perfect_monotone_relation_is_significant_and_tight():
    x = np.arange(12.0)
    res = rank_correlation(x, np.exp(x), n_permutations=500, n_boot=300)
    assert res.r == 1.0 and res.low == pytest.approx(1.0) and res.high == pytest.approx(1.0)
    assert res.p_value == pytest.approx(1 / 501)  # no permutation of 12 values reaches ρ = 1 in 500 draws
    neg = rank_correlation(x, -x, method="kendall", n_permutations=200, n_boot=100)
    assert neg.r == pytest.approx(-1.0) and neg.p_value < 0.01


def test_independent_noise_is_not_significant_and_matches_scipy():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=40), rng.normal(size=40)
    res = rank_correlation(x, y, n_permutations=1000, n_boot=500)
    assert res.r == pytest.approx(scipy_stats.spearmanr(x, y).statistic)
    assert res.p_value > 0.05 and res.low < res.r < res.high
    tau = rank_correlation(x, y, method="kendall", n_permutations=200, n_boot=100)
    assert tau.r == pytest.approx(scipy_stats.kendalltau(x, y).statistic)


def test_permutation_p_value_agrees_with_the_exact_test_on_a_moderate_effect():
    rng = np.random.default_rng(0)
    x = rng.normal(size=30)
    y = x + rng.normal(scale=1.5, size=30)
    res = rank_correlation(x, y, n_permutations=4000, n_boot=200)
    exact = scipy_stats.spearmanr(x, y).pvalue
    assert abs(res.p_value - exact) < 0.03


def test_non_finite_pairs_are_dropped_and_counted_and_degenerate_input_is_nan():
    res = rank_correlation([1, 2, np.inf, 4, np.nan], [1, 2, 3, 4, 5], n_permutations=50, n_boot=50)
    assert res.n == 3 and res.dropped == 2
    const = rank_correlation([1, 1, 1, 1], [1, 2, 3, 4])
    assert math.isnan(const.r) and "constant" in const.note
    short = rank_correlation([1, 2], [1, 2])
    assert math.isnan(short.r) and "need 3" in short.note
    with pytest.raises(LinftError, match="pair up"):
        rank_correlation([1, 2, 3], [1, 2])
    with pytest.raises(LinftError, match="method"):
        rank_correlation([1, 2, 3], [1, 2, 3], method="pearson")


def _two_tasks(within_sign: float, seed: int = 0) -> pd.DataFrame:
    """Task "easy" has higher y everywhere and higher x everywhere; within each task y = within_sign · x + noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for task, shift in (("easy", 10.0), ("hard", 0.0)):
        x = rng.normal(size=15)
        for xi, noise in zip(x, rng.normal(scale=0.2, size=15)):
            rows.append({"task": task, "x": xi + shift, "y": within_sign * xi + noise + shift})
    return pd.DataFrame(rows)


def test_pooled_correlation_is_not_fooled_by_a_task_effect():
    frame = _two_tasks(within_sign=-1.0)
    naive = rank_correlation(frame["x"], frame["y"], n_permutations=100, n_boot=100).r
    assert naive > 0  # across tasks the easy task's offset makes x and y look aligned
    table = grouped_rank_correlation(frame, "x", "y", n_permutations=300, n_boot=200).set_index("group")
    assert list(table.index) == ["easy", "hard", "pooled"]
    assert table.loc["pooled", "r"] < -0.8 and table.loc["pooled", "p_value"] < 0.01
    assert (table.loc[["easy", "hard"], "r"] < -0.8).all()
    assert table.loc["pooled", "low"] <= table.loc["pooled", "r"] <= table.loc["pooled", "high"]


def test_grouped_requires_its_columns():
    with pytest.raises(LinftError, match="missing"):
        grouped_rank_correlation(pd.DataFrame({"x": [1.0], "y": [2.0]}), "x", "y")


def _seeded(noise: float) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    quality = np.linspace(0, 1, 8)
    return pd.DataFrame([{"task": "t", "config": c, "seed": s, "acc": q + rng.normal(scale=noise)}
                         for c, q in enumerate(quality) for s in range(4)])


def test_noise_ceiling_is_high_for_stable_outcomes_and_low_for_noise():
    stable = noise_ceiling(_seeded(0.01), "acc").iloc[0]
    noisy = noise_ceiling(_seeded(5.0), "acc").iloc[0]
    assert stable["reliability"] > 0.95 and stable["ceiling"] > 0.97
    assert noisy["ceiling"] < stable["ceiling"] and noisy["n_seeds"] == 4 and noisy["n_units"] == 8
    one_seed = noise_ceiling(_seeded(0.01).query("seed == 0"), "acc").iloc[0]
    assert math.isnan(one_seed["reliability"])


def test_noise_ceiling_survives_a_missing_run_and_splits_odd_seeds_evenly():
    frame = _seeded(0.01)
    seeds = sorted(frame["seed"].unique())
    missing = frame.drop(frame.index[(frame["seed"] == seeds[0])][:1])  # one run of one configuration is gone
    row = noise_ceiling(missing, "acc").iloc[0]
    assert np.isfinite(row["reliability"]) and row["reliability"] > 0.9
    three = frame[frame["seed"].isin(seeds[:3])]
    row3 = noise_ceiling(three, "acc").iloc[0]
    # halves of one seed each, Spearman–Brown to three seeds: k = 3
    assert row3["reliability"] == pytest.approx(3 * row3["split_half"] / (1 + 2 * row3["split_half"]))
