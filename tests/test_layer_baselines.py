"""linft.layers baselines: each selector on inputs whose answer is known, determinism, and bad budgets."""

import copy
import math

import numpy as np
import pytest
import torch

from linft import LinftError, models
from linft.layers import (
    LayerKernels,
    baselines,
    first_layers,
    gradient_scores,
    last_layers,
    random_layers,
    top_layers,
    trace_layers,
    weight_condition_scores,
)

TEXTS = ["a fine film", "dull and slow", "great acting", "a waste of time"]


@pytest.fixture(scope="module")
def base(one_thread):
    """MiniLM without LoRA, and a 4-example batch of 8 tokens with labels."""
    model, tok = models.load("minilm", 2)
    enc = tok(TEXTS, padding="max_length", max_length=8, truncation=True, return_tensors="pt")
    batch = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
             "labels": torch.tensor([1, 0, 1, 0])}
    return model, batch


def test_first_and_last():
    assert first_layers(6, 2) == (0, 1) and last_layers(6, 2) == (4, 5)
    assert first_layers(6, 6) == last_layers(6, 6) == tuple(range(6))
    assert last_layers(30, 1) == (29,)


@pytest.mark.parametrize("budget", [0, 7, -1, 2.5, True, "2"])
def test_bad_budgets_raise_one_line(budget):
    for call in (lambda: first_layers(6, budget), lambda: last_layers(6, budget),
                 lambda: random_layers(6, budget, seed=0), lambda: top_layers(dict.fromkeys(range(6), 1.0), budget)):
        with pytest.raises(LinftError) as err:
            call()
        assert "\n" not in str(err.value)


def test_random_layers_are_seeded_and_distinct():
    draws = random_layers(6, 2, seed=3, draws=5)
    assert draws == random_layers(6, 2, seed=3, draws=5)
    assert draws != random_layers(6, 2, seed=4, draws=5)
    assert len(set(draws)) == 5
    assert all(len(d) == 2 and d == tuple(sorted(d)) and set(d) <= set(range(6)) for d in draws)
    every = random_layers(4, 2, seed=0, draws=8)  # only C(4, 2) = 6 subsets: each once, then repeats
    assert len(set(every[:6])) == 6 and len(every) == 8
    with pytest.raises(LinftError):
        random_layers(6, 2, seed=0, draws=0)


def test_top_layers_orders_and_breaks_ties_by_index():
    scores = {0: 1.0, 1: 5.0, 2: 3.0, 3: 5.0, 4: -2.0}
    assert top_layers(scores, 2) == (1, 3)
    assert top_layers(scores, 2, largest=False) == (0, 4)
    assert top_layers({0: 2.0, 1: 2.0, 2: 2.0}, 1) == (0,)  # ties: the lower layer
    assert top_layers({0: math.inf, 1: 0.0}, 1, largest=False) == (1,)
    with pytest.raises(LinftError, match="NaN"):
        top_layers({0: float("nan"), 1: 1.0}, 1)
    with pytest.raises(LinftError):
        top_layers({}, 1)


def test_trace_layers_picks_the_largest_traces():
    blocks = {f"layer{i}": torch.eye(4, dtype=torch.float64) * scale for i, scale in enumerate([1.0, 3.0, 2.0, 0.5])}
    lk = LayerKernels(blocks, None, n_examples=4, n_outputs=1)
    assert trace_layers(lk, 2) == (1, 2) and trace_layers(lk, 1) == (1,)
    with pytest.raises(LinftError):
        trace_layers(lk, 5)


