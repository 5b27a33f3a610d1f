"""The resumable CSV store of a sweep: one tidy row per run, fixed column order, appended atomically.

Format: a header (:data:`COLUMNS`: the key columns of :class:`~linft.study.RunKey`, then the result columns of
:data:`linft.study._run.RESULT_COLUMNS`), then one line per finished run. Every value is one line of text (error
messages are cut to their first line), so a row is a line.

Durability: each row is written by one ``write`` of its whole line, then flushed and ``fsync``-ed before the next run
starts, so an interrupted sweep loses at most the run in flight. Opening a store reads what is there: a last line
without its newline (the process died mid-write) is dropped with a warning and cut from the file, so the next row
starts on a line of its own; any other malformed line, or a header of other columns, raises :class:`LinftError`
(the file is from something else: use another path). Rows are matched to runs by their key columns' canonical text
(:meth:`RunKey.as_row`); if a key appears twice, the later row wins.
"""

from __future__ import annotations

import csv
import io
import math
import os
import tempfile
import warnings
from pathlib import Path

import pandas as pd

from linft import LinftError
from linft.study._config import KEY_COLUMNS, RunKey
from linft.study._run import RESULT_COLUMNS

__all__ = ["COLUMNS", "INT_COLUMNS", "FLOAT_COLUMNS", "RunStore"]

#: every column of the CSV, in order
COLUMNS = KEY_COLUMNS + RESULT_COLUMNS
INT_COLUMNS = ("rank", "seed", "n_train", "n_test", "max_length", "steps", "batch_size", "n_classes", "n_train_used",
               "n_test_used", "n_params", "steps_done", "short_steps", "threads")
FLOAT_COLUMNS = ("lam", "adamw_lr", "kappa", "kappa_lambda", "lambda_min", "lambda_max", "trace", "effective_rank",
                 "kr_acc", "kr_acc_at_steps", "train_loss_predicted", "logme_jacobian", "logme_frozen", "lr",
                 "train_loss_init", "train_loss", "train_objective", "train_acc", "eval_loss", "eval_acc",
                 "short_train_loss", "short_eval_loss", "short_eval_acc", "kernel_seconds", "logme_seconds",
                 "train_seconds", "short_seconds", "run_seconds")


