"""linft.experiments at smoke size, chapter 2's protocols: consistent tables and the numbers the chapter quotes."""

import pytest

from linft.experiments import anchoring, setup_task
from linft.scales import get_scale

TASKS = ["mr", "subj"]


@pytest.fixture(scope="module")
def cfg():
    return get_scale("smoke", n_train=8, n_eval=8, ntk_n=8, max_length=16, train_steps=2, batch_size=4,
                     lambdas=(0.0, 50.0))


@pytest.fixture(scope="module")
def setup(cfg, one_thread):
    return setup_task("mr", cfg, seed=0)


def test_bound_protocol_counts_every_checked_step(cfg, setup):
    gd = anchoring.gd_runs(setup, cfg, lr=0.02, gap_n=4)
    assert set(gd.runs) == set(cfg.lambdas) and gd.batch["input_ids"].shape[0] == 4
    lip = anchoring.lipschitz_study(setup, gd, "smoke")
    assert len(lip.radii) == 4 and (lip.samples["L_jac"] >= 0).all()
    check = anchoring.bound_check(gd, lip, "mr", cfg.train_steps)
    checked = check.tables[check.tables["step"] > 0]
    assert check.text["n_checked"] == len(checked) == check.headline["steps_checked"]
    assert check.headline["violations_drift"] == int(checked["drift_exceeds"].sum())
    assert len(check.violations) <= len(checked)


def test_tradeoff_sweep_rows(cfg, setup):
    trade = anchoring.tradeoff_sweep(TASKS, cfg, gap_n=4, setups={"mr": setup})
    per_task = 1 + 2 * sum(lam > 0 for lam in cfg.lambdas)  # plain for every λ, selective for λ > 0
    assert len(trade.sweep) == len(TASKS) * per_task
    assert set(trade.headline["tradeoff"]) == set(TASKS)
    assert trade.text["tr_verdict"] in ("meets", "does NOT meet")
