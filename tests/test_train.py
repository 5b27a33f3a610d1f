"""fine_tune on MiniLM + LoRA with tiny batches: learning, determinism, λ, the gap columns, bad input; and its parts
(TrainConfig, MinibatchSampler, gap_reference, Evaluator) one by one."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from linft import LinftError
from linft.batches import trim_padding
from linft.linearize import LinearizedModel, linearization_gap
from linft.models import is_head_param
from linft.regularize import drift
from linft.train import (
    Evaluator,
    MinibatchSampler,
    TrainConfig,
    TrainResult,
    fine_tune,
    gap_reference,
    gd_step_size,
    linear_probe,
    task_loss,
)

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
    # (fine_tune evaluates on length-trimmed chunks, the direct call on the padded batch: float32 round-off of two
    # nearly equal outputs, ~1e-7 absolute on a gap of ~5e-3)
    assert res.final["gap_train"] == pytest.approx(direct["gap"], rel=1e-4)
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
    inputs = trim_padding(batch)  # fine_tune trains on the batch without its all-padding columns
    for _ in range(3):
        opt.zero_grad(set_to_none=True)
        logits = plain(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).logits
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


def test_batch_without_attention_mask_is_refused(setup):
    model, batch = setup
    with pytest.raises(LinftError, match="no 'attention_mask'"):
        fine_tune(model, {k: v for k, v in batch.items() if k != "attention_mask"}, lr=1e-2, steps=1, progress=False)


# ---------------------------------------------------------------------------------------------- TrainConfig


def test_config_is_checked_normalized_and_reads_like_a_dict():
    config = TrainConfig(lr=1, steps=3, lam=2, batch_size=4)
    assert config.lr == 1.0 and isinstance(config.lr, float) and config.lam == 2.0 and isinstance(config.lam, float)
    assert config["lam"] == 2.0 and config["batch_size"] == 4 and "gap_n" in config and "nope" not in config
    assert dict(config) == config.as_dict() and list(config.keys())[:2] == ["lr", "steps"]
    assert config.kind is None and config.n_train is None
    with pytest.raises(KeyError):
        config["nope"]
    with pytest.raises(AttributeError):
        config.lam = 3.0  # frozen: a run's settings do not change under it


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(loss="hinge"), r"unknown loss 'hinge': use one of \('ce', 'mse'\)"),
        (dict(optimizer="sgdm"), "unknown optimizer 'sgdm'"),
        (dict(penalty="l1"), "unknown penalty 'l1'"),
        (dict(granularity="coordinate"), "unknown granularity 'coordinate'"),
        (dict(mse_target="zeros"), "unknown mse_target 'zeros'"),
        (dict(lr=0.0), "lr must be a positive number, got 0.0"),
        (dict(lr=float("nan")), "lr must be a positive number"),
        (dict(lr="0.1"), "lr must be a positive number"),
        (dict(lr=True), "lr must be a positive number"),
        (dict(steps=-1), "steps must be an integer >= 0, got -1"),
        (dict(steps=2.5), "steps must be an integer >= 0"),
        (dict(log_every=0), "log_every must be a positive integer, got 0"),
        (dict(batch_size=0), r"batch_size \(or None for the full batch\) must be a positive integer"),
        (dict(gap_n=-2), r"gap_n \(or None for all examples\) must be a positive integer"),
        (dict(eval_chunk=0), "eval_chunk must be a positive integer"),
        (dict(lam=-1.0), "λ"),
        (dict(lam=float("inf")), "λ"),
        (dict(seed=1.5), "seed must be an integer"),
        (dict(lam=1e3, lr=1.0, penalty="decoupled"), "overshoots the anchor"),
        (dict(kind="hybrid"), "unknown kind 'hybrid'"),
        (dict(n_train=0), "n_train must be a positive integer"),
    ],
)
def test_config_rejects_bad_values_with_one_line(kwargs, message):
    with pytest.raises(LinftError, match=message) as info:
        TrainConfig(**{"lr": 1e-2, "steps": 1, **kwargs})
    assert "\n" not in str(info.value)


def test_run_config_holds_the_arguments_and_the_run(setup):
    model, batch = setup
    res = fine_tune(copy.deepcopy(model), batch, {k: v[:3] for k, v in batch.items()}, lr=1e-2, steps=1, lam=1,
                    progress=False, track_gap=False)
    assert isinstance(res.config, TrainConfig)
    assert res.config["lam"] == 1.0 and res.config["lr"] == 1e-2 and res.config["steps"] == 1
    assert (res.config["kind"], res.config["n_train"], res.config["n_eval"]) == ("real", 8, 3)
    assert res.config.track_gap is False and res.final["kind"] == res.config.kind


# ---------------------------------------------------------------------------------------------- MinibatchSampler


def test_sampler_draws_every_example_once_per_epoch():
    n, bs = 8, 3
    sampler = MinibatchSampler(n, bs, seed=5)
    assert not sampler.full and iter(sampler) is sampler
    stream = torch.cat([next(sampler) for _ in range(8)])  # 24 indices = 3 epochs, batches crossing epoch ends
    assert all(len(b) == bs for b in stream.split(bs))
    for epoch in stream.split(n):
        assert sorted(epoch.tolist()) == list(range(n))
    # the stream is the seeded permutations, one per epoch
    gen = torch.Generator().manual_seed(5)
    assert torch.equal(stream, torch.cat([torch.randperm(n, generator=gen) for _ in range(3)]))


def test_sampler_is_reproducible_and_seed_dependent():
    def stream(seed, batch_size=4):
        sampler = MinibatchSampler(10, batch_size, seed=seed)
        return torch.cat([next(sampler) for _ in range(10)])

    assert torch.equal(stream(1), stream(1))
    assert not torch.equal(stream(1), stream(2))
    assert stream(3).dtype == torch.int64


def test_sampler_full_batch():
    for batch_size in (None, 8, 100):
        sampler = MinibatchSampler(8, batch_size, seed=0)
        assert sampler.full and sampler.batch_size == 8
        assert torch.equal(next(sampler), torch.arange(8)) and torch.equal(next(sampler), torch.arange(8))
    with pytest.raises(LinftError, match="batch_size"):
        MinibatchSampler(8, 0)
    with pytest.raises(LinftError, match="n must be a positive integer"):
        MinibatchSampler(0, 2)


# ---------------------------------------------------------------------------------------------- gap_reference


def test_gap_reference_builds_checks_or_passes_through(setup):
    model, _ = setup
    real = copy.deepcopy(model)
    built = gap_reference(real)
    assert isinstance(built, LinearizedModel) and built.model is real
    names = [n for n, p in real.named_parameters() if p.requires_grad]
    assert built.names == names
    assert gap_reference(real, built) is built
    lin = LinearizedModel(copy.deepcopy(model))
    assert gap_reference(lin) is lin and gap_reference(lin, built) is lin  # its own reference
    moved = copy.deepcopy(model)
    with torch.no_grad():
        next(p for p in moved.parameters() if p.requires_grad).add_(0.1)
    with pytest.raises(LinftError, match="θ0 differs"):
        gap_reference(moved, built)
    with pytest.raises(LinftError, match="must be a LinearizedModel"):
        gap_reference(real, real)
    fewer = copy.deepcopy(model)
    next(p for p in fewer.parameters() if p.requires_grad).requires_grad_(False)
    with pytest.raises(LinftError, match="different tensors"):
        gap_reference(fewer, built)


# ---------------------------------------------------------------------------------------------- Evaluator


def _perturb(params, seed, scale=0.3):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in params:
            p.add_(scale * torch.randn(p.shape, generator=g))


def test_evaluator_row_on_the_real_model(setup):
    model, batch = setup
    real = copy.deepcopy(model).eval()
    ref = gap_reference(real)
    anchor = {n: p.detach().clone() for n, p in real.named_parameters() if p.requires_grad}
    half = {k: v[:4] for k, v in batch.items()}
    evaluate = Evaluator(real, batch, half, anchor=anchor, lam=2.0, reference=ref, gap_n=3, chunk=3)
    start = evaluate(0)
    assert start["step"] == 0 and start["drift_total"] == 0.0 and start["penalty"] == 0.0
    assert start["gap_train"] < 1e-5 and start["agree_train"] == 1.0
    _perturb([p for p in real.parameters() if p.requires_grad], seed=0)
    row = evaluate(5)
    columns = ["step", "loss", "task_loss", "penalty", "train_acc", "eval_loss", "eval_acc", "drift_total"]
    assert list(row)[: len(columns)] == columns and list(row)[-1] == "pull_frac" and math.isnan(row["pull_frac"])
    with torch.no_grad():
        logits = real(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    assert row["task_loss"] == pytest.approx(task_loss(logits, batch["labels"]).item(), rel=1e-5)
    assert row["train_acc"] == (logits.argmax(-1) == batch["labels"]).double().mean().item()
    assert row["eval_loss"] == pytest.approx(task_loss(logits[:4], batch["labels"][:4]).item(), rel=1e-5)
    assert row["penalty"] == pytest.approx(0.5 * 2.0 * row["drift_total"] ** 2, rel=1e-9)
    assert row["loss"] == pytest.approx(row["task_loss"] + row["penalty"])
    assert row["drift_total"] == pytest.approx(drift(real, anchor)["total"])
    # gap columns: the real model vs the reference at the real model's θ, on the first gap_n = 3 examples
    for split, b in (("train", batch), ("eval", half)):
        direct = linearization_gap(real, ref, {k: v[:3] for k, v in b.items()}, at="model")
        assert row[f"gap_{split}"] == pytest.approx(direct["gap"], rel=1e-5) and row[f"gap_{split}"] > 1e-4
        assert row[f"rel_gap_{split}"] == pytest.approx(direct["rel_gap"], rel=1e-5)
        assert row[f"agree_{split}"] == direct["agreement"]


def test_evaluator_on_a_linearized_model_uses_its_real_network(setup):
    model, batch = setup
    lin = LinearizedModel(copy.deepcopy(model))
    _perturb(lin.parameters(), seed=1)
    row = Evaluator(lin, batch, anchor=lin.theta0, reference=lin, gap_n=None)(2)
    direct = linearization_gap(None, lin, batch)  # real network at lin's θ vs lin
    assert row["gap_train"] == pytest.approx(direct["gap"], rel=1e-5) and row["gap_train"] > 1e-4
    assert row["rel_gap_train"] == pytest.approx(direct["rel_gap"], rel=1e-5)
    assert "eval_loss" not in row and "gap_eval" not in row
    with torch.no_grad():
        assert row["task_loss"] == pytest.approx(task_loss(lin(batch), batch["labels"]).item(), rel=1e-5)
    # without a reference there are no gap columns; a LinearizedModel has no other reference
    assert not any(k.startswith(("gap_", "rel_gap_", "agree_")) for k in Evaluator(lin, batch)(0))
    with pytest.raises(LinftError, match="its own gap reference"):
        Evaluator(lin, batch, reference=LinearizedModel(copy.deepcopy(model)))
    with pytest.raises(LinftError, match="unknown loss"):
        Evaluator(lin, batch, loss="hinge")
    with pytest.raises(LinftError, match="head has 2 outputs"):
        Evaluator(lin, {**batch, "labels": torch.full_like(batch["labels"], 2)})


# ---------------------------------------------------------------------------------------------- anchor, objective


def _manual_gd(model, batch, lam, lr, steps, names):
    """Full-batch GD on R + (λ/2)‖θ_A − θ_A0‖² over the tensors ``names``, by hand."""
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    theta0 = {n: params[n].detach().clone() for n in names}
    model.eval()
    for _ in range(steps):
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        r = task_loss(logits, batch["labels"], "mse")
        grads = torch.autograd.grad(r, list(params.values()))
        with torch.no_grad():
            for (n, p), g in zip(params.items(), grads):
                p.sub_(lr * (g + lam * (p - theta0[n]) if n in theta0 else g))
    return model


def test_anchor_lora_pulls_lora_only_and_the_head_trains_freely(setup):
    model, batch = setup
    lam, lr = 3.0, 0.05
    kw = dict(loss="mse", optimizer="gd", lr=lr, steps=2, lam=lam, progress=False, track_gap=False)
    res = fine_tune(copy.deepcopy(model), batch, None, **kw)  # anchor="lora" is the default
    assert res.config.anchor == "lora"
    lora = [n for n in res.anchor if "lora_" in n]
    head = [n for n in res.anchor if n not in lora]
    assert lora and head and all(is_head_param(n) for n in head)
    expected = _manual_gd(copy.deepcopy(model), batch, lam, lr, 2, lora)
    trained = dict(res.model.named_parameters())
    for n, p in expected.named_parameters():
        torch.testing.assert_close(trained[n], p, rtol=1e-5, atol=1e-7)
    last = res.log.iloc[-1]
    by_hand = sum(((trained[n].detach() - res.anchor[n]).double() ** 2).sum().item() for n in lora) ** 0.5
    assert last["drift_anchored"] == pytest.approx(by_hand, rel=1e-9) and by_hand > 0
    assert last["penalty"] == pytest.approx(0.5 * lam * by_hand**2, rel=1e-9)
    assert last["drift_total"] ** 2 == pytest.approx(by_hand**2 + last["drift_head"] ** 2, rel=1e-9)
    # anchor="all" pulls the head too: the previous behaviour
    every = fine_tune(copy.deepcopy(model), batch, None, anchor="all", **kw)
    expected = _manual_gd(copy.deepcopy(model), batch, lam, lr, 2, list(res.anchor))
    trained = dict(every.model.named_parameters())
    for n, p in expected.named_parameters():
        torch.testing.assert_close(trained[n], p, rtol=1e-5, atol=1e-7)
    assert (every.log["drift_anchored"] == every.log["drift_total"]).all()
    assert every.final["penalty"] == pytest.approx(0.5 * lam * every.final["drift_total"] ** 2, rel=1e-9)


class _NoLora(torch.nn.Module):
    """A toy classifier with no LoRA tensors (embedding + head), taking a token batch."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.embed = torch.nn.Embedding(32000, 4)
        self.classifier = torch.nn.Linear(4, 2)

    def forward(self, input_ids, attention_mask, **_):
        h = (self.embed(input_ids) * attention_mask[..., None]).sum(1) / attention_mask.sum(1, keepdim=True)
        return self.classifier(h)


