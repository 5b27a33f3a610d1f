"""linft.experiments.validation (chapter 5): the verdict follows the numbers, runs that did not move are set aside,
committed rows are reproduced, and the figures draw."""

from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest

from linft import LinftError
from linft.experiments import validation as vx
from linft.plots import validation as validation_plots

matplotlib.use("Agg")
ROOT = Path(__file__).resolve().parents[1]
SMOKE_CSV, SMOKE_CONFIG = ROOT / "data/results/study-smoke.csv", ROOT / "sweeps/smoke.yaml"


def _synthetic(tmp_path, acc_sign: float, loss_sign: float, noise: float = 0.0, moved: bool = True) -> Path:
    """A sweep CSV of 3 tasks × 6 configs × 3 seeds × 2 settings where eval accuracy = acc_sign·log κ + task offset
    and training loss = loss_sign·log κ + offset (+ noise)."""
    rng = np.random.default_rng(0)
    rows = []
    for t, task in enumerate(["a", "b", "c"]):
        for c in range(6):
            for s in range(3):
                for setting in ("ce_adamw", "mse_gd"):
                    log_kappa = c + 0.1 * s + 0.01 * t
                    rows.append({
                        "task": task, "config": f"cfg{c}", "seed": s, "setting": setting, "lam": 0.0, "status": "ok",
                        "kappa": 10.0**log_kappa, "lambda_min": 1.0, "lambda_max": 10.0**log_kappa,
                        "trace": 100.0 + c, "n_params": 1000 * (c % 2 + 1), "effective_rank": 5.0 + s,
                        "kr_acc": 0.5, "logme_jacobian": -1.0 + 0.01 * c, "logme_frozen": float(t),
                        "short_eval_acc": 0.5, "short_train_loss": 0.6,
                        "kernel_seconds": 1.0, "logme_seconds": 0.1, "short_seconds": 0.5,
                        "train_loss_init": 10.0,
                        "train_loss": (5.0 + t + loss_sign * 0.1 * log_kappa + noise * rng.normal()) if moved else 10.0,
                        "eval_acc": 0.5 + 0.1 * t + acc_sign * 0.01 * log_kappa + noise * rng.normal(),
                        "eval_loss": 1.0})
    path = tmp_path / "sweep.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


@pytest.mark.parametrize(("acc_sign", "loss_sign", "word"), [
    (-1, +1, "holds"), (+1, -1, "does not hold"), (-1, -1, "partly"), (+1, +1, "partly"),
])
def test_the_verdict_follows_the_numbers(tmp_path, acc_sign, loss_sign, word):
    study = vx.validation_study(_synthetic(tmp_path, acc_sign, loss_sign), n_permutations=300, n_boot=200)
    for setting in ("ce_adamw", "mse_gd"):
        verdict, sentence = study.verdicts[setting]
        assert verdict == word, sentence
        assert "ρ =" in sentence and "n = 54 runs" in sentence
    assert study.headline["ce_adamw"]["eval_acc"]["r"] == pytest.approx(acc_sign * 1.0)


def test_pure_noise_does_not_pass_the_bar(tmp_path):
    frame = pd.read_csv(_synthetic(tmp_path, 0, 0, noise=1.0))
    frame["eval_acc"] = np.random.default_rng(5).normal(size=len(frame))
    frame["train_loss"] = 5 + np.random.default_rng(6).normal(size=len(frame))
    frame.to_csv(tmp_path / "noise.csv", index=False)
    study = vx.validation_study(tmp_path / "noise.csv", n_permutations=300, n_boot=200)
    assert {v for v, _ in study.verdicts.values()} <= {"does not hold", "partly"}


def test_runs_that_did_not_move_are_set_aside(tmp_path):
    path = _synthetic(tmp_path, -1, +1, moved=False)
    frame, counts = vx.load_study(path)
    assert counts == {"rows": 108, "failed": 0, "not_moved": 108, "used": 0}
    study = vx.validation_study(path, n_permutations=50, n_boot=50)
    assert {v for v, _ in study.verdicts.values()} == {"not yet tested"}


