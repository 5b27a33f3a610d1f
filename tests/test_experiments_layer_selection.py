"""linft.experiments.layer_selection at the tiny scale: chapter 4's protocol outputs, the run cache, the Weyl checks,
and verdicts computed from the numbers."""

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from linft import models
from linft.experiments import layer_selection as lsx


@pytest.fixture(scope="module")
def small(cfg):
    """The tiny scale with 3 AdamW steps (AdaLoRA needs a warm-up, a budgeting and a final step)."""
    return replace(cfg, train_steps=3)


@pytest.fixture(scope="module")
def setup(small, one_thread):
    return lsx.layer_setup("minilm", "mr", small, seed=0, budget=2, n_random=2)


@pytest.fixture(scope="module")
def study(small, setup):
    return lsx.selection_study(["mr"], small, seeds=(0,), budget=2, n_random=2, adalora_seeds=(0,),
                               curve_task="mr", curve_n=4, curve_steps=2, setups={("mr", 0): setup})


def test_layer_setup_shapes(setup):
    assert setup.n_layers == 6 and setup.lk.layers == list(range(6)) and setup.lk.n_examples == 8
    assert list(setup.per_layer["layer"]) == list(range(6))
    assert list(setup.choices) == ["advisor", "first", "last", "random0", "random1", "trace", "gradient",
                                   "weight_kappa", "all"]
    assert setup.choices["advisor"] == setup.advisor.layers and len(setup.advisor.layers) == 2
    table = setup.table.set_index("choice")
    assert list(table.index) == list(setup.choices) and table["inside"].all()
    # the advisor minimises κ_λ over every 2-layer set (exhaustive search), so no baseline of 2 layers is below it
    assert (table.drop(index=["advisor", "all"])["κ_λ"] >= table.loc["advisor", "κ_λ"] * (1 - 1e-9)).all()
    assert (table["κ_λ_lo"] <= table["κ_λ"] * (1 + 1e-9)).all() and (table["κ_λ"] <= table["κ_λ_hi"] * (1 + 1e-9)).all()


def test_every_union_is_checked_and_inside_its_bounds(setup, study):
    assert len(setup.unions) == 2**6 - 1 and set(setup.unions["size"]) == set(range(1, 7))
    totals = lsx.containment(study.unions)
    assert totals["n_outside"] == 0 and totals["n_inside"] == totals["n_eigenvalues"] == 63 * 8 * 2
    word, sentence = lsx.weyl_verdict(study.unions)
    assert word == "holds" and "1,008 of 1,008" in sentence
    path = lsx.growth_path(setup.lk)
    assert list(path["size"]) == list(range(1, 7)) and (path["outside"] == 0).all()
    assert (np.diff(path["λmax"]) >= -1e-12).all()  # adding a PSD block never lowers an eigenvalue
    many = lsx.tested_unions(range(30), extra=[(3, 7)], max_unions=50, seed=1)
    assert len(many) == 50 and (3, 7) in many and tuple(range(30)) in many and len(set(many)) == 50


def test_study_rows_cache_and_profile(setup, study, small):
    runs = study.runs
    assert list(runs["choice"]) == list(setup.choices)
    assert runs["acc"].between(0, 1).all() and (runs["trained_params"][runs["size"] == 2] ==
                                                runs["trained_params"].iloc[0]).all()
    # one run per distinct layer set: rows of the same set share the run and its numbers
    for _, same in runs.groupby("layers"):
        assert same["run_id"].nunique() == 1 and same["acc"].nunique() == 1 and same["reused"].sum() == len(same) - 1
    distinct = set(runs["layers"]) | {str(layer) for layer in study.profile["layer"]}
    assert study.n_trained == len(distinct)
    assert list(study.profile["layer"]) == list(range(6)) and study.profile["acc"].between(0, 1).all()
    assert all(len(study.correct[r]) == small.n_test for r in runs["run_id"])
    assert set(study.summary["choice"]) == set(setup.choices)
    row = study.summary.set_index("choice").loc["advisor"]
    assert row["acc_low"] <= row["acc"] <= row["acc_high"]
    ada = study.adalora.iloc[0]
    assert ada["total_rank"] == 2 * 2 * small.lora_rank and sum(ada["final_ranks"].values()) == ada["total_rank"]
    assert 0 < ada["reg_share"] < 1


def test_duplicate_choices_are_trained_once(setup, small):
    twice = replace(setup, choices={"advisor": (1, 3), "copy": (3, 1), "other": (0, 5)})
    run = lsx.selection_study(["mr"], small, seeds=(0,), profile_seeds=(), setups={("mr", 0): twice})
    assert run.n_trained == 2 and list(run.runs["reused"]) == [False, True, False]
    assert run.runs["run_id"].iloc[0] == run.runs["run_id"].iloc[1]
    assert run.runs["acc"].iloc[0] == run.runs["acc"].iloc[1]