def test_anchor_lora_on_a_model_without_lora_says_to_pass_all(setup):
    _, batch = setup
    for model in (_NoLora(), LinearizedModel(_NoLora())):
        with pytest.raises(LinftError, match="pass anchor='all'") as info:
            fine_tune(model, batch, lr=1e-2, steps=1, lam=1.0, progress=False, track_gap=False)
        assert "\n" not in str(info.value)
    res = fine_tune(_NoLora(), batch, lr=1e-2, steps=1, lam=1.0, anchor="all", progress=False, track_gap=False)
    assert res.final["drift_anchored"] == res.final["drift_total"] > 0
    with pytest.raises(LinftError, match="unknown anchor 'head'"):
        TrainConfig(lr=1e-2, steps=1, anchor="head")


def test_full_batch_objective_every_step(setup):
    model, batch = setup
    res = fine_tune(copy.deepcopy(model), batch, None, loss="mse", optimizer="gd", lr=0.05, steps=4, lam=2.0,
                    log_every=3, progress=False, track_gap=False)
    assert isinstance(res.objective, np.ndarray) and res.objective.dtype == np.float64
    assert res.objective.shape == (5,) and list(res.log["step"]) == [0, 3, 4]
    np.testing.assert_allclose(res.objective[res.log["step"]], res.log["loss"], rtol=1e-6)
    assert res.log["penalty"].iloc[-1] > 0
    minibatch = fine_tune(copy.deepcopy(model), batch, None, lr=1e-2, steps=1, batch_size=3, progress=False,
                          track_gap=False)
    assert minibatch.objective is None


