"""linft.stats: bootstrap intervals cover what they should and refuse bad input."""

import numpy as np
import pytest

from linft import LinftError
from linft.stats import accuracy_ci, bootstrap_ci, hierarchical_ci, paired_bootstrap_ci, verdict


def test_bootstrap_interval_contains_the_estimate_and_narrows_with_n():
    rng = np.random.default_rng(0)
    small = rng.integers(0, 2, 50)
    large = rng.integers(0, 2, 5000)
    est, low, high = bootstrap_ci(small)
    assert low <= est <= high and est == pytest.approx(small.mean())
    _, low_l, high_l = bootstrap_ci(large)
    assert high_l - low_l < (high - low) / 5  # width shrinks like 1/sqrt(n)


def test_bootstrap_matches_the_normal_interval_of_a_proportion():
    values = np.r_[np.ones(700), np.zeros(300)]
    _, low, high = bootstrap_ci(values, n_boot=4000)
    half = 1.96 * np.sqrt(0.7 * 0.3 / 1000)
    assert low == pytest.approx(0.7 - half, abs=0.006) and high == pytest.approx(0.7 + half, abs=0.006)


def test_custom_statistic_and_seed():
    values = np.arange(20.0)
    first = bootstrap_ci(values, np.median, seed=1)
    assert bootstrap_ci(values.copy(), np.median, seed=1) == first  # re-run on a copy: the seed fixes the resamples
    assert bootstrap_ci(values, np.median, seed=2)[1:] != first[1:]  # another seed, other resamples
    assert first[0] == 9.5 and bootstrap_ci(values, np.median)[0] == 9.5  # the estimate is the statistic itself
    assert first[1] < 9.5 < first[2]


def test_paired_interval_excludes_zero_for_a_real_difference():
    rng = np.random.default_rng(1)
    base = rng.normal(size=400)
    diff, low, high = paired_bootstrap_ci(base + 0.3 + 0.05 * rng.normal(size=400), base)
    assert low > 0 and diff == pytest.approx(0.3, abs=0.02)


def test_accuracy_ci():
    out = accuracy_ci([1, 0, 1, 1], [1, 1, 1, 1])
    assert out["acc"] == 0.75 and out["n"] == 4 and out["low"] <= 0.75 <= out["high"]


def test_verdicts():
    assert verdict(3, 3) == "holds" and verdict(0, 3) == "does not hold" and verdict(1, 3) == "partly holds"
    assert verdict(0, 0) == "not yet tested"


@pytest.mark.parametrize("call, match", [
    (lambda: bootstrap_ci([]), "non-empty"),
    (lambda: bootstrap_ci([1.0, np.nan]), "non-finite"),
    (lambda: bootstrap_ci([1.0], level=95), "level"),
    (lambda: bootstrap_ci([1.0], n_boot=0), "n_boot"),
    (lambda: paired_bootstrap_ci([1.0, 2.0], [1.0]), "pair up"),
    (lambda: accuracy_ci([1, 0], [1]), "one length"),
    (lambda: verdict(4, 3), "passed <= total"),
])
def test_bad_input(call, match):
    with pytest.raises(LinftError, match=match):
        call()


def test_hierarchical_ci():
    rng = np.random.default_rng(0)
    same = [np.ones(20), np.ones(30)]
    assert hierarchical_ci(same) == (1.0, 1.0, 1.0)
    data = [rng.normal(0.6, 0.1, 50) for _ in range(3)]
    est, low, high = hierarchical_ci(data)
    assert low < est < high and est == pytest.approx(np.mean([d.mean() for d in data]))
    ratio, rlo, rhi = hierarchical_ci([np.column_stack([d, d / 2]) for d in data],
                                               lambda a: a[:, 0].sum() / a[:, 1].sum(), log=True)
    assert ratio == pytest.approx(2.0) and rlo == pytest.approx(2.0) and rhi == pytest.approx(2.0)
    with pytest.raises(LinftError, match="non-empty"):
        hierarchical_ci([np.array([])])