def test_training_the_layers_of_an_all_layer_model_is_add_lora_on_those_layers(setup, small):
    test = setup.heldout  # cfg.n_test validation examples, drawn with the seed
    ours = lsx.train_layers(setup.model, (2, 4), setup.train, test, small, seed=0)
    loaded = models.load("minilm", num_labels=2, seed=0).model
    alone = models.add_lora(loaded, small.lora_targets, rank=small.lora_rank, seed=0, layers=[2, 4], train_head=False)
    theirs = lsx.train_layers(alone, (2, 4), setup.train, test, small, seed=0)
    inputs = {k: v for k, v in test.items() if k != "labels"}
    with torch.no_grad():
        a, b = ours["model"](**inputs).logits, theirs["model"](**inputs).logits
    assert torch.allclose(a, b, atol=1e-5) and ours["trained_params"] == theirs["trained_params"]
    assert not torch.allclose(a, setup.model(**inputs).logits, atol=1e-5)  # it did train


def test_gd_curves_start_where_the_prediction_starts(study):
    curves, table = study.curves, study.curve_table
    assert list(table["choice"]) == ["advisor", "first", "last"] and (table["n"] == 4).all()
    start = curves[curves["step"] == 0]
    assert np.allclose(start["measured"], start["predicted"], rtol=1e-5)
    assert len(curves) == 3 * 3 and (table["lr"] > 0).all()


def _summary(advisor: float, baselines: list[float]) -> pd.DataFrame:
    rows = [{"task": "t", "choice": "advisor", "acc": advisor}, {"task": "t", "choice": "all", "acc": 0.99}]
    rows += [{"task": "t", "choice": f"b{i}", "acc": acc} for i, acc in enumerate(baselines)]
    return pd.DataFrame(rows)


def test_verdicts_follow_the_numbers():
    high = lsx.advisor_verdicts(_summary(0.8, [0.6, 0.7, 0.9])).iloc[0]
    assert high["median_baseline_acc"] == pytest.approx(0.7) and high["beats_median"] and high["advisor_rank"] == 2
    low = lsx.advisor_verdicts(_summary(0.65, [0.6, 0.7, 0.9])).iloc[0]
    assert not low["beats_median"] and low["advisor_rank"] == 3  # "all" (0.99) is a reference, not a baseline
    both = pd.concat([_summary(0.8, [0.6, 0.7]).assign(task="a"), _summary(0.5, [0.6, 0.7]).assign(task="b")])
    verdicts = lsx.advisor_verdicts(both)
    assert lsx.selection_verdict(verdicts)[0] == "partly"
    assert lsx.selection_verdict(verdicts[verdicts["task"] == "a"])[0] == "holds"
    word, sentence = lsx.selection_verdict(verdicts[verdicts["task"] == "b"])
    assert word == "does not hold" and "0 of 1" in sentence and "b -15.0" in sentence
    checks = pd.DataFrame({"P": [4, 4], "outside": [0, 0]})
    assert lsx.weyl_verdict(checks)[0] == "holds"
    assert lsx.weyl_verdict(checks.assign(outside=[0, 1]))[0] == "partly"


def test_kernel_text_quotes_the_setup(setup):
    text = lsx.kernel_text({"minilm": setup})
    assert text["first_unions"] == "63" and text["first_model"] == "minilm" and text["weyl_word"] == "holds"
    assert f"layers {lsx.format_layers(setup.advisor.layers)}" in text["choice_text"]
    top = setup.per_layer.set_index("layer")["trace"].idxmax()
    assert f"layer {top} has the largest trace" in text["per_layer_text"]


def test_study_text_and_claims(study, small):
    text = lsx.study_text(study, small, 2)
    assert text["ft_verdict"] == lsx.selection_verdict(study.verdicts)[0]
    assert text["ft_trained"] == study.n_trained and "mr" in text["ft_per_task"]
    assert text["ft_scale_text"].startswith("on mr, λmax of the advisor's kernel is")
    assert text["adalora_patterns"] == "1 distinct final rank pattern(s) over 1 run(s)"
    advisor = study.runs.set_index("choice").loc["advisor"]
    assert study.adalora["R0"].iloc[0] == pytest.approx(advisor["R0"], rel=1e-5)  # Λ = 0: the same start
    out = lsx.claims(study, None, weyl_section="sec-a", selection_section="sec-b")
    sentence = lsx.weyl_verdict(study.unions)[1]
    assert out["weyl_bounds"] == {"verdict": "holds", "evidence": sentence[0].upper() + sentence[1:] + ".",
                                  "section": "sec-a"}
    assert out["layer_selection"]["evidence"].startswith("The κ_λ advisor's layers beat")
    assert out["layer_selection"]["verdict"] == lsx.selection_verdict(study.verdicts)[0]
    assert out["layer_selection"]["section"] == "sec-b" and set(out) == {"weyl_bounds", "layer_selection"}