# ---------------------------------------------------------------------------------------------- new gap columns


def test_rel_change_gap_and_gap_per_drift2_by_hand(setup):
    model, batch = setup
    start = copy.deepcopy(model).eval()
    ref = LinearizedModel(copy.deepcopy(model))
    res = fine_tune(copy.deepcopy(model), batch, batch, lr=1e-2, steps=2, lin_reference=ref, gap_n=3,
                    progress=False)
    first = res.log.iloc[0]
    assert math.isnan(first["rel_change_gap_train"]) and math.isnan(first["gap_per_drift2_eval"])
    three = {k: v[:3] for k, v in batch.items()}
    inputs = {k: three[k] for k in ("input_ids", "attention_mask")}
    with torch.no_grad():
        f = res.model.eval()(**inputs).logits.double()
        f0 = start(**inputs).logits.double()
        f_lin = ref(three, params=res.model).double()
    gap = torch.linalg.vector_norm(f - f_lin).item()
    last = res.log.iloc[-1]
    for split in ("train", "eval"):  # eval batch = train batch here
        assert last[f"gap_{split}"] == pytest.approx(gap, rel=1e-4)
        assert last[f"rel_change_gap_{split}"] == pytest.approx(gap / torch.linalg.vector_norm(f - f0).item(),
                                                                rel=1e-4)
        assert last[f"gap_per_drift2_{split}"] == pytest.approx(last[f"gap_{split}"] / last["drift_total"] ** 2,
                                                                rel=1e-12)


