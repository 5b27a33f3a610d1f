"""linft.experiments at smoke size, chapter 3's protocols: consistent tables and the numbers the chapter quotes."""

import pytest
import torch

from linft import data, spectral
from linft.experiments import kernels, setup_task
from linft.scales import get_scale

TASKS = ["mr", "subj"]


@pytest.fixture(scope="module")
def cfg():
    return get_scale("smoke", n_train=8, n_eval=8, ntk_n=8, max_length=16, train_steps=2, batch_size=4,
                     lambdas=(0.0, 50.0))


@pytest.fixture(scope="module")
def setup(cfg, one_thread):
    return setup_task("mr", cfg, seed=0)


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
