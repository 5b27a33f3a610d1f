"""linft.ntk's disk cache: what the key depends on, atomic writes, misses, and a round trip through empirical_ntk."""

import copy
from pathlib import Path

import pytest
import torch
from torch import nn

from linft.ntk import _cache, empirical_ntk

pytestmark = pytest.mark.usefixtures("one_thread")


def _tiny_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))


def _batch(ids=((5, 6, 7), (8, 9, 0)), mask=((1, 1, 1), (1, 1, 0))):
    return {"input_ids": torch.tensor(ids), "attention_mask": torch.tensor(mask)}


BASE = {"spec": "lora", "names": ["0.weight"], "output": "full", "kernel": "sgd", "per_layer": True}


def _key(model=None, batch=None, batch2=None, **changes):
    return _cache.cache_key(model or _tiny_model(), batch or _batch(), batch2, **{**BASE, **changes})


def test_same_inputs_same_key():
    key = _key()
    assert len(key) == 32 and int(key, 16) >= 0
    assert _key() == key
    assert _key(copy.deepcopy(_tiny_model()), {k: v.clone() for k, v in _batch().items()}) == key


def test_key_changes_with_every_input():
    key = _key()
    frozen = _tiny_model()
    frozen[1].requires_grad_(False)
    frozen_changed = _tiny_model()
    frozen_changed[1].requires_grad_(False)
    with torch.no_grad():
        frozen_changed[1].weight[0, 0] += 1e-6  # a frozen weight shapes the kernel too
    changed = {
        "weight": _key(frozen_changed),
        "requires_grad": _key(frozen),
        "batch ids": _key(batch=_batch(ids=((5, 6, 7), (8, 9, 1)))),
        "batch mask": _key(batch=_batch(mask=((1, 1, 0), (1, 1, 0)))),
        "token_type_ids": _key(batch={**_batch(), "token_type_ids": torch.zeros(2, 3, dtype=torch.long)}),
        "batch2": _key(batch2=_batch()),
        "other batch2": _key(batch2=_batch(ids=((5, 6, 7), (8, 9, 1)))),
        "params spec": _key(spec="trainable"),
        "parameter names": _key(names=["0.weight", "0.bias"]),
        "output": _key(output="trace"),
        "kernel": _key(kernel="signgd"),
        "per_layer": _key(per_layer=False),
    }
    assert _key(frozen) != _key(frozen_changed)
    for what, other in changed.items():
        assert other != key, what
    assert len(set(changed.values())) == len(changed)


def test_cache_file_locations(tmp_path, monkeypatch):
    assert _cache.cache_file(False, "abc") is None and _cache.cache_file(None, "abc") is None
    folder = tmp_path / "new" / "folder"
    assert _cache.cache_file(folder, "abc") == folder / "entk-abc.pt" and folder.is_dir()
    monkeypatch.setenv("LINFT_CACHE", str(tmp_path / "root"))
    assert _cache.cache_file(True, "abc") == tmp_path / "root" / "ntk" / "entk-abc.pt"


def test_save_load_roundtrip_and_misses(tmp_path):
    fields = {"values": torch.arange(4.0), "meta": {"N": 2, "names": ["a"], "key": None}, "kernel": "sgd"}
    path = tmp_path / "entk-k.pt"
    assert _cache.load(path, fields) is None  # missing
    _cache.save(path, fields)
    assert [p.name for p in tmp_path.iterdir()] == ["entk-k.pt"]  # no temporary file left behind
    loaded = _cache.load(path, fields)
    assert torch.equal(loaded["values"], fields["values"]) and loaded["meta"] == fields["meta"]
    assert _cache.load(path, [*fields, "seconds"]) is None  # not the fields asked for
    path.write_bytes(b"not a torch file")
    assert _cache.load(path, fields) is None  # unreadable: a miss


def test_save_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "entk-k.pt"
    _cache.save(path, {"values": torch.ones(3)})

    def broken_save(obj, f, *args, **kwargs):
        with open(f, "wb") as handle:
            handle.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        _cache.save(path, {"values": torch.zeros(3)})
    with pytest.raises(OSError):
        _cache.save(tmp_path / "entk-new.pt", {"values": torch.zeros(3)})
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["entk-k.pt"]  # no partial file, no new file
    assert torch.equal(_cache.load(path, ["values"])["values"], torch.ones(3))  # the old file is intact


def test_empirical_ntk_cache_roundtrip(tiny_lora, tmp_path):
    model, batch = tiny_lora(["a fine film", "bad", "it is what it is"], [1, 0, 1], max_length=8)
    first = empirical_ntk(model, batch, output="trace", cache=tmp_path)
    again = empirical_ntk(model, batch, output="trace", cache=tmp_path)
    assert first.meta["cache"] == "written" and again.meta["cache"] == "hit" and again.seconds == 0
    assert first.seconds > 0 and again.meta["cache_file"] == first.meta["cache_file"]
    assert first.meta["cache_key"] in first.meta["cache_file"]
    assert torch.equal(first.values, again.values) and again.per_layer.keys() == first.per_layer.keys()
    assert all(torch.equal(first.per_layer[g], again.per_layer[g]) for g in first.per_layer)
    assert torch.equal(first.outputs, again.outputs) and again.outputs.shape == (3, 2)
    assert (again.params, again.n_params, again.kernel, again.output) == (
        first.params, first.n_params, first.kernel, first.output)
    assert [p.suffix for p in tmp_path.iterdir()] == [".pt"]
    other = empirical_ntk(model, batch, output="trace", kernel="signgd", cache=tmp_path)
    assert other.meta["cache"] == "written"
    fewer = {k: v[:2] for k, v in batch.items()}
    assert empirical_ntk(model, fewer, output="trace", cache=tmp_path).meta["cache"] == "written"
    name = next(n for n, _ in model.named_parameters() if "lora_B" in n)
    param = dict(model.named_parameters())[name]
    with torch.no_grad():
        param.add_(0.01)
    try:
        assert empirical_ntk(model, batch, output="trace", cache=tmp_path).meta["cache"] == "written"
    finally:
        with torch.no_grad():
            param.sub_(0.01)
    assert empirical_ntk(model, batch, output="trace", cache=tmp_path).meta["cache"] == "hit"
    path = Path(first.meta["cache_file"])
    assert path.parent == tmp_path
    path.write_bytes(b"truncated")
    rewritten = empirical_ntk(model, batch, output="trace", cache=tmp_path)
    assert rewritten.meta["cache"] == "written" and torch.equal(rewritten.values, first.values)
    assert empirical_ntk(model, batch, output="trace", cache=False).meta.get("cache") is None