def test_rivals_are_ranked_against_kappa(tmp_path):
    study = vx.validation_study(_synthetic(tmp_path, -1, +1), n_permutations=100, n_boot=100)
    rivals = study.rivals[study.rivals["setting"] == "ce_adamw"].set_index("predictor")
    assert rivals.loc["log_kappa", "r"] == pytest.approx(-1.0)
    assert not rivals["beats_kappa"].any()  # nothing ranks better than a perfect predictor
    assert rivals.loc["n_params", "cost_s"] == 0.0 and rivals.loc["log_kappa", "cost_s"] == 1.0


def test_load_study_errors(tmp_path):
    with pytest.raises(LinftError, match="no sweep CSV"):
        vx.load_study(tmp_path / "missing.csv")
    pd.DataFrame({"task": ["a"]}).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(LinftError, match="missing"):
        vx.load_study(tmp_path / "bad.csv")


@pytest.mark.skipif(not SMOKE_CSV.exists(), reason="data/results/study-smoke.csv is not committed")
def test_committed_smoke_rows_are_reproduced_and_a_tampered_row_is_caught(tmp_path, one_thread):
    frame, _ = vx.load_study(SMOKE_CSV)
    key = {"task": "mr", "config": "qv-r4", "seed": 0, "setting": "ce_adamw"}
    check = vx.rerun_check(frame, [key], SMOKE_CONFIG)
    assert bool(check["match"].iloc[0]), check.T
    tampered = frame.copy()
    row = (tampered["task"] == "mr") & (tampered["config"] == "qv-r4") & (tampered["seed"] == 0) & (
        tampered["setting"] == "ce_adamw")
    tampered.loc[row, "kappa"] *= 1.01
    assert not bool(vx.rerun_check(tampered, [key], SMOKE_CONFIG)["match"].iloc[0])
    with pytest.raises(LinftError, match="matches 0 planned runs"):
        vx.rerun_check(frame, [{"task": "nope"}], SMOKE_CONFIG)


def test_figures_draw(tmp_path):
    study = vx.validation_study(_synthetic(tmp_path, -1, +1), n_permutations=50, n_boot=50)
    fig = validation_plots.kappa_scatter(study.frame)
    assert len(fig.axes) == 4
    fig = validation_plots.predictor_forest(study.rivals)
    assert len(fig.axes) == 2
    with pytest.raises(LinftError):
        validation_plots.kappa_scatter(study.frame.drop(columns="moved"))


def _anchored(tmp_path, base: Path, kappa_lambda_sign: float, moved: bool = True) -> Path:
    """The cells of ``base`` on tasks a, b re-run at λ = 0.5: κ_λ = κ/10, eval accuracy and training loss follow
    ``kappa_lambda_sign``·log κ_λ (the claim's direction for sign −1 on accuracy); not moved: loss stays at init."""
    frame = pd.read_csv(base)
    frame = frame[frame["task"].isin(["a", "b"])].copy()
    frame["lam"] = 0.5
    frame["kappa_lambda"] = frame["kappa"] / 10
    log_kl = np.log10(frame["kappa_lambda"])
    frame["eval_acc"] = 0.6 + kappa_lambda_sign * 0.01 * log_kl
    frame["train_loss"] = (5.0 - kappa_lambda_sign * 0.1 * log_kl) if moved else frame["train_loss_init"]
    path = tmp_path / "anchored.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.mark.parametrize(("sign", "word"), [(-1, "holds"), (+1, "does not hold")])