# ---------------------------------------------------------------------------------------------- gd_step_size


def test_gd_step_size_is_the_gauss_newton_top_eigenvalue_and_descends(setup):
    from linft.ntk import explicit_jacobian

    model, batch = setup
    four = {k: v[2:6] for k, v in batch.items()}  # two of each class
    step = gd_step_size(model, four, lam=1.0)
    J, _ = explicit_jacobian(model, four, params="trainable", output="full")  # [N, C, P], float64
    J = J.reshape(-1, J.shape[-1])
    sv = torch.linalg.svdvals(J)  # K = JJᵀ [N·C, N·C] has eigenvalues σ(J)² (N·C = 8 < P)
    top = sv[0].item() ** 2 / 4  # the top eigenvalue of JᵀJ/N, σmax(J)²/N (P×P is too big)
    assert step["beta"] == pytest.approx(top, rel=1e-5) and step["N"] == 4 and step["c"] == 1.0
    # expected values from the Jacobian, not from gd_step_size's own outputs
    assert step["mu_max"] == pytest.approx(sv[0].item() ** 2, rel=1e-5)
    assert step["lr"] == pytest.approx(1 / (top + 1.0), rel=1e-5)
    mu_min = sv[-1].item() ** 2
    assert step["kappa_lambda"] == pytest.approx((sv[0].item() ** 2 + 4 * 1.0) / (mu_min + 4 * 1.0), rel=1e-4)
    assert gd_step_size(model, four, lam=0.0, c=0.5)["lr"] == pytest.approx(0.5 / top, rel=1e-5)
    diff = explicit_jacobian(model, four, params="trainable", output="logit_diff")[0].reshape(4, -1)
    beta_diff = gd_step_size(model, four, 0.0, mse_target="logit_diff")["beta"]
    assert beta_diff == pytest.approx(torch.linalg.svdvals(diff)[0].item() ** 2 / 4, rel=1e-5)
    for bad in (0, 2, -1, float("nan"), True):
        with pytest.raises(LinftError, match=r"c must be a number in \(0, 2\)"):
            gd_step_size(model, four, 1.0, c=bad)
    with pytest.raises(LinftError, match="loss='mse'"):
        gd_step_size(model, four, 1.0, loss="ce")
    # full-batch MSE + GD at that step: the anchored objective never increases, on every step
    res = fine_tune(copy.deepcopy(model), four, None, loss="mse", optimizer="gd", lr=step["lr"], lam=1.0, steps=4,
                    log_every=4, progress=False, track_gap=False)
    assert len(res.objective) == 5 and res.objective[-1] < res.objective[0]
    assert (np.diff(res.objective) <= 1e-6 * np.abs(res.objective[:-1])).all()


