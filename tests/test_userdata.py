"""linft.userdata: the user's CSV/TSV/JSON(L)/save_to_disk data as a task, its split, and every bad input."""

from __future__ import annotations

import json
from collections import Counter

import datasets
import pandas as pd
import pytest

from linft import LinftError, data
from linft.userdata import MIN_PER_CLASS, _split_sizes, load_user_task, looks_like_path, resolve_task

datasets.disable_progress_bars()


def _frame(per_class: dict[str, int]) -> pd.DataFrame:
    """Distinct texts, ``per_class[label]`` of each label, labels interleaved."""
    rows = [(f"text number {i} of class {label}, which says something", label)
            for label, count in per_class.items() for i in range(count)]
    return pd.DataFrame(rows, columns=["sentence", "y"]).sample(frac=1.0, random_state=0).reset_index(drop=True)


@pytest.fixture(scope="module")
def frame():
    return _frame({"pos": 23, "neg": 17, "neutral": 10})


def _write(frame: pd.DataFrame, folder, fmt: str):
    if fmt == "csv":
        path = folder / "texts.csv"
        frame.to_csv(path, index=False)
    elif fmt == "tsv":
        path = folder / "texts.tsv"
        frame.to_csv(path, sep="\t", index=False)
    elif fmt == "jsonl":
        path = folder / "texts.jsonl"
        frame.to_json(path, orient="records", lines=True)
    elif fmt == "json":
        path = folder / "texts.json"
        path.write_text(json.dumps(frame.to_dict(orient="records")))
    else:  # a Dataset saved with save_to_disk, the label as a ClassLabel in another order
        path = folder / "saved"
        names = sorted(set(frame["y"]), reverse=True)
        feats = datasets.Features({"sentence": datasets.Value("string"), "y": datasets.ClassLabel(names=names)})
        ds = datasets.Dataset.from_dict({"sentence": frame["sentence"].tolist(),
                                         "y": [names.index(v) for v in frame["y"]]}, features=feats)
        ds.save_to_disk(str(path))
    return path


def _pairs(dd: datasets.DatasetDict, split: str) -> list[tuple[str, str]]:
    names = dd[split].features["label"].names
    return [(t, names[y]) for t, y in zip(data.column(dd[split], "text"), data.column(dd[split], "label"))]


@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl", "json", "saved"])
def test_round_trip_keeps_labels_and_splits_stratified(tmp_path, frame, fmt):
    path = _write(frame, tmp_path, fmt)
    dd = load_user_task(path, text_col="sentence", label_col="y", seed=3)
    assert list(dd) == ["train", "validation", "test"]
    for split in dd.values():
        assert split.column_names == ["text", "label"]
        assert split.features["label"].names == ["neg", "neutral", "pos"]  # sorted distinct values
    truth = dict(zip(frame["sentence"], frame["y"]))
    seen = [pair for split in dd for pair in _pairs(dd, split)]
    assert sorted(seen) == sorted(truth.items())  # every text once, with its own label
    texts = {split: {t for t, _ in _pairs(dd, split)} for split in dd}
    assert not (texts["train"] & texts["validation"]) and not (texts["train"] & texts["test"])
    assert not (texts["validation"] & texts["test"])
    for label, count in Counter(frame["y"]).items():  # stratified: each class split 80/10/10 as the registry does
        got = [sum(1 for _, y in _pairs(dd, split) if y == label) for split in dd]
        assert got == _split_sizes(count)


def test_same_seed_same_splits_other_seed_other_splits(tmp_path, frame):
    path = _write(frame, tmp_path, "csv")
    a = load_user_task(path, "sentence", "y", seed=1)
    b = load_user_task(path, "sentence", "y", seed=1)
    c = load_user_task(path, "sentence", "y", seed=2)
    assert data.fingerprint(a) == data.fingerprint(b)
    assert data.fingerprint(a) != data.fingerprint(c)
    assert set(data.column(a["test"], "text")) != set(data.column(c["test"], "text"))


def test_numeric_labels_sort_as_numbers(tmp_path):
    frame = _frame({"10": 8, "2": 8, "1": 8})
    path = tmp_path / "numbers.jsonl"
    frame.assign(y=frame["y"].astype(int)).to_json(path, orient="records", lines=True)
    dd = load_user_task(path, "sentence", "y")
    assert dd["train"].features["label"].names == ["1", "2", "10"]
    assert sorted(_pairs(dd, "train") + _pairs(dd, "validation") + _pairs(dd, "test")) == sorted(
        zip(frame["sentence"], frame["y"]))