def test_gradient_scores_known_answer_and_no_side_effects(base):
    model, batch = base
    scores = gradient_scores(model, batch, targets=("q", "v"))
    assert sorted(scores) == list(range(6)) and all(s > 0 for s in scores.values())
    # by hand, layer 2: ‖∇ over query and value weights‖ / ‖those weights‖
    attention = model.bert.encoder.layer[2].attention.self
    weights = [attention.query.weight, attention.value.weight]
    flags = [w.requires_grad for w in weights]
    manual = copy.deepcopy(model)
    ws = [manual.bert.encoder.layer[2].attention.self.query.weight,
          manual.bert.encoder.layer[2].attention.self.value.weight]
    loss = torch.nn.functional.cross_entropy(manual(input_ids=batch["input_ids"],
                                                    attention_mask=batch["attention_mask"]).logits, batch["labels"])
    grads = torch.autograd.grad(loss, ws)
    expected = math.sqrt(sum(float(g.double().pow(2).sum()) for g in grads)
                         / sum(float(w.detach().double().pow(2).sum()) for w in ws))
    assert scores[2] == pytest.approx(expected, rel=1e-5)
    assert [w.requires_grad for w in weights] == flags and all(w.grad is None for w in weights)
    # silencing layer 4's attention output (not a target) leaves its query/value without gradient: score 0
    silenced = copy.deepcopy(model)
    with torch.no_grad():
        silenced.bert.encoder.layer[4].attention.output.dense.weight.zero_()
        silenced.bert.encoder.layer[4].attention.output.dense.bias.zero_()
    quiet = gradient_scores(silenced, batch, targets=("q", "v"))
    assert quiet[4] == 0.0 and 4 not in top_layers(quiet, 5)


def test_gradient_scores_are_the_same_with_lora_at_init(base):
    model, batch = base
    plain = gradient_scores(model, batch, targets=("q", "v"))
    adapted = models.add_lora(copy.deepcopy(model), ("q", "v"), rank=4, train_head=False)
    with_lora = gradient_scores(adapted, batch, targets=("q", "v"))
    assert with_lora.keys() == plain.keys()
    for layer in plain:  # B = 0: the same function, so the same gradients of the pretrained weights
        assert with_lora[layer] == pytest.approx(plain[layer], rel=1e-4)


def test_weight_condition_scores_known_answer(base):
    model, _ = base
    scores = weight_condition_scores(model, targets=("q", "v"))
    layer3 = model.bert.encoder.layer[3].attention.self
    expected = np.mean([np.linalg.cond(layer3.query.weight.detach().double().numpy()),
                        np.linalg.cond(layer3.value.weight.detach().double().numpy())])
    assert scores[3] == pytest.approx(expected, rel=1e-8)
    assert all(s >= 1 for s in scores.values())
    conditioned = copy.deepcopy(model)  # layer 1's query and value become orthogonal: κ = 1, the best possible
    q, _ = torch.linalg.qr(torch.randn(384, 384, generator=torch.Generator().manual_seed(0)))
    with torch.no_grad():
        conditioned.bert.encoder.layer[1].attention.self.query.weight.copy_(q)
        conditioned.bert.encoder.layer[1].attention.self.value.weight.copy_(2 * q)
    best = weight_condition_scores(conditioned, targets=("q", "v"))
    assert best[1] == pytest.approx(1.0, rel=1e-5) and top_layers(best, 1, largest=False) == (1,)
    adapted = models.add_lora(copy.deepcopy(conditioned), ("q", "v"), rank=4)
    assert weight_condition_scores(adapted, targets=("q", "v")) == pytest.approx(best, rel=1e-10)


def test_baselines_keys_determinism_and_budget(base):
    model, batch = base
    adapted = models.add_lora(copy.deepcopy(model), ("q", "v"), rank=4, train_head=False)
    lk = LayerKernels.compute(adapted, batch)
    choices = baselines(adapted, batch, lk, 2, seed=1, n_random=3, targets=("q", "v"))
    assert list(choices) == ["first", "last", "random0", "random1", "random2", "trace", "gradient", "weight_kappa",
                             "all"]
    assert choices["first"] == (0, 1) and choices["last"] == (4, 5) and choices["all"] == tuple(range(6))
    assert all(len(v) == 2 for k, v in choices.items() if k != "all")
    assert choices["trace"] == trace_layers(lk, 2)
    assert choices["gradient"] == top_layers(gradient_scores(adapted, batch, targets=("q", "v")), 2)
    assert choices["weight_kappa"] == top_layers(weight_condition_scores(adapted, targets=("q", "v")), 2,
                                                 largest=False)
    assert baselines(adapted, batch, lk, 2, seed=1, n_random=3, targets=("q", "v")) == choices
    for budget in (0, 7):
        with pytest.raises(LinftError, match="budget"):
            baselines(adapted, batch, lk, budget, targets=("q", "v"))
