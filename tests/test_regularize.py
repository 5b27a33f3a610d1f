"""Anchored penalty, decoupled and selective pulls, drift meters (on a tiny layered toy model: fast)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from linft import LinftError
from linft.linearize import LinearizedModel
from linft.regularize import AnchoredStep, anchored_names, anchored_penalty, check_lam, drift, param_groups, snapshot


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.dense = nn.Linear(4, 4)


class Toy(nn.Module):
    """Names like a transformer: encoder.layer.{0,1}.dense and a classifier head; layer 0 bias frozen."""

    def __init__(self):
        super().__init__()
        self.encoder = nn.Module()
        self.encoder.layer = nn.ModuleList([Block(), Block()])
        self.classifier = nn.Linear(4, 3)
        self.encoder.layer[0].dense.bias.requires_grad_(False)

    def forward(self, input_ids=None, attention_mask=None, x=None):
        h = x if x is not None else input_ids.float()
        for block in self.encoder.layer:
            h = torch.tanh(block.dense(h))
        return self.classifier(h)


def make(seed=0):
    torch.manual_seed(seed)
    return Toy()


def data(seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(16, 4, generator=g), torch.randint(0, 3, (16,), generator=g)


def train(model, steps, lam=0.0, penalty="loss", selective=False, lr=0.05, anchored=True):
    """Plain AdamW loop; with ``anchored`` an AnchoredStep is applied (add_to_grad or step)."""
    x, y = data()
    anchor = snapshot(model)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.0)
    pull = AnchoredStep(model, anchor, lam, lr=lr, selective=selective) if anchored else None
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x=x), y).backward()
        if pull is not None and penalty == "loss":
            pull.add_to_grad()
        opt.step()
        if pull is not None and penalty == "decoupled":
            pull.step()
    return model, anchor


def test_snapshot_and_groups():
    model = make()
    anchor = snapshot(model)
    assert list(anchor) == ["encoder.layer.0.dense.weight", "encoder.layer.1.dense.weight",
                            "encoder.layer.1.dense.bias", "classifier.weight", "classifier.bias"]
    assert list(param_groups(model)) == ["layer0", "layer1", "head"]
    d = drift(model, anchor)
    assert list(d) == ["total", "layer0", "layer1", "head"] and d["total"] == 0.0


def test_penalty_value_and_gradient():
    model = make()
    anchor = snapshot(model)
    g = torch.Generator().manual_seed(2)
    shifts = {n: torch.randn(a.shape, generator=g) for n, a in anchor.items()}
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n in shifts:
                p.add_(shifts[n])
    lam = 0.7
    value = anchored_penalty(model, anchor, lam)
    expected = 0.5 * lam * sum((s**2).sum() for s in shifts.values())
    assert value.item() == pytest.approx(expected.item(), rel=1e-6)
    value.backward()
    for n, p in model.named_parameters():
        if n in shifts:
            torch.testing.assert_close(p.grad, lam * shifts[n])
    # drift agrees: total² = Σ groups², total = ‖shift‖
    d = drift(model, anchor)
    assert d["total"] == pytest.approx(sum((s**2).sum() for s in shifts.values()).sqrt().item(), rel=1e-6)
    assert d["total"] ** 2 == pytest.approx(d["layer0"] ** 2 + d["layer1"] ** 2 + d["head"] ** 2, rel=1e-9)
    # add_to_grad adds exactly the penalty's gradient
    model.zero_grad()
    AnchoredStep(model, anchor, lam).add_to_grad()
    for n, p in model.named_parameters():
        if n in shifts:
            torch.testing.assert_close(p.grad, lam * shifts[n])


@pytest.mark.parametrize("penalty", ["loss", "decoupled"])
@pytest.mark.parametrize("selective", [False, True])
def test_lambda_zero_is_plain_training_bitwise(penalty, selective):
    plain, _ = train(make(), 25, anchored=False)
    zero, _ = train(make(), 25, lam=0.0, penalty=penalty, selective=selective)
    for (n, a), b in zip(plain.named_parameters(), zero.parameters()):
        assert torch.equal(a, b), n


@pytest.mark.parametrize("penalty", ["loss", "decoupled"])
def test_lambda_shrinks_drift(penalty):
    free, anchor0 = train(make(), 40, lam=0.0, penalty=penalty)
    held, anchor1 = train(make(), 40, lam=5.0, penalty=penalty)
    d0, d1 = drift(free, anchor0), drift(held, anchor1)
    assert d1["total"] < 0.8 * d0["total"]
    assert d1["layer1"] < d0["layer1"] and d1["head"] < d0["head"]


def test_decoupled_step_formula():
    model = make()
    anchor = snapshot(model)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    AnchoredStep(model, anchor, lam=2.0, lr=0.1).step()
    for n, p in model.named_parameters():
        if n in anchor:
            torch.testing.assert_close(p, before[n] - 0.2 * (before[n] - anchor[n]))
        else:  # frozen tensors are never touched
            assert torch.equal(p, before[n])


def test_selective_skips_when_gradient_points_toward_anchor():
    model = make()
    anchor = snapshot(model)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.5)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    params = dict(model.named_parameters())
    toward, away = "encoder.layer.1.dense.weight", "classifier.weight"
    for n in anchor:
        params[n].grad = torch.zeros_like(params[n])
    params[toward].grad = -(before[toward] - anchor[toward])  # ∇R·(θ−θ0) < 0: the task moves away, skip the pull
    params[away].grad = before[away] - anchor[away]  # ∇R·(θ−θ0) > 0: pulling back also lowers R
    step = AnchoredStep(model, anchor, lam=1.0, lr=0.1, selective=True)
    mask = step.step()
    assert mask[toward] is False and mask[away] is True
    assert torch.equal(params[toward], before[toward])
    torch.testing.assert_close(params[away], before[away] - 0.1 * (before[away] - anchor[away]))
    # zero gradient counts as ∇R·(θ−θ0) = 0 ≥ 0: pulled
    assert mask["classifier.bias"] is True
    # the same test, applied to the loss-penalty form
    model.zero_grad()
    params[toward].grad = -(params[toward] - anchor[toward]).detach()
    params[away].grad = torch.zeros_like(params[away])
    mask = AnchoredStep(model, anchor, lam=1.0, selective=True).add_to_grad()
    assert mask[toward] is False
    torch.testing.assert_close(params[toward].grad, -(params[toward] - anchor[toward]).detach())
    # global granularity: one decision for all tensors
    mask = AnchoredStep(model, anchor, lam=1.0, selective=True, granularity="global").mask()
    assert list(mask) == ["all"]


def test_works_on_linearized_model():
    model = make()
    lin = LinearizedModel(model)
    with torch.no_grad():
        for p in lin.parameters():
            p.add_(0.1)
    d = drift(lin, lin.theta0)
    assert list(d) == ["total", "layer0", "layer1", "head"]
    assert d["total"] == pytest.approx(0.1 * sum(p.numel() for p in lin.parameters()) ** 0.5, rel=1e-5)
    assert anchored_penalty(lin, lin.theta0, 2.0).item() == pytest.approx(d["total"] ** 2, rel=1e-5)


def test_bad_inputs():
    model = make()
    anchor = snapshot(model)
    with pytest.raises(LinftError, match="λ"):
        anchored_penalty(model, anchor, -1.0)
    with pytest.raises(LinftError, match="λ"):
        AnchoredStep(model, anchor, lam=-0.1)
    with pytest.raises(LinftError, match="anchor lacks"):
        anchored_penalty(model, {}, 1.0)
    with pytest.raises(LinftError, match="granularity"):
        AnchoredStep(model, anchor, lam=1.0, granularity="coordinate")
    with pytest.raises(LinftError, match="overshoots"):
        AnchoredStep(model, anchor, lam=100.0, lr=0.1).step()
    bad = copy.deepcopy(anchor)
    bad["classifier.bias"] = torch.zeros(7)
    with pytest.raises(LinftError, match="shape"):
        drift(model, bad)


def test_check_lam():
    assert check_lam(2) == 2.0 and isinstance(check_lam(2), float) and check_lam(0) == 0.0
    for bad in (-0.5, float("inf"), float("nan"), "strong", None):
        with pytest.raises(LinftError, match="λ"):
            check_lam(bad)


def test_anchored_names_and_a_partial_anchor():
    model = make()
    names = list(snapshot(model))
    assert anchored_names(model, "all") == names == anchored_names(names, "all")
    lora = ["encoder.layer.0.q.lora_A.default.weight", "encoder.layer.0.q.lora_B.default.weight", "classifier.bias"]
    assert anchored_names(lora, "lora") == lora[:2]
    with pytest.raises(LinftError, match="pass anchor='all'") as info:
        anchored_names(model)  # default "lora": the toy has no LoRA tensors
    assert "\n" not in str(info.value)
    with pytest.raises(LinftError, match="unknown anchor"):
        anchored_names(model, "head")
    # AnchoredStep over a subset: only those tensors are pulled, counted and measured
    anchor = snapshot(model)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    part = ["encoder.layer.1.dense.weight", "classifier.bias"]
    step = AnchoredStep(model, anchor, lam=2.0, lr=0.1, names=part)
    assert step.penalty() == pytest.approx(0.5 * 2.0 * (16 + 3), rel=1e-6)
    assert step.distance() == pytest.approx(19**0.5, rel=1e-6)
    assert list(step.step()) == part
    for n, p in model.named_parameters():
        expected = before[n] - 0.2 * (before[n] - anchor[n]) if n in part else before[n]
        torch.testing.assert_close(p, expected)
    layer = AnchoredStep(model, anchor, lam=1.0, granularity="layer", names=part)
    assert layer.units == {"layer1": [part[0]], "head": [part[1]]}
    with pytest.raises(LinftError, match="no trainable tensor"):
        AnchoredStep(model, anchor, lam=1.0, names=["encoder.layer.0.dense.bias"])  # frozen
