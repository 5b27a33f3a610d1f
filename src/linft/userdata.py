"""The user's own labelled texts as a task: a CSV/TSV/JSON(L) file or a ``datasets.save_to_disk`` folder.

:func:`load_user_task` returns the same shape as :func:`linft.data.load_task`: a ``datasets.DatasetDict`` with
splits ``train`` / ``validation`` / ``test`` and columns ``text`` (str) and ``label`` (``datasets.ClassLabel``
whose names are the distinct label values, sorted: numerically when every value is a number, else as text).
Texts are normalized like the registry's (whitespace collapsed), then texts carrying two different labels and
duplicate texts are dropped (first kept). The split is the registry's: 80/10/10 stratified by class with
``seed``; a saved ``DatasetDict`` with a ``test`` split keeps it as the test set and carves 10 % of the rest out
for validation, stratified. Same file and seed → the same splits in any process.

Bad input raises :class:`linft.LinftError` with one line saying what is wrong and what to do: a missing file or
folder, an unsupported extension, an unreadable file, a missing column (the columns present are listed), empty
texts or missing labels (how many rows, and the first row number, counting data rows from 1), a single class, or a
class with too few examples for every split to hold it.

:func:`resolve_task` takes either a registry key or such a path, so every entry point (``linft predict``,
notebooks) accepts both.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import datasets
import numpy as np
import pandas as pd

from linft import LinftError, data

__all__ = ["load_user_task", "resolve_task", "looks_like_path", "SUFFIXES", "MIN_PER_CLASS"]

#: file suffixes read, and how
SUFFIXES = (".csv", ".tsv", ".jsonl", ".json")


def _split_sizes(count: int, fractions=data.FRACTIONS) -> list[int]:
    """Rows of one class that each part gets under ``linft.data``'s stratified split (rounded half up)."""
    bounds = np.floor(np.cumsum(fractions[:-1]) * count + 0.5).astype(int)
    return np.diff(np.concatenate([[0], bounds, [count]])).tolist()


def _min_per_class(fractions=data.FRACTIONS) -> int:
    """The smallest class size from which every larger one puts at least one row in every part."""
    smallest = 1
    for count in range(1, 1000):
        if min(_split_sizes(count, fractions)) < 1:
            smallest = count + 1
    return smallest


#: a class needs this many examples (after deduplication) so that train, validation and test each hold one
MIN_PER_CLASS = _min_per_class()


def looks_like_path(value: str) -> bool:
    """Whether ``value`` names a file or folder rather than a registry key: it exists, holds a path separator,
    starts with ``.``/``~``, or ends with a supported suffix."""
    return (Path(value).expanduser().exists() or "/" in value or "\\" in value or value.startswith((".", "~"))
            or value.lower().endswith(SUFFIXES))


# ---------------------------------------------------------------------------------------------- reading


