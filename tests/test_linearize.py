"""LinearizedModel: equal to the model at θ0, first-order agreement, exact gradients, the gap helper."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from linft import LinftError, functional
from linft.linearize import GAP_AT, LinearizedModel, gap_numbers, linearization_gap, logits_of, trainable_parameters

TEXTS = ["a great film", "an awful movie", "i loved it", "boring and bad", "wonderful acting", "a terrible plot"]


@pytest.fixture(scope="module")
def setup(one_thread, tiny_lora):
    return tiny_lora(TEXTS, [1, 0, 1, 0, 1, 0])


def _direction(lin, seed=0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    v = {n: torch.randn(t.shape, generator=g) for n, t in lin.theta0.items()}
    norm = torch.sqrt(sum((t**2).sum() for t in v.values()))
    return {n: t * (scale / norm) for n, t in v.items()}


def test_equals_model_at_theta0(setup):
    model, batch = setup
    lin = LinearizedModel(model)
    with torch.no_grad():
        real = logits_of(model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]))
        torch.testing.assert_close(lin(**batch), real, atol=1e-5, rtol=0)
        torch.testing.assert_close(lin.base_logits(batch), real, atol=1e-5, rtol=0)
        torch.testing.assert_close(lin.real_logits(batch), real, atol=1e-5, rtol=0)
    # with gradients enabled (the routed-gradient path) the value is the same too
    torch.testing.assert_close(lin(**batch).detach(), real, atol=1e-5, rtol=0)
    # θ are the module's only parameters, named after the wrapped model's trainable tensors
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert lin.names == names and len(list(lin.parameters())) == len(names)
    assert list(trainable_parameters(lin)) == names
    assert all(d.abs().max() == 0 for d in lin.delta().values())


def test_first_order_agreement(setup):
    """‖f(θ0 + εv) − f_lin(θ0 + εv)‖ shrinks like ε² while the first-order term shrinks like ε."""
    model, batch = setup
    lin = LinearizedModel(model)
    v = _direction(lin)
    gaps, firsts = [], []
    for eps in (0.5, 0.25, 0.125):
        p = {n: lin.theta0[n] + eps * v[n] for n in v}
        with torch.no_grad():
            gaps.append((lin.real_logits(batch, params=p) - lin(batch, params=p)).norm().item())
            firsts.append(lin.jvp(batch, {n: eps * t for n, t in v.items()}).norm().item())
    for a, b in zip(gaps, gaps[1:]):
        assert 3.3 < a / b < 4.7, gaps
    for a, b in zip(firsts, firsts[1:]):
        assert a / b == pytest.approx(2.0, rel=1e-3)
    assert gaps[-1] < 0.01 * firsts[-1]


def test_gradients_exact(setup):
    """∇θ of a squared loss of f_lin: matches central differences (exact for a quadratic) and reverse-over-jvp."""
    model, batch = setup
    lin = LinearizedModel(model)
    lin_ref = LinearizedModel(model, grad_mode="jvp")
    v = _direction(lin, seed=1, scale=0.5)
    with torch.no_grad():
        for (n, p), q in zip(lin.params.items(), lin_ref.params.values()):
            p.add_(v[n])
            q.add_(v[n])

    def loss(m):
        return 0.5 * m(**batch).pow(2).sum()

    loss(lin).backward()
    loss(lin_ref).backward()
    grad = {n: p.grad for n, p in lin.params.items()}
    for (n, g), g_ref in zip(grad.items(), (p.grad for p in lin_ref.parameters())):
        torch.testing.assert_close(g, g_ref, atol=1e-6, rtol=1e-4, msg=n)
    assert any(g.abs().max() > 0 for n, g in grad.items() if "lora_B" in n)
    # directional derivative vs central difference along a random direction u
    u = _direction(lin, seed=2, scale=1.0)
    h = 1e-2
    with torch.no_grad():
        plus = 0.5 * lin(batch, params={n: p + h * u[n] for n, p in lin.params.items()}).pow(2).sum()
        minus = 0.5 * lin(batch, params={n: p - h * u[n] for n, p in lin.params.items()}).pow(2).sum()
    fd = ((plus - minus) / (2 * h)).item()
    analytic = sum((grad[n] * u[n]).sum() for n in grad).item()
    assert analytic == pytest.approx(fd, rel=2e-3, abs=1e-5)


def test_linearization_gap_modes(setup):
    model, batch = setup
    work = copy.deepcopy(model)
    lin = LinearizedModel(work)
    g0 = linearization_gap(None, lin, batch)
    assert g0["gap"] < 1e-5 and g0["agreement"] == 1.0 and g0["n"] == len(TEXTS)
    with torch.no_grad():
        for n, p in lin.params.items():
            p.add_(_direction(lin, seed=3, scale=2.0)[n])
    same = linearization_gap(None, lin, batch)  # real at lin's θ vs lin at θ
    assert same["gap"] > 1e-4 and same["rel_gap"] == pytest.approx(same["gap"] / same["f_norm"])
    moved = lin.copy_to(copy.deepcopy(model))  # a real model holding lin's θ
    own = linearization_gap(moved, lin, batch, at="own")
    at_model = linearization_gap(moved, lin, batch, at="model")
    for other in (own, at_model):
        assert other["gap"] == pytest.approx(same["gap"], rel=1e-4, abs=1e-6)
    # the unchanged wrapped model differs from the trained linear model
    assert linearization_gap(work, lin, batch)["gap"] > 1e-4


def test_bad_inputs(setup):
    model, batch = setup
    lin = LinearizedModel(model)
    frozen = copy.deepcopy(model)
    for p in frozen.parameters():
        p.requires_grad_(False)
    with pytest.raises(LinftError, match="no trainable"):
        LinearizedModel(frozen)
    with pytest.raises(LinftError, match="already a LinearizedModel"):
        LinearizedModel(lin)
    with pytest.raises(LinftError, match="grad_mode"):
        LinearizedModel(model, grad_mode="fd")
    with pytest.raises(LinftError, match="empty"):
        lin(batch["input_ids"][:0], batch["attention_mask"][:0])
    with pytest.raises(LinftError, match="params lack"):
        lin(batch, params={})
    with pytest.raises(LinftError, match=r"unknown at 'both': use one of \('lin', 'model', 'own'\)"):
        linearization_gap(model, lin, batch, at="both")


def test_gap_numbers_is_the_gap_of_two_logit_tensors():
    f = torch.tensor([[3.0, 0.0], [0.0, 4.0], [1.0, 2.0]])
    f_lin = torch.tensor([[3.0, 0.0], [0.0, 4.0], [3.0, 2.0]])
    g = gap_numbers(f, f_lin)
    assert g["gap"] == pytest.approx(2.0) and g["f_norm"] == pytest.approx(30**0.5)
    assert g["rel_gap"] == pytest.approx(2.0 / 30**0.5) and g["agreement"] == pytest.approx(2 / 3) and g["n"] == 3
    assert gap_numbers(f, f)["gap"] == 0.0 and gap_numbers(f, f)["agreement"] == 1.0
    assert math.isnan(gap_numbers(torch.zeros(2, 2), torch.ones(2, 2))["rel_gap"])
    with pytest.raises(LinftError, match="same shape"):
        gap_numbers(f, f[:2])
    assert GAP_AT == ("lin", "model", "own")


def test_inputs_go_through_the_one_input_layer(setup):
    model, batch = setup
    lin = LinearizedModel(model)
    assert logits_of is functional.logits_of  # re-exported, not a copy
    with torch.no_grad():
        by_dict = lin(batch)
        torch.testing.assert_close(lin(**batch), by_dict, rtol=0, atol=0)
        torch.testing.assert_close(lin(batch["input_ids"], batch["attention_mask"]), by_dict, rtol=0, atol=0)
        # token_type_ids reach the model (BERT): non-zero types change the logits, as on the real model
        types = torch.ones_like(batch["input_ids"])
        typed = lin(batch["input_ids"], batch["attention_mask"], token_type_ids=types)
        real = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], token_type_ids=types).logits
        torch.testing.assert_close(typed, real, atol=1e-5, rtol=0)
        assert not torch.allclose(typed, by_dict)
        assert not torch.equal(lin.base_logits({**batch, "token_type_ids": types}), lin.base_logits(batch))
    with pytest.raises(LinftError, match="no 'attention_mask'"):
        lin(batch["input_ids"])
    with pytest.raises(LinftError, match="no 'attention_mask'"):
        lin.real_logits({"input_ids": batch["input_ids"]})
    with pytest.raises(LinftError, match="no 'input_ids'"):
        lin.jvp({"attention_mask": batch["attention_mask"]}, lin.delta())
    with pytest.raises(LinftError, match="only 0 and 1"):
        linearization_gap(None, lin, {**batch, "attention_mask": 2 * batch["attention_mask"]})
