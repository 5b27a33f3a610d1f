"""linft.experiments at smoke size, chapter 1's protocols: consistent tables and the numbers the chapter quotes."""

import torch

from linft.experiments import linearization

TASKS = ["mr", "subj"]


def test_real_vs_linearized_starts_together(cfg, setup):
    sweep = linearization.real_vs_linearized(setup, cfg, gap_n=4)
    assert list(sweep.runs["lam"]) == list(cfg.lambdas)
    assert set(sweep.logs["kind"]) == {"real", "linearized"}
    start = sweep.logs[(sweep.logs["step"] == 0) & (sweep.logs["kind"] == "real")]
    assert (start["rel_gap_eval"] < 1e-4).all()  # real and linearized model are the same function at θ0
    assert len(sweep.outputs) == len(cfg.lambdas) * cfg.n_eval
    runs = sweep.runs.set_index("lam")
    assert (runs["R_T/R0"] == runs["R_T"] / runs["R0"]).all()
    assert runs.loc[50.0, "kappa_lambda"] < runs.loc[0.0, "kappa_lambda"]  # the ridge Nλ compresses the spectrum
    for lam, correct in sweep.correct.items():
        assert runs.loc[lam, "acc_real"] == correct["real"].mean() and correct["lin"].size == cfg.n_eval


def test_seeded_study_varies_seeds_and_summarises(cfg, one_thread):
    study = linearization.seeded_study("mr", cfg, seeds=(0, 1), gap_n=4, n_test=12)
    assert sorted(study.runs["seed"].unique()) == [0, 1] and len(study.runs) == 2 * len(cfg.lambdas)
    r0 = study.runs.groupby("seed")["R0"].first()
    assert r0[0] != r0[1]  # each seed draws its own sample, LoRA init and head
    assert list(study.summary.index) == list(cfg.lambdas)
    row = study.summary.loc[0.0]
    assert row["acc_real_low"] <= row["acc_real"] <= row["acc_real_high"]
    assert row["rel_gap_eval"] == study.runs[study.runs["lam"] == 0.0]["rel_gap_eval"].mean()
    assert len(study.outputs) == 2 * len(cfg.lambdas) * 12
    assert study.text["lm_seeds"] == 2 and study.text["lm_n_eval"] == 12
    assert {"lam=0", "lam=50", "per_seed"} <= set(study.headline)


def test_margins():
    two = torch.tensor([[0.0, 1.0], [2.0, -1.0]])
    three = torch.tensor([[0.0, 3.0, 1.0]])
    assert torch.equal(linearization.margins(two), torch.tensor([1.0, -3.0]))
    assert torch.equal(linearization.margins(three), torch.tensor([2.0]))