def test_saved_dataset_dict_keeps_its_test_split(tmp_path, frame):
    train = datasets.Dataset.from_pandas(frame.iloc[:40].rename(columns={"sentence": "text", "y": "label"}),
                                         preserve_index=False)
    test = datasets.Dataset.from_pandas(frame.iloc[40:].rename(columns={"sentence": "text", "y": "label"}),
                                        preserve_index=False)
    datasets.DatasetDict({"train": train, "test": test}).save_to_disk(str(tmp_path / "dd"))
    dd = load_user_task(tmp_path / "dd")
    assert sorted(data.column(dd["test"], "text")) == sorted(frame["sentence"].iloc[40:])
    held = set(data.column(dd["train"], "text")) | set(data.column(dd["validation"], "text"))
    assert held == set(frame["sentence"].iloc[:40])
    assert len(dd["validation"]) == sum(_split_sizes(n, (0.9, 0.1))[1] for n in Counter(frame["y"][:40]).values())


def test_duplicates_and_conflicting_texts_are_dropped(tmp_path):
    frame = _frame({"a": 10, "b": 10})
    extra = pd.DataFrame({"sentence": [frame["sentence"][0], "  said  twice ", "said twice", "both", "both"],
                          "y": [frame["y"][0], "a", "a", "a", "b"]})
    path = tmp_path / "dups.csv"
    pd.concat([frame, extra]).to_csv(path, index=False)
    dd = load_user_task(path, "sentence", "y")
    texts = [t for split in dd.values() for t in data.column(split, "text")]
    assert len(texts) == len(set(texts)) == 21  # 20 + "said twice" once; "both" (two labels) dropped
    assert "said twice" in texts and "both" not in texts


# ---------------------------------------------------------------------------------------------- errors


def _error(path, **kwargs) -> str:
    with pytest.raises(LinftError) as info:
        load_user_task(path, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_missing_file(tmp_path):
    assert "does not exist" in _error(tmp_path / "nope.csv")


def test_unsupported_extension(tmp_path):
    path = tmp_path / "texts.txt"
    path.write_text("text,label\nhello,1\n")
    message = _error(path)
    assert "unsupported extension '.txt'" in message and ".csv" in message


@pytest.mark.parametrize("name, content", [("bad.json", b"{not json at all"), ("bad.csv", b"\xff\xfe\x00bad\x00\xff"),
                                           ("empty.csv", b"")])
def test_unreadable_file(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    message = _error(path)
    assert message.startswith(f"could not read {path}")


def test_missing_column_lists_the_present_ones(tmp_path, frame):
    path = _write(frame, tmp_path, "csv")
    message = _error(path, text_col="sentence", label_col="label")
    assert "no column 'label'" in message and "'sentence', 'y'" in message


def test_missing_column_in_saved_folder(tmp_path, frame):
    path = _write(frame, tmp_path, "saved")
    assert "no column 'text'" in _error(path)


def test_empty_text_says_how_many_and_where(tmp_path, frame):
    bad = frame.copy()
    bad.loc[[4, 9], "sentence"] = ["", "   "]
    path = tmp_path / "empty.csv"
    bad.to_csv(path, index=False)
    message = _error(path, text_col="sentence", label_col="y")
    assert "2 of 50 rows have empty text" in message and "data row 5" in message


def test_missing_label(tmp_path, frame):
    path = tmp_path / "nolabel.jsonl"
    records = frame.to_dict(orient="records")
    records[7]["y"] = None
    path.write_text("\n".join(json.dumps(r) for r in records))
    message = _error(path, text_col="sentence", label_col="y")
    assert "1 of 50 rows have no label" in message and "data row 8" in message


def test_one_class(tmp_path):
    path = tmp_path / "one.csv"
    _frame({"only": 20}).to_csv(path, index=False)
    message = _error(path, text_col="sentence", label_col="y")
    assert "only one class ('only')" in message


def test_class_too_small_to_split(tmp_path):
    path = tmp_path / "small.csv"
    _frame({"big": 20, "tiny": MIN_PER_CLASS - 1}).to_csv(path, index=False)
    message = _error(path, text_col="sentence", label_col="y")
    assert f"class 'tiny' has {MIN_PER_CLASS - 1}" in message and f"at least {MIN_PER_CLASS}" in message
    assert min(_split_sizes(MIN_PER_CLASS - 1)) == 0 and min(_split_sizes(MIN_PER_CLASS)) == 1


def test_resolve_task_registry_path_and_unknown(tmp_path, frame):
    dd, num_labels, description = resolve_task("mr")
    assert num_labels == 2 and description.startswith("mr: ")
    assert data.fingerprint(dd) == data.fingerprint(data.load_task("mr"))
    path = _write(frame, tmp_path, "jsonl")
    dd, num_labels, description = resolve_task(str(path), "sentence", "y", seed=0)
    assert num_labels == 3 and str(path) in description
    with pytest.raises(LinftError, match="unknown task 'no-such-task'.*mr, subj"):
        resolve_task("no-such-task")
    with pytest.raises(LinftError, match="does not exist"):
        resolve_task("./missing.csv")
    assert looks_like_path("x.tsv") and looks_like_path("a/b") and not looks_like_path("mr")