def test_gd_step_size_of_a_linearized_model_is_measured_at_its_theta0(setup):
    model, batch = setup
    four = {k: v[2:6] for k, v in batch.items()}
    lin = LinearizedModel(copy.deepcopy(model))
    _perturb([p for p in lin.model.parameters() if p.requires_grad], seed=3)  # the wrapped network moves on
    moved = {n: p.detach().clone() for n, p in lin.model.named_parameters()}
    assert gd_step_size(lin, four, 0.5)["beta"] == pytest.approx(gd_step_size(model, four, 0.5)["beta"], rel=1e-9)
    for n, p in lin.model.named_parameters():  # and is left as it was
        assert torch.equal(p, moved[n]), n


# ---------------------------------------------------------------------------------------------- linear_probe


def test_linear_probe_trains_the_head_only_and_restores_the_flags(setup):
    model, batch = setup
    probe = copy.deepcopy(model)
    flags = {n: p.requires_grad for n, p in probe.named_parameters()}
    assert any(flags[n] for n in flags if "lora_" in n)
    before = {n: p.detach().clone() for n, p in probe.named_parameters()}
    res = linear_probe(probe, batch, lr=5e-2, steps=4)
    assert res.model is probe and res.config.optimizer == "adamw" and res.config.lam == 0.0
    assert res.log["task_loss"].iloc[-1] < res.log["task_loss"].iloc[0]
    assert "gap_train" not in res.log.columns and len(res.objective) == 5
    changed = {n for n, p in probe.named_parameters() if not torch.equal(p, before[n])}
    assert changed == {n for n in before if is_head_param(n) and flags[n]}
    assert {n: p.requires_grad for n, p in probe.named_parameters()} == flags
    mse = linear_probe(copy.deepcopy(model), batch, loss="mse", lr=0.1, steps=2)
    assert mse.config.optimizer == "gd" and mse.objective[-1] < mse.objective[0]
    # the flags come back when the run fails too
    with pytest.raises(LinftError, match="head has 2 outputs"):
        linear_probe(probe, {**batch, "labels": torch.full_like(batch["labels"], 2)}, lr=1e-2, steps=1)
    assert {n: p.requires_grad for n, p in probe.named_parameters()} == flags
    with pytest.raises(LinftError, match="LinearizedModel"):
        linear_probe(LinearizedModel(copy.deepcopy(model)), batch, lr=1e-2, steps=1)


