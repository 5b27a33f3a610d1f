"""linft.experiments at smoke size, chapter 2's protocols: consistent tables and the numbers the chapter quotes."""

import numpy as np
import pytest
import torch

from linft import LinftError
from linft.experiments import anchoring, anchoring_runs
from linft.scales import get_scale
from linft.train import gd_step_size

TASKS = ["mr", "subj"]


@pytest.fixture(scope="module")
def plan(cfg):
    return anchoring.plan_for(cfg, gd_n=4, gd_steps=2, n_radii=4, sweep_eval=10, gap_n=4, sweep_steps=2)


@pytest.fixture(scope="module")
def gds(cfg, plan, one_thread):
    return anchoring.gd_seeds("mr", cfg, plan)


@pytest.fixture(scope="module")
def lip(gds, plan):
    return anchoring.lipschitz_held_out(gds, plan)


def test_plan_for_reads_counts_lists_and_rejects_unknown_fields(cfg):
    plan = anchoring.plan_for(cfg, gd_seeds=3, sweep_seeds=[4, 7])
    assert plan.gd_seeds == (0, 1, 2) and plan.sweep_seeds == (4, 7)
    assert plan.sweep_lambdas == cfg.lambdas and plan.sweep_steps == cfg.train_steps  # None: the scale's own
    assert anchoring.plan_for(cfg, sweep_lambdas=[0, 5]).sweep_lambdas == (0.0, 5.0)
    default = anchoring.plan_for(get_scale("default", section="training"))
    assert len(default.gd_seeds) >= 3 and len(default.sweep_seeds) >= 3 and default.sweep_eval == 1000
    assert default.n_radii >= 8 and set(default.anchors) == {"all", "lora"}
    with pytest.raises(LinftError, match="unknown plan field"):
        anchoring.plan_for(cfg, seeds=3)
    with pytest.raises(LinftError, match=">= 2 GD seeds"):
        anchoring.plan_for(cfg, gd_seeds=1)
    with pytest.raises(LinftError, match="c must be"):
        anchoring.plan_for(cfg, c=2.0)
    text = anchoring.plan_text(plan, cfg)
    assert text["plan_gd_seeds"] == 3 and text["bar_gap"] == f"{anchoring.GAP_RATIO_BAR:g}"


def test_step_size_per_lambda_is_c_over_beta_plus_lambda_and_every_step_is_logged(cfg, setup):
    gd = anchoring.gd_runs(setup, cfg, None, 4, seed=0, c=0.5, steps=3)
    batch = gd.batch
    for lam, run in gd.runs.items():
        measured = gd_step_size(setup.model, batch, lam, 0.5)
        want = measured["lr"]
        assert gd.lr[lam] == pytest.approx(want, rel=1e-6) == run.config.lr
        assert gd.kappa_lambda[lam] == pytest.approx(measured["kappa_lambda"], rel=1e-6)
        kappa = (measured["mu_max"] + measured["N"] * lam) / (measured["mu_min"] + measured["N"] * lam)
        assert gd.kappa_lambda[lam] == pytest.approx(kappa, rel=1e-9)
        assert gd.lr[lam] == pytest.approx(0.5 / (gd.beta + lam))
        assert run.log["step"].tolist() == [0, 1, 2, 3] and len(run.objective) == 4  # every step logged and checked
        assert run.config.anchor == "all" and run.config.optimizer == "gd" and run.config.batch_size is None
    assert gd.lr[50.0] * 50.0 < 1  # the old fixed step 0.02 had ηλ = 1 at λ = 50
    assert gd.kappa_lambda[50.0] < gd.kappa_lambda[0.0]  # the ridge Nλ compresses the spectrum
    assert sum(gd.descent.values()) == len(gd.increases)
    fixed = anchoring.gd_runs(setup, cfg, 0.02, 4, steps=1)
    assert fixed.lr_of(50.0) == 0.02 and np.isnan(fixed.beta)


def test_seeds_vary_data_lora_init_and_head(gds):
    a, b = gds.setups[0], gds.setups[1]
    assert not torch.equal(a.train["input_ids"], b.train["input_ids"])
    pa, pb = dict(a.model.named_parameters()), dict(b.model.named_parameters())
    lora_a = next(n for n in pa if "lora_A" in n)
    head = next(n for n, p in pa.items() if p.requires_grad and "lora" not in n)
    assert not torch.equal(pa[lora_a], pb[lora_a]) and not torch.equal(pa[head], pb[head])
    assert gds.runs[0].beta != gds.runs[1].beta