def test_anchored_slice_pairs_cells_and_tests_kappa_lambda(tmp_path, sign, word):
    base = _synthetic(tmp_path, +1, -1)  # at λ = 0 the claim fails; at λ = 0.5 it follows ``sign``
    study = vx.anchored_study(_anchored(tmp_path, base, sign), base, n_permutations=300, n_boot=200)
    assert study.lam == 0.5 and len(study.pairs) == 2 * 6 * 3 * 2  # tasks a, b × configs × seeds × settings
    for setting in ("ce_adamw", "mse_gd"):
        verdict, sentence = study.verdicts[setting]
        assert verdict == word and "log κ_λ (λ = 0.5)" in sentence and "n = 36 runs" in sentence
    row = study.summary.set_index("setting").loc["mse_gd"]
    assert row["both_moved"] == 36 and row["kappa_rel_diff"] == 0
    assert row["median_kappa_lambda"] == pytest.approx(row["median_kappa"] / 10)
    assert np.isfinite(row["eval_acc_change"]) and row["eval_acc_change_low"] <= row["eval_acc_change_high"]
    assert vx.combine_verdicts([word, study.verdicts["mse_gd"][0]]) == word
    fig = validation_plots.anchored_pairs(study.pairs, study.lam)
    assert len(fig.axes) == 4


def test_anchored_runs_that_did_not_move_are_not_ranked(tmp_path):
    base = _synthetic(tmp_path, +1, -1)
    study = vx.anchored_study(_anchored(tmp_path, base, -1, moved=False), base, n_permutations=50, n_boot=50)
    verdict, sentence = study.verdicts["ce_adamw"]
    assert verdict == "not yet tested" and "only 0 of the 36 runs at λ = 0.5" in sentence
    assert study.summary.set_index("setting").loc["ce_adamw", "both_moved"] == 0


def test_anchored_study_errors(tmp_path):
    base = _synthetic(tmp_path, +1, -1)
    with pytest.raises(LinftError, match="exactly one λ > 0"):
        vx.anchored_study(base, base)
    other = pd.read_csv(_anchored(tmp_path, base, -1))
    other["task"] = "z"
    other.to_csv(tmp_path / "other.csv", index=False)
    with pytest.raises(LinftError, match="no cell of other.csv"):
        vx.anchored_study(tmp_path / "other.csv", base)


def test_combine_verdicts():
    assert vx.combine_verdicts(["holds", "holds"]) == "holds"
    assert vx.combine_verdicts(["does not hold", "not yet tested"]) == "does not hold"
    assert vx.combine_verdicts(["holds", "does not hold"]) == "partly"
    assert vx.combine_verdicts(["does not hold", "partly"]) == "partly"
    assert vx.combine_verdicts(["not yet tested"]) == "not yet tested"


def test_anchored_text_quotes_the_numbers_and_the_verdict(tmp_path):
    base = _synthetic(tmp_path, +1, -1)
    anchored_csv = _anchored(tmp_path, base, -1)
    study = vx.anchored_study(anchored_csv, base, n_permutations=100, n_boot=100)
    text = study.text("mse_gd")
    cells = study.pairs[study.pairs["setting"] == "mse_gd"]
    row = study.summary.set_index("setting").loc["mse_gd"]
    word, sentence = study.verdicts["mse_gd"]
    assert word == "holds" and text.endswith(f"Verdict for κ_λ: holds — {sentence}")
    runs, moved = len(cells), int(cells["moved_lam"].sum())
    assert text.startswith(f"{moved} of {runs} runs moved at λ = 0.5 (")  # counts as ints, not "36.0"
    assert "over the 36 cells" in text
    assert f"median κ {cells['kappa'].median():.3g} becomes κ_λ {cells['kappa'].median() / 10:.3g}" in text
    assert (f"eval accuracy changes by {row['eval_acc_change']:+.3f} [{row['eval_acc_change_low']:+.3f}, "
            f"{row['eval_acc_change_high']:+.3f}]") in text
    frame = pd.read_csv(anchored_csv)
    frame[frame["setting"] == "ce_adamw"].to_csv(tmp_path / "adamw-only.csv", index=False)
    adamw_only = vx.anchored_study(tmp_path / "adamw-only.csv", base, n_permutations=50, n_boot=50)
    assert adamw_only.text("mse_gd") == "not in this slice"
    stuck = vx.anchored_study(_anchored(tmp_path, base, -1, moved=False), base, n_permutations=50, n_boot=50)
    assert "no pair of runs both moved" in stuck.text("ce_adamw") and "not yet tested" in stuck.text("ce_adamw")