def test_linear_schedule_warms_up_then_decays_to_zero(tiny_lora, one_thread):
    from linft.train import TrainConfig, _scheduler

    model, _ = tiny_lora(["a", "b"], [0, 1])
    config = TrainConfig(lr=1.0, steps=10, schedule="linear", warmup=0.2)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1.0)
    scheduler = _scheduler(config, opt)
    rates = []
    for _ in range(10):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        scheduler.step()
    assert rates == pytest.approx([0.0, 0.5, 1.0, 0.875, 0.75, 0.625, 0.5, 0.375, 0.25, 0.125])
    assert _scheduler(TrainConfig(lr=1.0, steps=10), opt) is None


def test_log_steps_and_score_n(tiny_lora, one_thread):
    texts = ["a fine film", "dull and long", "great fun", "a mess", "moving", "tedious"]
    model, batch = tiny_lora(texts, [1, 0, 1, 0, 1, 0])
    result = fine_tune(model, batch, batch, lr=1e-3, steps=5, batch_size=2, log_steps=(2,), score_n=2,
                       track_gap=False, progress=False)
    assert result.log["step"].tolist() == [0, 2, 5]
    from linft.train import task_loss

    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"][:2], attention_mask=batch["attention_mask"][:2]).logits
    assert result.final["task_loss"] == pytest.approx(task_loss(logits, batch["labels"][:2]).item(), rel=1e-5)


@pytest.mark.parametrize("kwargs, words", [
    (dict(schedule="cosine"), "schedule"),
    (dict(warmup=1.0), "warmup"),
    (dict(log_steps=(9,)), "log_steps"),
    (dict(score_n=0), "score_n"),
])
def test_schedule_and_logging_arguments_are_checked(kwargs, words):
    from linft.train import TrainConfig

    with pytest.raises(LinftError, match=words):
        TrainConfig(lr=1e-3, steps=4, **kwargs)


def test_score_n_with_full_batch_gd_is_refused(tiny_lora, one_thread):
    model, batch = tiny_lora(["a", "b", "c"], [0, 1, 0])
    with pytest.raises(LinftError, match="score_n"):
        fine_tune(model, batch, lr=1e-3, steps=1, optimizer="gd", loss="mse", score_n=1, track_gap=False,
                  progress=False)


def test_fine_tune_takes_a_config_or_keyword_settings(setup):
    model, batch = setup
    config = TrainConfig(lr=1e-2, steps=2, lam=0.5, seed=3, progress=False, gap_n=2)
    a = fine_tune(copy.deepcopy(model), batch, batch, config=config)
    b = fine_tune(copy.deepcopy(model), batch, batch, lr=1e-2, steps=2, lam=0.5, seed=3, progress=False, gap_n=2)
    assert a.log.equals(b.log)
    assert a.config == b.config and a.config.n_train == batch["labels"].shape[0] and config.n_train is None
    with pytest.raises(LinftError, match="not both"):
        fine_tune(copy.deepcopy(model), batch, config=config, lr=1e-3)
    with pytest.raises(LinftError, match="config must be a TrainConfig"):
        fine_tune(copy.deepcopy(model), batch, config={"lr": 1e-2, "steps": 1})
    with pytest.raises(TypeError, match="unexpected keyword argument 'lrate'"):
        fine_tune(copy.deepcopy(model), batch, lrate=1e-2, steps=1)
    with pytest.raises(TypeError, match="'steps'"):
        fine_tune(copy.deepcopy(model), batch, lr=1e-2)
