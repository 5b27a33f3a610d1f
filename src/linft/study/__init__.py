"""Resumable sweeps: tasks × LoRA configurations × seeds × settings × λ, one tidy CSV row per run.

A sweep is a YAML file (``sweeps/smoke.yaml``, ``sweeps/default.yaml``)::

    model: minilm
    sizes: {n_train: 64, n_test: 256, max_length: 32, steps: 50, lr: 1e-3, batch_size: 16}
    tasks: [mr, subj]
    configs:                       # LoRA configurations: name, layers (list or "all"), targets, rank
      - {name: qv-r8, layers: all, targets: qv, rank: 8}
      - {name: qv-r8-top2, layers: [4, 5], targets: qv, rank: 8}
    seeds: [0, 1, 2]
    settings: [mse_gd, ce_adamw]   # MSE + full-batch GD at the descent step | CE + AdamW
    lambdas: [0, 0.5]              # anchoring strengths λ
    threads: 1                     # torch threads per run (optional)

Each run is a pure function of its :class:`RunKey` (:func:`run_one`; protocol in :mod:`linft.study._run`): κ, κ_λ,
λmin, λmax, trace and effective rank of the eNTK at initialization of exactly the trained LoRA parameters (head
frozen; the SGD kernel for ``mse_gd``, the SignGD kernel for ``ce_adamw``), kernel-regression accuracy on held-out
examples, then the fine-tuning run's losses and accuracies, wall times and library versions.

:func:`run_sweep` runs whatever the CSV file does not hold yet, serially or on Ray, appending each row atomically
(:mod:`linft.study._csv`), so an interrupted sweep resumes where it stopped; a failed run is recorded with
``status="failed"`` and its error and does not stop the sweep (``retry_failed=True`` runs failed rows again).

Public: :func:`run_sweep`, :func:`plan_runs`, :func:`run_one`, :func:`load_config`, :class:`SweepConfig`,
:class:`RunKey`, :data:`COLUMNS`, :data:`KEY_COLUMNS`, :data:`RESULT_COLUMNS`, :data:`SETTINGS`, :data:`BACKENDS`, and
:func:`add_cli` / :func:`run_cli` for the ``linft study`` command.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pandas as pd

from linft import LinftError, check_choice
from linft.study._config import (
    KEY_COLUMNS,
    SETTINGS,
    AdapterConfig,
    RunKey,
    Sizes,
    SweepConfig,
    draw_adapters,
    load_config,
    plan_runs,
)
from linft.study._csv import COLUMNS, RunStore
from linft.study._run import RESULT_COLUMNS, VOLATILE_COLUMNS, attempt, run_one

__all__ = [
    "add_arguments",
    "run_sweep",
    "plan_runs",
    "run_one",
    "load_config",
    "SweepConfig",
    "AdapterConfig",
    "draw_adapters",
    "Sizes",
    "RunKey",
    "RunStore",
    "COLUMNS",
    "KEY_COLUMNS",
    "RESULT_COLUMNS",
    "VOLATILE_COLUMNS",
    "SETTINGS",
    "BACKENDS",
    "add_cli",
    "run_cli",
]

BACKENDS = ("serial", "ray")


def _check_max_runs(max_runs) -> int | None:
    if max_runs is None:
        return None
    if isinstance(max_runs, bool) or not isinstance(max_runs, int) or max_runs < 0:
        raise LinftError(f"max_runs must be an integer >= 0 (or None for all), got {max_runs!r}")
    return max_runs


def run_sweep(config_or_path, out_csv, *, backend: str = "serial", address: str | None = None,
              num_cpus: int | None = None, retry_failed: bool = False, progress: bool = True,
              max_runs: int | None = None) -> pd.DataFrame:
    """Run every run of the sweep that ``out_csv`` does not hold yet, appending one row per run; return the sweep.

    Args:
        config_or_path: a YAML file path, a mapping of the same fields, or a :class:`SweepConfig`.
        out_csv: the CSV store (created when missing; a file holding rows of this sweep is resumed).
        backend: ``"serial"`` (this process, in plan order) or ``"ray"`` (one task per run, ``num_cpus=1`` each;
            rows are appended as runs complete).
        address: Ray cluster address (None: start a local cluster for this call). ``num_cpus``: CPUs of that local
            cluster (None: every core).
        retry_failed: run the keys recorded as failed again (each failed row is removed from the file just before
            the sweep starts, and the new row appended when its run ends); otherwise a failed row counts as done.
        progress: a tqdm bar on stderr (runs done of the whole plan, failures, ETA).
        max_runs: run at most this many of the missing runs, then return (the rest on a later call).

    Returns the rows of the planned runs in plan order (:data:`COLUMNS`; integer columns nullable ``Int64``).
    ``attrs`` holds ``planned``, ``ran`` (this call), ``failed_now``, ``seconds`` and ``out`` (the CSV path).
    """
    from tqdm import tqdm

    check_choice("backend", backend, BACKENDS)
    max_runs = _check_max_runs(max_runs)
    if num_cpus is not None and (isinstance(num_cpus, bool) or not isinstance(num_cpus, int) or num_cpus < 1):
        raise LinftError(f"num_cpus must be a positive integer (or None for every core), got {num_cpus!r}")
    if backend == "ray":
        from linft.study._ray import import_ray

        import_ray()  # a missing Ray fails here, before the store is touched
    config = load_config(config_or_path)
    plan = plan_runs(config)
    store = RunStore.for_sweep(out_csv, config)
    todo = [key for key in plan if not store.has(key) or (retry_failed and store.status(key) != "ok")]
    skipped = len(plan) - len(todo)
    if max_runs is not None:
        todo = todo[:max_runs]
    store.drop([key for key in todo if store.has(key)])  # failed rows about to be retried
    start = time.perf_counter()
    failed = 0
    bar = tqdm(total=len(plan), initial=skipped, disable=not progress, file=sys.stderr, unit="run",
               desc=f"sweep {config.name} ({backend})", dynamic_ncols=True)
    try:
        if backend == "serial":
            rows = (attempt(key, config.threads) for key in todo)
        else:
            from linft.study._ray import ray_rows

            rows = ray_rows(todo, config.threads, address=address, num_cpus=num_cpus)
        for row in rows:
            store.append(row)
            failed += row["status"] != "ok"
            bar.update(1)
            bar.set_postfix(failed=failed, last=f"{row['task']}/{row['config']}", refresh=False)
    finally:
        bar.close()
    frame = store.frame(plan)
    frame.attrs.update(planned=len(plan), ran=len(todo), failed_now=failed, seconds=time.perf_counter() - start,
                       out=str(store.path))
    return frame


# ---------------------------------------------------------------------------------------------- command line


def add_arguments(parser) -> None:
    """The options of ``linft study`` on an argparse ``parser``: ``--config sweep.yaml [--out FILE.csv]
    [--backend serial|ray] [--address ADDR] [--num-cpus N] [--retry-failed] [--max-runs N] [--no-progress]``."""
    parser.add_argument("--config", required=True, help="sweep YAML file (see sweeps/smoke.yaml)")
    parser.add_argument("--out", default=None, help="CSV store (default: _build/study/<config name>.csv)")
    parser.add_argument("--backend", choices=BACKENDS, default="serial")
    parser.add_argument("--address", default=None, help="Ray cluster address (default: a new local cluster)")
    parser.add_argument("--num-cpus", type=int, default=None, help="CPUs of a new local Ray cluster")
    parser.add_argument("--retry-failed", action="store_true", help="run failed rows again")
    parser.add_argument("--max-runs", type=int, default=None, help="stop after this many new runs")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def add_cli(subparsers):
    """Add ``study`` to an argparse ``subparsers`` (``parser.add_subparsers()``); returns the new parser. Run it with
    :func:`run_cli`."""
    parser = subparsers.add_parser("study", help="run a resumable sweep (tasks × LoRA configs × seeds × settings × λ)",
                                   description=run_sweep.__doc__.splitlines()[0])
    add_arguments(parser)
    return parser


def run_cli(args) -> dict:
    """Run the sweep ``args`` (from the :func:`add_cli` parser) asks for; return a JSON-ready summary: the CSV path,
    runs planned, run now, finished (ok), failed, and the wall time."""
    if args.backend != "ray" and (args.address is not None or args.num_cpus is not None):
        raise LinftError("--address and --num-cpus apply to --backend ray only: add --backend ray or drop them")
    out = args.out or str(Path("_build") / "study" / f"{Path(args.config).stem}.csv")
    frame = run_sweep(args.config, out, backend=args.backend, address=args.address, num_cpus=args.num_cpus,
                      retry_failed=args.retry_failed, progress=not args.no_progress, max_runs=args.max_runs)
    return {"out": frame.attrs["out"], "backend": args.backend, "planned": frame.attrs["planned"],
            "ran": frame.attrs["ran"], "ok": int((frame["status"] == "ok").sum()),
            "failed": int((frame["status"] == "failed").sum()), "missing": frame.attrs["planned"] - len(frame),
            "seconds": round(frame.attrs["seconds"], 3)}
