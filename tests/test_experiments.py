"""linft.experiments at smoke size: the chapters' protocols return consistent tables and the numbers they quote."""

import pytest
import torch

from linft import data, models, spectral
from linft.experiments import anchoring, kernels, linearization, models_tasks, setup_task
from linft.scales import get_scale

TASKS = ["mr", "subj"]


@pytest.fixture(scope="module")
def cfg():
    return get_scale("smoke", n_train=8, n_eval=8, ntk_n=8, max_length=16, train_steps=2, batch_size=4,
                     lambdas=(0.0, 50.0))


@pytest.fixture(scope="module")
def setup(cfg, one_thread):
    return setup_task("mr", cfg, seed=0)


def test_setup_task_is_seeded_and_sized(cfg, setup):
    again = setup_task("mr", cfg, seed=0)
    assert setup.train["input_ids"].shape == (8, 16) and setup.eval["labels"].shape == (8,)
    assert setup.num_labels == len(data.get_task("mr").label_names)
    for key in setup.train:
        assert torch.equal(setup.train[key], again.train[key])
    a, b = dict(setup.model.named_parameters()), dict(again.model.named_parameters())
    assert all(torch.equal(a[n], b[n]) for n in a)
    counts = models.count_parameters(setup.model)
    assert counts["lora"] > 0 and counts["head"] > 0


def test_lora_sizes_and_examples(cfg):
    table = models_tasks.lora_sizes(cfg.model, rank=2)
    assert list(table.index) == list(models_tasks.LORA_TARGET_CHOICES)
    qv, all_ = table.loc["query, value", "LoRA params"], table.loc["all of the above", "LoRA params"]
    assert 0 < qv < all_
    rows = models_tasks.example_rows(TASKS, n=2)
    assert len(rows) == 4 and rows["text"].str.len().max() <= 161


def test_sanity_run_reports_what_it_ran(cfg, one_thread):
    run = models_tasks.sanity_run("mr", cfg)
    assert run.headline["steps"] == cfg.train_steps and run.headline["n_eval"] == cfg.n_eval
    assert run.log["step"].iloc[-1] == cfg.train_steps
    assert 0 <= run.majority <= 1 and ("beats" in run.verdict)


def test_real_vs_linearized_starts_together(cfg, setup):
    sweep = linearization.real_vs_linearized(setup, cfg, gap_n=4)
    assert list(sweep.summary.index) == list(cfg.lambdas)
    assert set(sweep.logs["kind"]) == {"real", "linearized"}
    start = sweep.logs[(sweep.logs["step"] == 0) & (sweep.logs["kind"] == "real")]
    assert (start["rel_gap_eval"] < 1e-4).all()  # real and linearized model are the same function at θ0
    assert len(sweep.outputs) == len(cfg.lambdas) * cfg.n_eval
    assert set(sweep.headline) == {f"lam={lam:g}" for lam in cfg.lambdas}
    assert sweep.text["lm_lam_hi"] == "50"


def test_margins():
    two = torch.tensor([[0.0, 1.0], [2.0, -1.0]])
    three = torch.tensor([[0.0, 3.0, 1.0]])
    assert torch.equal(linearization.margins(two), torch.tensor([1.0, -3.0]))
    assert torch.equal(linearization.margins(three), torch.tensor([2.0]))


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


@pytest.fixture(scope="module")
def task_kernels(cfg, one_thread):
    return kernels.task_kernels(TASKS, cfg, focus_task="mr")


def test_task_kernels_lora_is_the_sum_of_layer_blocks(task_kernels):
    for task, K in task_kernels.kernels.items():
        layers = sum(v for k, v in K.per_layer.items() if k != "head")
        assert torch.allclose(task_kernels.lora[task], layers, rtol=0, atol=0)
        assert task_kernels.per_task.loc[task, "N·C"] == 8 * data.get_task(task).num_labels
    assert (task_kernels.heads["λmax LoRA+head"] > task_kernels.heads["λmax LoRA"]).all()


def test_block_checks_and_growth(cfg, task_kernels):
    checks = kernels.block_checks(task_kernels, "mr", cfg, n_check=4)
    assert checks["sum_error"] < 1e-10 and checks["direct_error"] < 1e-5
    frame, growth = kernels.kappa_growth(task_kernels, cfg.ntk_n)
    assert growth["ns"] == [4, 8] and growth["monotone"]
    kappa8 = frame[(frame["task"] == "mr") & (frame["n"] == 8)]["kappa"].item()
    assert kappa8 == pytest.approx(spectral.condition_number(task_kernels.lora["mr"]))


def test_target_sets_and_variants(cfg, task_kernels):
    targets = kernels.target_set_kernels(task_kernels, "mr", cfg)
    assert list(targets["targets"]) == list(kernels.TARGET_SETS)
    assert targets["LoRA params"].iloc[0] < targets["LoRA params"].iloc[1]  # q, v < q, k, v
    table, values, corr = kernels.kernel_variants(task_kernels, "mr", cfg)
    assert list(table.index) == ["sgd", "signgd", "asym_signgd"]
    assert values["sgd"] is task_kernels.lora["mr"] and not table.loc["asym_signgd", "symmetric"]
    assert all(-1 <= c <= 1 for c in corr.values())


def test_kernel_regression_study_matches_training_for_small_steps(cfg, one_thread):
    from linft.experiments import kernel_regression as krx

    small = get_scale("smoke", ntk_n=6, n_eval=6, max_length=16, train_steps=3, batch_size=3)
    study = krx.kernel_regression_study(["mr"], small, lambdas=(0.0, 0.5), step_fraction=0.02, log_every=1)
    t = study.table
    assert list(t["lam"]) == [0.0, 0.5] and (t["M"] == 6).all() and (t["N"] == 6).all()
    # at θ0 prediction and measurement are the same number; after one step they differ at second order only; at
    # λ = 0.5 the step is small in parameter space (η = 0.02/(μmax/N + λ)) and the linear model tracks the whole run
    curves = study.curves
    for step, tol in ((0, 1e-6), (1, 1e-3)):
        at = curves[curves["step"] == step]
        assert (abs(at["predicted"] - at["measured"]) < tol * at["measured"]).all(), at
    assert t.loc[t["lam"] == 0.5, "loss_rel_error_mean"].item() < 1e-4
    assert (t["R_T"] < t["R0"]).all() and (t["a_share_T"] > 0).all() and (t["a_share_T"] < 1).all()
    for column in ("agree_gd_vs_kr", "agree_adam_vs_sign", "acc_gd", "acc_kr"):
        assert t[column].between(0, 1).all() and (t[f"{column}_low"] <= t[column]).all()
    assert study.text["kr_verdict"] in ("holds", "holds only in part", "does not hold")
    assert set(study.headline) >= {"rows", "verdict", "agreement_bar", "loss_error_bar"}
