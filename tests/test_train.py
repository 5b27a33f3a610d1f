"""fine_tune on MiniLM + LoRA with tiny batches: learning, determinism, λ, the gap columns, bad input."""

from __future__ import annotations

import copy

import pytest
import torch

from linft import LinftError
from linft.linearize import LinearizedModel, linearization_gap
from linft.regularize import drift
from linft.train import TrainResult, fine_tune, task_loss

POS = ["a great film", "i loved it", "wonderful acting", "truly superb"]
NEG = ["an awful movie", "boring and bad", "a terrible plot", "truly dreadful"]


@pytest.fixture(scope="module")
def setup(one_thread, tiny_lora):
    return tiny_lora(POS + NEG, [1] * 4 + [0] * 4)


def test_real_model_learns_and_logs(setup):
    model, batch = setup
    res = fine_tune(copy.deepcopy(model), batch, batch, lr=1e-2, steps=4, progress=False, gap_n=4)
    assert isinstance(res, TrainResult)
    log = res.log
    assert list(log["step"]) == [0, 1, 2, 3, 4]
    for col in ("loss", "task_loss", "penalty", "train_acc", "eval_loss", "eval_acc", "drift_total", "drift_layer0",
                "drift_layer5", "drift_head", "gap_train", "rel_gap_train", "agree_train", "gap_eval", "rel_gap_eval",
                "agree_eval"):
        assert col in log.columns, col
    assert log["task_loss"].iloc[-1] < 0.5 * log["task_loss"].iloc[0]
    assert res.final["train_acc"] == 1.0
    assert res.final["R0"] == pytest.approx(log["task_loss"].iloc[0])
    assert log["gap_train"].iloc[0] < 1e-5 and log["drift_total"].iloc[0] == 0.0
    assert (log["gap_train"].iloc[1:] > 0).all()
    assert res.final["kind"] == "real" and res.final["seconds_per_step"] > 0


def test_linearized_model_learns_mse_gd(setup):
    model, batch = setup
    lin = LinearizedModel(copy.deepcopy(model))
    res = fine_tune(lin, batch, None, loss="mse", optimizer="gd", lr=0.5, steps=4, log_every=2, progress=False,
                    mse_target="logit_diff")
    assert list(res.log["step"]) == [0, 2, 4]
    assert res.log["task_loss"].iloc[-1] < res.log["task_loss"].iloc[0]
    assert "eval_loss" not in res.log.columns
    # its gap column is the same-parameters gap: real network at lin's θ vs lin at θ
    direct = linearization_gap(None, lin, batch)
    assert res.final["gap_train"] == pytest.approx(direct["gap"], rel=1e-5)
    assert res.final["kind"] == "linearized"


def test_same_seed_same_log(setup):
    model, batch = setup
    kw = dict(lr=1e-2, steps=3, batch_size=3, lam=0.5, selective=True, seed=7, progress=False, gap_n=2)
    a = fine_tune(copy.deepcopy(model), batch, batch, **kw)
    b = fine_tune(copy.deepcopy(model), batch, batch, **kw)
    assert a.log.equals(b.log)
    c = fine_tune(copy.deepcopy(model), batch, batch, **{**kw, "seed": 8})  # other minibatch order
    assert not a.log.equals(c.log)


def test_lambda_zero_is_plain_training_bitwise(setup):
    model, batch = setup
    plain = copy.deepcopy(model).eval()
    params = [p for p in plain.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-2, weight_decay=0.0)
    for _ in range(3):
        opt.zero_grad(set_to_none=True)
        logits = plain(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        torch.nn.functional.cross_entropy(logits, batch["labels"]).backward()
        opt.step()
    res = fine_tune(copy.deepcopy(model), batch, None, lr=1e-2, steps=3, lam=0.0, selective=True,
                    penalty="decoupled", progress=False, gap_n=2)
    trained = dict(res.model.named_parameters())
    for n, p in plain.named_parameters():
        assert torch.equal(p, trained[n]), n


def test_lambda_reduces_drift(setup):
    model, batch = setup
    kw = dict(lr=1e-2, steps=3, progress=False, track_gap=False)
    free = fine_tune(copy.deepcopy(model), batch, None, lam=0.0, **kw)
    held = fine_tune(copy.deepcopy(model), batch, None, lam=20.0, penalty="decoupled", **kw)
    assert held.final["drift_total"] < free.final["drift_total"]
    assert held.final["penalty"] > 0 and free.final["penalty"] == 0
    assert held.final["drift_total"] == pytest.approx(drift(held.model, held.anchor)["total"])


def test_lin_reference_gap_matches_helper(setup):
    model, batch = setup
    start = copy.deepcopy(model)
    ref = LinearizedModel(copy.deepcopy(model))
    res = fine_tune(start, batch, batch, lr=1e-2, steps=2, lin_reference=ref, progress=False, gap_n=None)
    direct = linearization_gap(res.model, ref, batch, at="model")
    assert res.final["gap_eval"] == pytest.approx(direct["gap"], rel=1e-5)
    # a reference wrapping another starting point is refused
    with pytest.raises(LinftError, match="θ0 differs"):
        fine_tune(res.model, batch, batch, lr=1e-2, steps=1, lin_reference=ref, progress=False)


def test_task_loss_definitions():
    logits = torch.tensor([[1.0, -1.0], [0.5, 0.0]])
    labels = torch.tensor([0, 1])
    assert task_loss(logits, labels, "mse").item() == pytest.approx(0.5 * ((0 + 1) + (0.25 + 1)) / 2)
    expected = 0.5 * ((-2 + 1) ** 2 + (-0.5 - 1) ** 2) / 2  # f1 - f0 = -2, -0.5; targets -1, +1
    assert task_loss(logits, labels, "mse", "logit_diff").item() == pytest.approx(expected)


def test_bad_inputs(setup):
    model, batch = setup
    kw = dict(lr=1e-2, steps=1, progress=False)
    with pytest.raises(LinftError, match="unknown loss"):
        fine_tune(model, batch, loss="hinge", **kw)
    with pytest.raises(LinftError, match="unknown optimizer"):
        fine_tune(model, batch, optimizer="sgdm", **kw)
    with pytest.raises(LinftError, match="λ"):
        fine_tune(model, batch, lam=-1.0, **kw)
    empty = {k: v[:0] for k, v in batch.items()}
    with pytest.raises(LinftError, match="empty"):
        fine_tune(model, empty, **kw)
    three = {**batch, "labels": torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])}
    with pytest.raises(LinftError, match="head has 2 outputs"):
        fine_tune(model, three, **kw)
    with pytest.raises(LinftError, match="labels"):
        fine_tune(model, {**batch, "labels": batch["labels"][:3]}, **kw)
    with pytest.raises(LinftError, match="lr"):
        fine_tune(model, batch, lr=0.0, steps=1)
    with pytest.raises(LinftError, match="overshoots"):
        fine_tune(model, batch, lam=1e3, penalty="decoupled", lr=1.0, steps=1, optimizer="gd", progress=False)