def test_lipschitz_never_uses_the_checked_seeds_own_trajectory(gds, lip, plan):
    for seed, directions in lip.directions.items():
        own = [anchoring_runs._delta(run) for run in gds.runs[seed].runs.values()]
        others = [anchoring_runs._delta(run) for s, gd in gds.runs.items() if s != seed for run in gd.runs.values()]

        def cos(u, v):
            dot = sum(float((u[n] * v[n]).sum()) for n in u)
            return dot / np.sqrt(sum(float((u[n] ** 2).sum()) for n in u) * sum(float((v[n] ** 2).sum()) for n in v))

        for u in directions:
            assert all(abs(cos(u, d)) < 1 - 1e-6 for d in own)
        other_dirs = directions[plan.n_random + plan.n_power:]
        assert len(other_dirs) == len(others)
        assert all(max(abs(cos(u, d)) for d in others) > 1 - 1e-6 for u in other_dirs)
        rows = lip.samples[(lip.samples["seed"] == seed) & (lip.samples["direction"] == anchoring.DIRECTION_KINDS[2])]
        assert not rows["source"].str.startswith(f"seed {seed},").any()
    kinds = set(lip.samples["direction"])
    assert kinds == set(anchoring.DIRECTION_KINDS)
    assert len(lip.radii) == plan.n_radii and len(lip.power) == len(gds.runs) * plan.n_power * (plan.power_iters + 1)
    # the grid reaches above every drift and every drift bound, so every step has a radius ≥ its drift
    check = anchoring.bound_check_seeds(gds, lip)
    assert (check.tables["radius_measured"] >= check.tables["drift"]).all()
    anchored = check.tables[check.tables["lam"] > 0]
    assert (anchored["radius_anchored"] >= anchored["drift_bound"]).all()


def test_bound_check_counts_every_step_of_every_seed_and_lambda(gds, lip, plan, cfg):
    check = anchoring.bound_check_seeds(gds, lip)
    n_runs = len(plan.gd_seeds) * len(cfg.lambdas)
    assert len(check.tables) == n_runs * (plan.gd_steps + 1)
    checked = check.tables[check.tables["step"] > 0]
    assert check.text["n_checked"] == len(checked) == check.headline["steps_checked"]
    assert check.text["obj_steps"] == n_runs * plan.gd_steps and len(check.objectives) == n_runs * (plan.gd_steps + 1)
    assert check.headline["violations_drift"] == int(checked["drift_exceeds"].sum())
    assert len(check.violations) == int(checked[["gap_exceeds_measured", "gap_exceeds_anchored",
                                                 "drift_exceeds"]].any(axis=1).sum())
    for column in ("R_T", "R_T/R0", "gap", "rel_gap", "rel_change_gap", "gap_per_drift2", "lr"):
        assert column in check.final
    assert len(check.final) == n_runs and set(check.ratios.index) == set(plan.gd_seeds)
    assert "all held-out (used)" in check.by_directions.index
    assert check.by_directions.loc["all held-out (used)", "gap > (L/2)·drift²"] == check.text["viol_meas"]
    per_lam = check.headline["per_lam_mean_over_seeds"]
    assert set(per_lam) == {f"lam={lam:g}" for lam in cfg.lambdas} and "R_T/R0" in per_lam["lam=50"]
    assert check.text["bound_verdict"] and check.text["obj_verdict"]


def test_tradeoff_seeds_has_both_anchors_intervals_and_full_eval(cfg, plan, gds):
    tasks = ["mr", "subj"]
    trade = anchoring.tradeoff_seeds(tasks, cfg, plan, setups={("mr", s): su for s, su in gds.setups.items()})
    runs = trade.runs
    positive = [lam for lam in plan.sweep_lambdas if lam > 0]
    assert len(runs) == len(tasks) * len(plan.sweep_seeds) * (1 + len(plan.anchors) * len(positive))
    for task in tasks:
        for lam in positive:
            cell = trade.summary[(trade.summary["task"] == task) & (trade.summary["lam"] == lam)]
            assert set(cell["anchor"]) == {"all", "lora"}
    assert (runs["n_eval"] == plan.sweep_eval).all()  # min(sweep_eval, validation size), not cfg.n_eval
    assert set(runs["seed"]) == set(plan.sweep_seeds)
    summary = trade.summary
    assert ((summary["acc_low"] <= summary["acc"] + 1e-12) & (summary["acc"] <= summary["acc_high"] + 1e-12)).all()
    for column in ("rel_gap", "rel_change_gap", "gap_per_drift2", "R_T", "R_T/R0"):
        assert column in summary
    ratios = trade.ratios
    assert len(ratios) == len(tasks) * len(plan.anchors)
    assert (ratios["gap_ratio_low"] <= ratios["gap_ratio_high"]).all()
    assert len(trade.anchors) == len(tasks) * len(positive)
    assert trade.text["tr_all_gap_verdict"] in ("met on every task", "met on some tasks", "not met on any task")
    assert set(trade.headline["gap_ratio_lam0_over_lammax_lora"]) == set(tasks)
    # the accuracy recorded is the one recomputed from the per-example correctness
    key = ("subj", plan.sweep_seeds[0], max(positive), "lora")
    row = runs.set_index(["task", "seed", "lam", "anchor"]).loc[[key]]
    assert row["eval_acc"].iloc[0] == pytest.approx(trade.arrays[key]["correct"].mean())
