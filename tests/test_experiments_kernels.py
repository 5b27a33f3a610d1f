"""linft.experiments at smoke size, chapter 3's protocols: consistent tables and the numbers the chapter quotes."""

import math

import pytest
import torch

from linft import data, models, predict, spectral
from linft.experiments import kernels
from linft.scales import get_scale

TASKS = ["mr", "subj"]


@pytest.fixture(scope="module")
def task_kernels(cfg, one_thread):
    return kernels.task_kernels(TASKS, cfg, focus_task="mr")


def test_task_kernels_lora_is_the_sum_of_layer_blocks(task_kernels):
    for task, K in task_kernels.kernels.items():
        layers = sum(v for k, v in K.per_layer.items() if k != "head")
        assert torch.allclose(task_kernels.lora[task], layers, rtol=0, atol=0)
        assert task_kernels.per_task.loc[task, "N·C"] == 8 * data.get_task(task).num_labels
    assert (task_kernels.heads["λmax LoRA+head"] > task_kernels.heads["λmax LoRA"]).all()
    assert task_kernels.heads["head-gradient cosine"].between(-1, 1).all()
    assert task_kernels.text["model_layers"] == models.num_layers(models.load("minilm").model)


def test_task_kernels_kappa_lambda(task_kernels):
    pt, table = task_kernels.per_task, task_kernels.kappa_lambda
    assert list(table.index) == list(kernels.LAMBDAS)
    for task in TASKS:
        for lam in (0.5, 5.0, 50.0):
            expected = predict.kappa_lambda(task_kernels.lora[task], lam=lam)  # N from the [N, N, C, C] shape
            assert pt.loc[task, f"κ_λ λ={lam:g}"] == pytest.approx(expected, rel=1e-10)
            assert 1 <= pt.loc[task, f"κ_λ λ={lam:g}"] < pt.loc[task, "κ"]
            head = task_kernels.heads.loc[task, f"κ_λ LoRA+head λ={lam:g}"]
            assert head == pytest.approx(predict.kappa_lambda(task_kernels.kernels[task], lam=lam), rel=1e-10)
    assert table.loc[0.0, "κ_λ max"] == pytest.approx(pt["κ"].max())
    assert (table["spread max/min"].diff().dropna() <= 1e-12).all()  # the anchor compresses the spread
    assert {"kl_summary", "kl_regime", "kappa_spread", "hkl_lo", "top10_lo"} <= set(task_kernels.text)
    curve = kernels.kappa_lambda_curve(pt, 8, lambdas=[1e-4, 1e-2, 1.0])
    assert len(curve) == 3 * len(pt) and (curve.groupby("task")["kappa_lambda"].diff().dropna() < 0).all()
    row = pt.loc["mr"]
    assert curve.iloc[1]["kappa_lambda"] == pytest.approx((row["λmax"] + 8e-2) / (row["λmin"] + 8e-2), rel=1e-6)
    default = kernels.kappa_lambda_curve(pt, 8)  # starts where κ_λ ≈ κ and ends at λ = 100
    first = default.groupby("task").first()
    assert ((first["kappa_lambda"] / pt["κ"]).between(0.95, 1.0)).all() and default["lam"].max() == pytest.approx(100)


def test_frozen_head_kernel_is_the_lora_kernel_and_depends_on_the_head(cfg, task_kernels):
    checks = kernels.block_checks(task_kernels, "mr", cfg, n_check=4)
    assert checks["sum_error"] < 1e-10 and checks["direct_error"] < 1e-5
    model = kernels.frozen_head_model(cfg, 2, 0)
    assert models.count_parameters(model)["head"] == 0
    table, summary = kernels.head_seed_kernels(task_kernels, "mr", cfg, head_seeds=(0, 1))
    assert list(table.index) == [0, 1] and summary["same_as_task_kernel"] < 1e-10
    assert (table["params"].str.contains("LoRA") & ~table["params"].str.contains("head")).all()
    assert table.loc[0, "κ"] == pytest.approx(task_kernels.per_task.loc["mr", "κ"], rel=1e-8)
    assert table.loc[0, "λmax"] != table.loc[1, "λmax"] and summary["lmax_spread"] > 1
    assert summary["task_pairs"] == 1 and summary["text"]["hs_n"] == 2


def test_growth(cfg, task_kernels):
    frame, growth = kernels.kappa_growth(task_kernels, cfg.ntk_n)
    assert growth["ns"] == [4, 8] and growth["monotone"]
    kappa8 = frame[(frame["task"] == "mr") & (frame["n"] == 8)]["kappa"].item()
    assert kappa8 == pytest.approx(spectral.condition_number(task_kernels.lora["mr"]))


def test_target_sets_are_nested(cfg, task_kernels):
    targets, nested = kernels.target_set_kernels(task_kernels, "mr", cfg)
    assert list(targets["targets"]) == list(kernels.TARGET_SETS)
    assert targets["LoRA params"].iloc[0] < targets["LoRA params"].iloc[1]  # q, v < q, k, v
    (check,) = nested  # only query/value ⊂ query/key/value
    assert (check["smaller"], check["larger"]) == ("query, value", "query, key, value")
    assert check["min_eig_difference_rel"] > -1e-9 and check["eigenvalues_dominate"]
    text = kernels.nesting_text(nested, targets)
    assert "are nested" in text["nesting_text"] and text["best_targets"] in kernels.TARGET_SETS


def test_variants_report_the_symmetric_part_and_singular_values(cfg, task_kernels):
    table, values, corr = kernels.kernel_variants(task_kernels, "mr", cfg)
    assert list(table.index) == ["sgd", "signgd", "asym_signgd"]
    assert values["sgd"] is task_kernels.lora["mr"]
    assert table.loc["asym_signgd", "asymmetry"] > 1e-3 and table.loc["sgd", "asymmetry"] < 1e-12
    for name in ("sgd", "signgd"):  # symmetric PSD: both condition numbers are κ
        assert table.loc[name, "σmax/σmin"] == pytest.approx(table.loc[name, "κ (sym)"], rel=1e-6)
    asym = spectral.as_matrix(values["asym_signgd"])
    assert table.loc["asym_signgd", "σmax/σmin"] == pytest.approx(float(torch.linalg.cond(asym)), rel=1e-8)
    sym = torch.linalg.eigvalsh((asym + asym.T) / 2)
    assert table.loc["asym_signgd", "λmin (sym)"] == pytest.approx(float(sym[0]), rel=1e-8)
    assert all(-1 <= c <= 1 for c in corr.values())
    text = kernels.variants_text(table, corr)
    assert text["lmin_sign_sgd"] == "positive" and not math.isnan(float(text["sigma_kappa_asym"]))


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
