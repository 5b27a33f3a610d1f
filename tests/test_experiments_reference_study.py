"""linft.experiments.reference_study on synthetic studies whose answer is known: every verdict can come out."""

import math

import numpy as np
import pandas as pd
import pytest

from linft import LinftError
from linft.experiments import reference_study as rs

CALIB = (16, 32)


def _study(rho_sign: float, *, n_tasks=3, n_configs=12, n_seeds=4, noise=0.002, effect=0.05, seed=0):
    """A reference-protocol frame: per configuration a log κ; accuracy = base + rho_sign·effect·z(log κ) + noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for t in range(n_tasks):
        log_kappa = rng.uniform(1, 6, n_configs)
        z = (log_kappa - log_kappa.mean()) / log_kappa.std()
        for c in range(n_configs):
            for s in range(n_seeds):
                acc = 0.8 + rho_sign * effect * z[c] + rng.normal(scale=noise)
                row = {"protocol": "reference", "task": f"t{t}", "config": f"c{c}", "seed": s, "status": "ok",
                       "calib": "16,32", "eval_acc": acc, "eval_majority": 0.5, "eval_acc_init": 0.5,
                       "n_params_lora": 1000 * (c + 1), "short_eval_acc": acc + rng.normal(scale=0.05),
                       "train_seconds": 100.0}
                for n in CALIB:
                    row.update({f"kappa_ref_{n}": 10 ** (log_kappa[c] + rng.normal(scale=0.01)),
                                f"kappa_trained_{n}": 10 ** rng.uniform(1, 3), f"kr_acc_trained_{n}": acc,
                                f"grad_norm_{n}": rng.uniform(), f"logme_jacobian_{n}": rng.uniform(),
                                f"kernel_seconds_{n}": n / 10})
                rows.append(row)
    return pd.DataFrame(rows)


def _write(frame, tmp_path):
    path = tmp_path / "study.csv"
    frame.to_csv(path, index=False)
    return path


def test_claim_holds_when_low_kappa_means_high_accuracy(tmp_path):
    study = rs.reference_study(_write(_study(-1.0), tmp_path), n_boot=300)
    assert set(study.primary["verdict"]) == {"holds"}
    assert (study.primary["high"] < 0).all()
    assert study.counts["configs"] == {"t0": 12, "t1": 12, "t2": 12} and study.counts["seeds"] == [0, 1, 2, 3]
    acc = study.accuracy
    assert (acc["eval_acc_low"] <= acc["eval_acc"]).all() and (acc["eval_acc"] <= acc["eval_acc_high"]).all()
    assert (acc["eval_acc_low"] < acc["eval_acc_high"]).all()  # configurations differ, so the interval has width


def test_claim_fails_when_the_sign_is_opposite(tmp_path):
    study = rs.reference_study(_write(_study(+1.0), tmp_path), n_boot=300)
    assert set(study.primary["verdict"]) == {"fails"}


def test_pure_noise_is_not_called_a_success(tmp_path):
    frame = _study(0.0, noise=0.05)
    study = rs.reference_study(_write(frame, tmp_path), n_boot=300)
    assert "holds" not in set(study.primary["verdict"])
    power = study.power.set_index("task")
    assert (power.drop(index="pooled")["reliability"] < 0.6).all() and not power["adequate"].any()


def test_power_is_adequate_when_configurations_differ_far_more_than_seeds(tmp_path):
    power = rs.power_table(rs.load_reference_study(_write(_study(-1.0), tmp_path))[0]).set_index("task")
    tasks = power.drop(index="pooled")
    assert (tasks["anova_p"] < 1e-6).all() and (tasks["reliability"] > 0.95).all()
    assert (tasks["sd_seed"] < tasks["sd_config_means"]).all()
    # 12 configurations detect a true ρ of 0.6 about half the time; 36 pooled ones do
    assert not tasks["adequate"].any() and (tasks["power"].between(0.4, 0.6)).all()
    assert power.loc["pooled", "adequate"] and power.loc["pooled", "n_configs"] == 36
    assert (tasks["configs_needed"] == 21).all()
    assert rs.configs_needed(0.6) == 21 and rs._fisher_power(0.6, 21) >= 0.8 > rs._fisher_power(0.6, 20)


def test_verdict_bar():
    assert rs.verdict_of(-0.9, -0.4) == "holds"
    assert rs.verdict_of(0.1, 0.6) == "fails"            # opposite sign
    assert rs.verdict_of(-0.25, 0.2) == "fails"          # right sign possible, but |ρ| ≥ 0.3 is ruled out
    assert rs.verdict_of(-0.8, 0.1) == "not resolved"
    assert rs.verdict_of(math.nan, 0.1) == "not tested"
    assert rs.verdict_of(0.4, 0.9, sign=+1) == "holds"


def test_rivals_are_compared_by_signed_paired_differences(tmp_path):
    frame, _ = rs.load_reference_study(_write(_study(-1.0), tmp_path))
    table = rs.rival_differences(frame, 32, n_boot=300)
    kr = table[(table["rival"] == "kr_acc_trained_32") & (table["task"] == "pooled")].iloc[0]
    # kr_acc equals the outcome exactly here, so it ranks perfectly: its claim-direction ρ is 1, κ's is below
    assert kr["rho_dir"] == pytest.approx(1.0) and kr["diff"] > 0 and kr["low"] <= kr["diff"] <= kr["high"]
    grad = table[(table["rival"] == "grad_norm_32") & (table["task"] == "pooled")].iloc[0]
    assert grad["diff"] < 0 and grad["high"] < 0  # a random rival is worse than a good κ, with the sign kept


def test_rho_by_n_reports_costs_from_the_same_runs(tmp_path):
    frame, counts = rs.load_reference_study(_write(_study(-1.0), tmp_path))
    table = rs.rho_by_n(frame, counts["calib"], n_boot=200)
    assert list(table["n"]) == [16, 32, 16, 32] and list(table["kernel"]) == ["ref", "ref", "trained", "trained"]
    assert table["cost_ratio"].tolist() == pytest.approx([0.016, 0.032, 0.016, 0.032])
    assert (table.loc[table["kernel"] == "ref", "rho"] < -0.9).all()


def test_the_bootstrap_resamples_configurations_not_runs(tmp_path):
    frame, _ = rs.load_reference_study(_write(_study(-1.0, n_configs=4, n_tasks=1), tmp_path))
    table = rs.config_bootstrap(rs.config_means(frame, ["log_kappa_ref_32", "eval_acc"]), "log_kappa_ref_32",
                                "eval_acc", n_boot=200)
    assert table.loc[0, "n_configs"] == 4  # 4 configurations, not 16 runs


def test_a_foreign_or_missing_csv_is_refused(tmp_path):
    with pytest.raises(LinftError, match="does not exist"):
        rs.load_reference_study(tmp_path / "none.csv")
    frame = _study(-1.0)
    frame["protocol"] = "fewshot"
    with pytest.raises(LinftError, match="not a reference-protocol study"):
        rs.load_reference_study(_write(frame, tmp_path))