def _read_file(path: Path) -> pd.DataFrame:
    """A CSV/TSV/JSON(L) file as a DataFrame of strings and numbers (cells kept as read; empty CSV cells → '')."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            return pd.read_csv(path, dtype=str, keep_default_na=False)
        if suffix == ".tsv":
            return pd.read_csv(path, sep="\t", quoting=csv.QUOTE_NONE, dtype=str, keep_default_na=False)
        if suffix == ".jsonl":
            return pd.read_json(path, lines=True, dtype=False)
        try:  # .json: an array of records or {column: [values]} ...
            return pd.read_json(path, dtype=False)
        except ValueError:  # ... or JSON lines under a .json name
            return pd.read_json(path, lines=True, dtype=False)
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError, OSError) as err:
        first = str(err).splitlines()[0][:160] if str(err) else ""
        kind = {".csv": "CSV", ".tsv": "TSV (tab-separated)"}.get(suffix, "JSON")
        raise LinftError(f"could not read {path} as {kind} ({type(err).__name__}: {first}): save it as UTF-8 "
                         f"{kind} with a header row" + ("" if suffix in (".csv", ".tsv") else
                                                       " (JSON lines, or an array of objects)")) from None


def _label_values(ds: datasets.Dataset, column: str) -> list:
    """A label column as plain values: ClassLabel ints become their names (so names survive a round trip)."""
    values = data.column(ds, column)
    feature = ds.features[column]
    if isinstance(feature, datasets.ClassLabel):
        return [feature.names[v] if v is not None and 0 <= v < len(feature.names) else None for v in values]
    return values


def _read_saved(path: Path, text_col: str, label_col: str) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """(pool, official test or None) from a ``save_to_disk`` folder holding a Dataset or a DatasetDict."""
    try:
        saved = datasets.load_from_disk(str(path))
    except (FileNotFoundError, ValueError, OSError) as err:
        raise LinftError(f"could not read folder {path} with datasets.load_from_disk ({type(err).__name__}): pass a "
                         "folder written by Dataset.save_to_disk or DatasetDict.save_to_disk, or a .csv/.jsonl "
                         "file") from None
    parts = dict(saved) if isinstance(saved, datasets.DatasetDict) else {"": saved}
    if not parts:
        raise LinftError(f"the DatasetDict in {path} has no splits: save one with at least one split")
    frames = {}
    for name, part in parts.items():
        where = f"{path}" + (f" (split {name!r})" if name else "")
        _require(list(part.column_names), (text_col, label_col), where)
        frames[name] = pd.DataFrame({text_col: data.column(part, text_col),
                                     label_col: _label_values(part, label_col)})
    test = frames.pop("test", None) if len(frames) > 1 else None
    return pd.concat(list(frames.values()), ignore_index=True), test


def _require(columns: list, wanted, where) -> None:
    for col in wanted:
        if col not in columns:
            shown = ", ".join(repr(str(c)) for c in columns) or "none"
            raise LinftError(f"{where} has no column {col!r} (columns: {shown}): name the text and label columns "
                             "with text_col=/label_col= (linft: --text-col/--label-col)")


# ---------------------------------------------------------------------------------------------- checking


def _is_missing(value) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and not value.strip()


def _label_text(value) -> str:
    """A label value as its class name: integral floats (1.0, from a column with gaps) as '1'."""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value)).lower()
    return str(value).strip()


def _rows(mask: np.ndarray) -> tuple[int, int]:
    where = np.flatnonzero(mask)
    return len(where), int(where[0]) + 1


def _checked(frame: pd.DataFrame, text_col: str, label_col: str, where: str) -> pd.DataFrame:
    """Columns ``text`` (normalized) and ``label`` (class name), checked; bad rows raise, never dropped silently."""
    texts = frame[text_col].tolist()
    labels = frame[label_col].tolist()
    empty = np.array([_is_missing(t) for t in texts], dtype=bool)
    if empty.any():
        count, first = _rows(empty)
        raise LinftError(f"{where}: {count} of {len(texts)} rows have empty text in column {text_col!r} (first: data "
                         f"row {first}, counting from 1): fill in or drop those rows")
    missing = np.array([_is_missing(v) for v in labels], dtype=bool)
    if missing.any():
        count, first = _rows(missing)
        raise LinftError(f"{where}: {count} of {len(labels)} rows have no label in column {label_col!r} (first: data "
                         f"row {first}, counting from 1): label or drop those rows")
    out = pd.DataFrame({"text": [str(t) for t in texts], "label": [_label_text(v) for v in labels]})
    return data.clean(out)


def _class_names(labels) -> list[str]:
    """Distinct label values sorted: numerically when all are numbers, else as text."""
    distinct = sorted(set(labels))
    try:
        return sorted(distinct, key=float)
    except ValueError:
        return distinct


def _check_classes(pool: pd.DataFrame, where: str, label_col: str, splitting: bool) -> None:
    counts = pool["label"].value_counts()
    if len(counts) < 2:
        only = repr(counts.index[0]) if len(counts) else "none"
        raise LinftError(f"{where}: column {label_col!r} has only one class ({only}) after dropping duplicate texts: "
                         "a classifier needs at least two classes")
    if splitting:
        small = counts[counts < MIN_PER_CLASS]
        if len(small):
            name, count = small.index[0], int(small.iloc[0])
            raise LinftError(f"{where}: class {name!r} has {count} distinct texts, too few to split 80/10/10 so that "
                             f"train, validation and test each hold it: give every class at least {MIN_PER_CLASS} "
                             "examples (or merge small classes)")


# ---------------------------------------------------------------------------------------------- splitting


def _dataset(frame: pd.DataFrame, names: list[str], split: str, title: str, description: str) -> datasets.Dataset:
    features = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=names)})
    index = {name: i for i, name in enumerate(names)}
    info = datasets.DatasetInfo(dataset_name=title, description=description, features=features)
    return datasets.Dataset.from_dict({"text": frame["text"].tolist(), "label": [index[v] for v in frame["label"]]},
                                      features=features, info=info, split=split)


def load_user_task(path, text_col: str = "text", label_col: str = "label", seed: int = 0) -> datasets.DatasetDict:
    """Splits ``train``/``validation``/``test`` (columns ``text``, ``label`` as ClassLabel) of the user's file.

    ``path``: a ``.csv``, ``.tsv``, ``.jsonl`` or ``.json`` file with a header (JSON: objects with those keys), or a
    folder written by ``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk``. ``text_col``/``label_col``: the
    columns holding the texts and the labels (any values: strings or numbers). ``seed``: the split's seed.
    See the module docstring for the split and the checks.
    """
    seed = data.check_seed(seed)
    for name, value in (("text_col", text_col), ("label_col", label_col)):
        if not isinstance(value, str) or not value:
            raise LinftError(f"{name} must be a column name (a non-empty string), got {value!r}")
    if text_col == label_col:
        raise LinftError(f"text_col and label_col are both {text_col!r}: name two different columns")
    path = Path(path).expanduser()
    if not path.exists():
        raise LinftError(f"{path} does not exist: pass an existing .csv/.tsv/.jsonl/.json file or a save_to_disk "
                         "folder")
    test_frame = None
    if path.is_dir():
        frame, test_frame = _read_saved(path, text_col, label_col)
    elif path.suffix.lower() in SUFFIXES:
        frame = _read_file(path)
        _require(list(frame.columns), (text_col, label_col), str(path))
    else:
        raise LinftError(f"{path} has the unsupported extension {path.suffix or '(none)'!r}: use one of "
                         f"{', '.join(SUFFIXES)}, or a folder written by datasets' save_to_disk")
    where = str(path)
    if frame.empty:
        raise LinftError(f"{where} has no data rows: add labelled texts below the header")
    pool = _checked(frame, text_col, label_col, where)
    test = None
    if test_frame is not None:
        test = _checked(test_frame, text_col, label_col, f"{where} (split 'test')")
        test = test[~test["text"].isin(set(pool["text"]))]  # a text seen in training is no test of anything
    _check_classes(pool, where, label_col, splitting=test is None)
    names = _class_names(pd.concat([pool["label"], test["label"]]) if test is not None else pool["label"])
    rng = np.random.default_rng(seed)
    labels = pool["label"].to_numpy()
    if test is None:
        idx = data.stratified_split(labels, data.FRACTIONS, rng)
        parts = {name: pool.iloc[i] for name, i in zip(data.SPLITS, idx)}
    else:
        fractions = (1 - data.VALIDATION_FROM_TRAIN, data.VALIDATION_FROM_TRAIN)
        tr, va = data.stratified_split(labels, fractions, rng)
        parts = {"train": pool.iloc[tr], "validation": pool.iloc[va], "test": test}
    title = path.stem if path.is_file() else path.name
    description = f"user data {path} (text {text_col!r}, label {label_col!r}), {len(names)} classes"
    return datasets.DatasetDict({name: _dataset(part, names, name, title, description) for name, part in parts.items()})


def resolve_task(task_or_path, text_col: str = "text", label_col: str = "label", seed: int = 0
                 ) -> tuple[datasets.DatasetDict, int, str]:
    """``(splits, number of classes, one-line description)`` of a registry key or a path to the user's data.

    A registry key (``linft.data.TASKS``) goes to :func:`linft.data.load_task` (``text_col``/``label_col`` unused);
    anything that looks like a path (:func:`looks_like_path`) to :func:`load_user_task`. Anything else raises
    :class:`LinftError` listing the registry keys.
    """
    if not isinstance(task_or_path, (str, Path)) or not str(task_or_path):
        raise LinftError(f"task must be a registry key or a path, got {task_or_path!r}")
    value = str(task_or_path)
    if value in data.TASKS:
        spec = data.get_task(value)
        return data.load_task(value, seed=seed), spec.num_labels, f"{value}: {spec.title}"
    if looks_like_path(value):
        splits = load_user_task(value, text_col, label_col, seed)
        return splits, splits["train"].features["label"].num_classes, splits["train"].info.description
    raise LinftError(f"unknown task {value!r}: use a registry key ({', '.join(data.TASKS)}) or the path of a "
                     ".csv/.tsv/.jsonl/.json file or a save_to_disk folder")