def _text(value) -> str:
    """One CSV cell: "" for None, ``repr`` for floats (exact round trip; nan/inf as such), str otherwise."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float) or (hasattr(value, "dtype") and getattr(value, "ndim", 1) == 0
                                    and "float" in str(value.dtype)):
        value = float(value)
        return repr(value) if math.isfinite(value) else str(value)  # 'nan', 'inf', '-inf'
    return str(value).replace("\r", " ").replace("\n", " ")


def _line(values: list[str]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(values)
    return buffer.getvalue()


class RunStore:
    """The CSV file at ``path`` as a store of finished runs (created with its header when missing or empty).

    ``rows``: {key id (tuple of the key columns' text): row as {column: text}} of what the file holds.
    ``columns``/``key_columns``/``int_columns``/``float_columns``: the schema (default: the few-shot study's
    :data:`COLUMNS`; a reference-protocol sweep passes its own, :meth:`for_sweep`).
    """

    def __init__(self, path, columns=COLUMNS, key_columns=KEY_COLUMNS, int_columns=INT_COLUMNS,
                 float_columns=FLOAT_COLUMNS):
        self.columns, self.key_columns = tuple(columns), tuple(key_columns)
        self.int_columns, self.float_columns = tuple(int_columns), tuple(float_columns)
        self.path = Path(path).expanduser()
        if self.path.is_dir():
            raise LinftError(f"out_csv {self.path} is a folder: pass a file path such as {self.path / 'sweep.csv'}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.rows: dict[tuple[str, ...], dict[str, str]] = {}
        self._read()

    @classmethod
    def for_sweep(cls, path, config) -> RunStore:
        """The store of ``config``'s sweep: its own columns when it declares them (the reference protocol)."""
        if getattr(config, "protocol", "fewshot") == "fewshot":
            return cls(path)
        columns, keys = config.columns, config.key_columns
        ints = [c for c in columns if c in config.int_columns]
        floats = [c for c in columns if c not in ints and c not in config.text_columns]
        return cls(path, columns, keys, ints, floats)

    # ------------------------------------------------------------------------------------------ reading

    def _read(self) -> None:
        raw = self.path.read_bytes() if self.path.exists() else b""
        if raw and not raw.endswith(b"\n"):
            keep = raw.rfind(b"\n") + 1
            warnings.warn(f"{self.path}: dropped a truncated last line ({len(raw) - keep} bytes, an interrupted "
                          "write); that run will be done again", stacklevel=3)
            with self.path.open("r+b") as handle:
                handle.truncate(keep)
                handle.flush()
                os.fsync(handle.fileno())
            raw = raw[:keep]
        if not raw:
            self._write_all([])
            return
        try:
            lines = list(csv.reader(io.StringIO(raw.decode("utf-8"), newline="")))
        except (UnicodeDecodeError, csv.Error) as err:
            raise LinftError(f"{self.path} is not a sweep CSV ({err}): pass another out_csv path") from None
        header = tuple(lines[0])
        if header != self.columns:
            raise LinftError(f"{self.path} has other columns than this linft sweep's CSV (first difference: "
                             f"{_first_difference(header, self.columns)}): pass a new out_csv path")
        for number, values in enumerate(lines[1:], start=2):
            if len(values) != len(self.columns):
                raise LinftError(f"{self.path} line {number} has {len(values)} fields, not {len(self.columns)}: "
                                 "the file "
                                 "was edited or is damaged; fix or remove that line")
            row = dict(zip(self.columns, values))
            self.rows[tuple(row[c] for c in self.key_columns)] = row

    # ------------------------------------------------------------------------------------------ writing

    def _write_all(self, rows: list[dict[str, str]]) -> None:
        """Replace the file by the header and ``rows``, atomically (temporary file + rename)."""
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
                handle.write(_line(list(self.columns)))
                for row in rows:
                    handle.write(_line([row.get(c, "") for c in self.columns]))
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def append(self, row: dict) -> None:
        """Append one run's row (missing columns empty) as one line: write, flush, fsync."""
        unknown = [c for c in row if c not in self.columns]
        if unknown:
            raise LinftError(f"a sweep row has unknown column {unknown[0]!r}: the store's columns are fixed "
                             f"(linft.study.COLUMNS)")
        values = [_text(row.get(c)) for c in self.columns]
        with self.path.open("a", encoding="utf-8", newline="") as handle:
            handle.write(_line(values))
            handle.flush()
            os.fsync(handle.fileno())
        text = dict(zip(self.columns, values))
        self.rows[tuple(text[c] for c in self.key_columns)] = text

    def drop(self, keys: list[RunKey]) -> int:
        """Remove the rows of ``keys`` from the file (one atomic rewrite); returns how many were removed."""
        gone = [key.id for key in keys if key.id in self.rows]
        if gone:
            for key_id in gone:
                del self.rows[key_id]
            self._write_all(list(self.rows.values()))
        return len(gone)

    # ------------------------------------------------------------------------------------------ queries

    def has(self, key: RunKey) -> bool:
        """Whether the file holds a row (finished or failed) of ``key``."""
        return key.id in self.rows

    def status(self, key: RunKey) -> str | None:
        """``"ok"`` or ``"failed"`` for a run the file holds, None otherwise."""
        row = self.rows.get(key.id)
        return None if row is None else row["status"]

    def frame(self, keys: list[RunKey] | None = None) -> pd.DataFrame:
        """The rows of ``keys`` (in that order, absent ones skipped; None: every row in file order) as a DataFrame
        with :data:`self.columns`; integer columns as nullable ``Int64``, float columns as float64, the rest text."""
        rows = list(self.rows.values()) if keys is None else [self.rows[k.id] for k in keys if k.id in self.rows]
        frame = pd.DataFrame(rows, columns=list(self.columns), dtype=object)
        for col in self.int_columns:
            frame[col] = pd.to_numeric(frame[col].replace("", None), errors="coerce").astype("Int64")
        for col in self.float_columns:
            frame[col] = pd.to_numeric(frame[col].replace("", None), errors="coerce").astype("float64")
        for col in self.columns:
            if col not in self.int_columns and col not in self.float_columns:
                frame[col] = frame[col].fillna("").astype(str)
        return frame


def _first_difference(found: tuple, expected: tuple) -> str:
    for i, (a, b) in enumerate(zip(found, expected)):
        if a != b:
            return f"column {i + 1} is {a!r}, expected {b!r}"
    return f"{len(found)} columns, expected {len(expected)}"
