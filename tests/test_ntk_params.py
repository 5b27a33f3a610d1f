"""linft.ntk's parameter selection: "lora", "trainable", "head", name patterns and FullWeights (plain and
LoRA-wrapped models), groups in linft.models' order, the Linear units the fast path hooks, and one-line errors."""

import copy

import pytest
from torch import nn

from linft import LinftError, models
from linft.ntk import FullWeights
from linft.ntk._params import check_linear_only, select

pytestmark = pytest.mark.usefixtures("one_thread")
LAYERS = [f"layer{i}" for i in range(6)]


@pytest.fixture(scope="module")
def base():
    model, _ = models.load("minilm", num_labels=2, seed=0)
    return model


@pytest.fixture(scope="module")
def lora(base):
    """MiniLM with LoRA r=4 on query/value in every layer and a trainable head."""
    return models.add_lora(copy.deepcopy(base), ["query", "value"], rank=4, alpha=8)


def test_lora_trainable_head(lora):
    counts = models.count_parameters(lora)
    sel = select(lora, "lora")
    assert sel.names and all("lora_" in n for n in sel.names) and sel.n_params == counts["lora"]
    assert list(sel.groups) == LAYERS and sel.spec == "lora"
    assert sel.description == f"LoRA (no head), {counts['lora']:,} params"
    assert sum(len(v) for v in sel.groups.values()) == len(sel.names) == 6 * 2 * 2
    assert sel.names == [n for n, p in lora.named_parameters() if "lora_" in n]  # model order
    assert all(u.weight and not u.bias and isinstance(u.module, nn.Linear) for u in sel.units)
    assert sel.max_unit_numel == max(p.numel() for n, p in lora.named_parameters() if "lora_" in n)
    both = select(lora, "trainable")
    assert list(both.groups) == [*LAYERS, "head"] and both.description.startswith("trainable (LoRA + head), ")
    head = select(lora, "head")
    assert list(head.groups) == ["head"] and head.n_params == counts["head"] == 384 * 2 + 2
    assert len(head.units) == 1 and head.units[0].weight and head.units[0].bias and head.units[0].numel == 770
    assert both.n_params == sel.n_params + head.n_params


def test_name_patterns(lora):
    sel = select(lora, ["layer\\.0\\..*lora_", "layer.5."])
    assert list(sel.groups) == ["layer0", "layer5"] and sel.spec.startswith("match:")
    assert select(lora, ("lora_B",)).n_params * 2 == select(lora, "lora").n_params


def test_other_group_and_non_linear_units(lora):
    model = copy.deepcopy(lora)
    for name, p in model.named_parameters():
        if "pooler.dense" in name or name.endswith("layer.2.output.LayerNorm.weight"):
            p.requires_grad_(True)
    sel = select(model, "trainable")
    assert list(sel.groups) == [*LAYERS, "other", "head"]  # linft.models.group_names' one order
    assert sel.description.startswith("trainable (LoRA + head + other), ")
    assert sel.units is None  # a LayerNorm weight has no Linear owner
    with pytest.raises(LinftError, match="LayerNorm.weight.*implementation='reference'"):
        check_linear_only(model, sel)
    pooler = select(model, ["pooler.dense"])
    assert list(pooler.groups) == ["other"] and len(pooler.units) == 1
    check_linear_only(model, pooler)


def test_full_weights_in_a_lora_model(lora):
    sel = select(lora, FullWeights(targets=("query",), layers=(1, -2)))
    assert len(sel.names) == 2 and all(n.endswith("query.base_layer.weight") for n in sel.names)
    assert list(sel.groups) == ["layer1", "layer4"] and sel.n_params == 2 * 384 * 384
    assert not any(p.requires_grad for p in sel.tensors.values())  # frozen, and left so
    assert [u.module_name + ".weight" for u in sel.units] == sel.names and all(not u.bias for u in sel.units)
    assert "full weights of query (layers [1, -2])" in sel.description
    mixed = select(lora, FullWeights(targets=("query", "attn_out", "re:.*intermediate\\.dense"), layers=(0,)))
    assert [n.split("layer.0.")[1] for n in mixed.names] == [
        "attention.self.query.base_layer.weight", "attention.output.dense.weight", "intermediate.dense.weight"]
    assert not any("lora_" in n for n in select(lora, FullWeights(targets=("re:.*",))).names)
    everything = select(lora, FullWeights(targets=("value", "query")))
    assert len(everything.names) == 12 and list(everything.groups) == LAYERS
    assert select(lora, FullWeights(targets="query")).spec == select(lora, FullWeights(targets=("query",))).spec


def test_full_weights_in_a_plain_model(base):
    sel = select(base, FullWeights(targets=("query", "ffn_out"), layers=(5,)))
    assert sel.names == ["bert.encoder.layer.5.attention.self.query.weight", "bert.encoder.layer.5.output.dense.weight"]
    assert sel.n_params == 384 * 384 + 1536 * 384


def test_one_line_errors(base, lora):
    frozen_head = models.add_lora(copy.deepcopy(base), ["query"], rank=2, train_head=False)
    cases = {
        "no lora": (lambda: select(base, "lora"), "add_lora"),
        "no trainable": (lambda: select(base.requires_grad_(False), "trainable"), "FullWeights"),
        "no head": (lambda: select(frozen_head, "head"), "train_head=True"),
        "no match": (lambda: select(lora, ["no_such_module"]), "match no trainable parameter"),
        "not understood": (lambda: select(lora, 42), "not understood"),
        "empty list": (lambda: select(lora, []), "not understood"),
        "no targets": (lambda: select(lora, FullWeights(targets=())), "selects nothing"),
        "bad layer": (lambda: select(lora, FullWeights(layers=(6,))), "FullWeights.*layer 6 does not exist"),
        "nothing matched": (lambda: select(lora, FullWeights(targets=("nope",))), "FullWeights.*'nope'"),
    }
    saved = {p: p.requires_grad for p in base.parameters()}
    try:
        for what, (call, match) in cases.items():
            with pytest.raises(LinftError, match=match) as err:
                call()
            assert "\n" not in str(err.value), what
    finally:
        for p, flag in saved.items():
            p.requires_grad_(flag)