def test_slice_text_quotes_rho_and_its_interval(tmp_path):
    from scipy.stats import spearmanr

    frame = pd.read_csv(_synthetic(tmp_path, -1, +1, noise=0.05))
    frame["model"] = "toy"
    frame.to_csv(tmp_path / "slice.csv", index=False)
    summary = vx.slice_summary(tmp_path / "slice.csv")
    adamw = frame[frame["setting"] == "ce_adamw"]
    rho = spearmanr(np.log10(adamw["kappa"]), adamw["eval_acc"]).statistic
    got = summary["ce_adamw"]["eval_acc"]
    text = vx.slice_text(summary)
    assert text.startswith(f"over its 108 moved runs, log κ against eval accuracy gives ρ = {rho:.2f} ")
    assert f"[{got['low']:.2f}, {got['high']:.2f}], p = {got['p_value']:.3f}" in text
    missing = vx.slice_summary(tmp_path / "absent.csv")
    assert vx.slice_text(missing) == f"its slice CSV ({tmp_path / 'absent.csv'}) is not in this build"
    assert vx.slice_text(missing, installed=False).endswith("is not in this build and the model is not installed here")
    frame[frame["setting"] == "mse_gd"].to_csv(tmp_path / "gd.csv", index=False)  # no CE + AdamW runs to quote
    assert vx.slice_text(vx.slice_summary(tmp_path / "gd.csv"), installed=False).endswith("is not in this build")


def test_combined_claims_follow_combine_verdicts(tmp_path):
    base = _synthetic(tmp_path, +1, -1)  # λ = 0: does not hold; anchored (sign −1): holds
    study = vx.validation_study(base, n_permutations=100, n_boot=100)
    anchored_csv = _anchored(tmp_path, base, -1)
    frame = pd.read_csv(anchored_csv)
    frame[frame["setting"] == "ce_adamw"].to_csv(tmp_path / "adamw-only.csv", index=False)
    anchored = vx.anchored_study(tmp_path / "adamw-only.csv", base, n_permutations=100, n_boot=100)
    claims = vx.combined_claims(study, anchored, section="sec-x")
    assert list(claims) == list(vx.CLAIM_SETTINGS) == ["kappa-orders-adamw", "kappa-orders-mse"]
    adamw, gd = claims["kappa-orders-adamw"], claims["kappa-orders-mse"]
    assert set(adamw) == {"verdict", "evidence", "section"} and adamw["section"] == "sec-x"
    assert study.verdicts["ce_adamw"][0] == "does not hold" and anchored.verdicts["ce_adamw"][0] == "holds"
    assert adamw["verdict"] == vx.combine_verdicts(["does not hold", "holds"]) == "partly"
    assert adamw["evidence"] == (f"At λ = 0: {study.verdicts['ce_adamw'][1]} At λ = 0.5: "
                                 f"{anchored.verdicts['ce_adamw'][1]}")
    assert gd["verdict"] == "does not hold" and gd["evidence"].endswith("At λ = 0.5: not in the slice.")
    assert vx.claim_text(claims, "kappa-orders-adamw") == f"partly — {adamw['evidence']}"
    assert vx.claim_text({}, "kappa-orders-mse") == "not yet tested"
    frame = pd.read_csv(base)
    frame[frame["setting"] == "ce_adamw"].to_csv(tmp_path / "base-adamw.csv", index=False)
    only_adamw = vx.validation_study(tmp_path / "base-adamw.csv", n_permutations=50, n_boot=50)
    assert list(vx.combined_claims(only_adamw, anchored)) == ["kappa-orders-adamw"]
