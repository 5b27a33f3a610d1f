"""Command line: ``linft predict``, ``linft layers``, ``linft study``, ``linft models``, ``linft model-info NAME``,
``linft tasks``, ``linft fetch``.

``predict`` and ``layers`` print a readable report, or with ``--json`` one JSON object (non-finite numbers, such as
κ of a singular kernel, as null), or with ``--csv`` tidy CSV; ``--plot FILE.png`` also writes a figure. Progress
bars go to stderr only. The other commands print JSON (one object) so scripts can read it. Errors are one line on
stderr, ``linft <command>: error: ...``, with exit code 2, argparse's usage errors included. Output piped into a
reader that stops early (``linft tasks | head -1``) ends quietly with exit code 0: the reader having seen enough is
not an error of ours, and 0 keeps ``set -o pipefail`` scripts going.

Adding a subcommand: write ``_<name>_arguments(parser)`` and ``_<name>(args) -> str`` (the text to
print) and add one line to ``_COMMANDS``; errors, output and broken pipes are then handled here.
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import os
import sys
from pathlib import Path

from linft import LinftError
from linft.runspec import HEADS

# ---------------------------------------------------------------------------------------------- output


def _json(payload) -> str:
    """One JSON object, non-finite floats (κ = inf of a singular kernel) as null (:func:`linft.results.dumps`)."""
    from linft.results import dumps

    return dumps(payload, indent=2, default=str)


def _csv(rows: list[dict]) -> str:
    """Tidy CSV text of ``rows`` (header from the first row's keys, in order; later keys appended)."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue().rstrip("\n")


def _write(text: str) -> None:
    """Print ``text`` to stdout; if the reader has gone (broken pipe), point stdout at devnull so the interpreter's
    final flush cannot raise again, and return quietly."""
    try:
        print(text)
        sys.stdout.flush()
    except BrokenPipeError:
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):  # stdout without a file descriptor (tests capture it): nothing to redirect
            pass


def _report_text(report, args) -> str:
    """The report as JSON, CSV or text, after writing ``--plot``."""
    if args.plot is not None:
        report.save_plot(args.plot)
    if args.json:
        return _json(report.as_dict())
    if args.csv:
        return _csv(report.rows())
    return str(report)


# ---------------------------------------------------------------------------------------------- argument types

#: linft.preflight.OBJECTIVES, spelled out so that building the parser imports no torch (tested equal); the head
#: policies are linft.runspec.HEADS, defined once (runspec imports no torch at module level)
OBJECTIVES = ("kappa_lambda", "lambda_min")
LAYER_METHODS = ("auto", "greedy", "exhaustive")


def _layer_list(text: str) -> list[int]:
    """``--layers 0,3,5`` → [0, 3, 5] (negative indices count from the top, as in linft.models.add_lora)."""
    parts = [p.strip() for p in text.split(",")]
    try:
        layers = [int(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of layer indices (e.g. 0,3,5)"
                                         ) from None
    if len(set(layers)) != len(layers):
        raise argparse.ArgumentTypeError(f"{text!r} names a layer twice: list each layer once")
    return layers


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive integer")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number >= 0")
    return value


def _png_path(text: str) -> Path:
    path = Path(text).expanduser()
    if path.suffix.lower() != ".png":
        raise argparse.ArgumentTypeError(f"{text!r} does not end in .png: the plot is written as PNG")
    if not path.parent.is_dir():
        raise argparse.ArgumentTypeError(f"folder {str(path.parent)!r} of {text!r} does not exist: create it first")
    return path


# ---------------------------------------------------------------------------------------------- predict, layers


def _setup_arguments(parser: argparse.ArgumentParser) -> None:
    """Options shared by ``predict`` and ``layers``: model, task (registry key or file), LoRA, sizes, output."""
    group = parser.add_argument_group("model and data")
    group.add_argument("--model", default="minilm", help="minilm, smollm2, mpnet, a hub id or a local folder")
    group.add_argument("--task", default="mr", help="a registry key (linft tasks) or a .csv/.tsv/.jsonl/.json file "
                                                    "or save_to_disk folder of labelled texts")
    group.add_argument("--text-col", default="text", help="text column of a --task file (default: text)")
    group.add_argument("--label-col", default="label", help="label column of a --task file (default: label)")
    group.add_argument("--targets", default="qv", help="LoRA targets: qv, qkv, attn, all, or module names")
    group.add_argument("--rank", type=_positive, default=8, help="LoRA rank (default 8; alpha = 2 rank)")
    group.add_argument("--head", choices=HEADS, default="frozen",
                       help="frozen: the kernel is over the LoRA matrices only; trained: LoRA + classifier head")
    group.add_argument("--n", type=_positive, default=256, help="training examples in the kernel (default 256)")
    group.add_argument("--max-length", type=_positive, default=64, help="tokens per example (default 64)")
    group.add_argument("--lam", type=_non_negative_float, default=0.0, help="anchoring strength λ >= 0 (default 0)")
    group.add_argument("--seed", type=int, default=0, help="seed of the split, sample, head and LoRA (default 0)")
    out = parser.add_argument_group("output")
    fmt = out.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="print one JSON object (only that) on stdout")
    fmt.add_argument("--csv", action="store_true", help="print tidy CSV on stdout")
    out.add_argument("--plot", type=_png_path, metavar="FILE.png", help="also write a figure (PNG)")
    out.add_argument("--quiet", action="store_true", help="no progress bars on stderr")


def _predict_arguments(parser: argparse.ArgumentParser) -> None:
    _setup_arguments(parser)
    parser.add_argument("--layers", type=_layer_list, help="comma-separated block indices to adapt (default: all)")
    parser.add_argument("--n-test", type=_positive, default=256,
                        help="held-out examples of the test split (linft.runspec.HELDOUT_SPLIT, as the study) for the "
                             "accuracy (default 256, at most the split)")
    parser.add_argument("--steps", type=_positive, default=None, help="GD steps of the predicted curves (default 100)")
    parser.add_argument("--output", choices=("auto", "full", "logit_diff"), default="auto",
                        help="kernel outputs: auto (default: the logit difference f1 - f0 for binary tasks, all "
                             "logits otherwise), full, logit_diff")


def _layers_arguments(parser: argparse.ArgumentParser) -> None:
    _setup_arguments(parser)
    parser.add_argument("--budget", type=_positive, default=2, help="how many layers to adapt (default 2)")
    parser.add_argument("--objective", choices=OBJECTIVES, default="kappa_lambda",
                        help="kappa_lambda: smallest κ_λ (default); lambda_min: largest λmin")
    parser.add_argument("--method", choices=LAYER_METHODS, default="auto",
                        help="search over layer sets (default auto: exhaustive when small)")
    parser.add_argument("--n-random", type=_positive, default=5, help="random-layer baselines (default 5)")


def _setup_kwargs(args) -> dict:
    if args.seed < 0:
        raise LinftError(f"--seed must be >= 0, got {args.seed}")
    return {"model": args.model, "task": args.task, "targets": args.targets, "rank": args.rank, "n": args.n,
            "lam": args.lam, "max_length": args.max_length, "seed": args.seed, "head": args.head,
            "text_col": args.text_col, "label_col": args.label_col, "progress": not args.quiet}


def _predict(args) -> str:
    from linft.device import pin_threads
    from linft.preflight import preflight

    pin_threads()
    report = preflight(**_setup_kwargs(args), layers=args.layers, n_test=args.n_test, steps=args.steps,
                       output=args.output)
    return _report_text(report, args)


def _layers(args) -> str:
    from linft.device import pin_threads
    from linft.preflight import advise_layers

    pin_threads()
    advice = advise_layers(**_setup_kwargs(args), budget=args.budget, objective=args.objective, method=args.method,
                           n_random=args.n_random)
    return _report_text(advice, args)


# ---------------------------------------------------------------------------------------------- the others


def _model_info_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", nargs="?", default="minilm")
    parser.add_argument("--num-labels", type=int, default=2)
    parser.add_argument("--targets", nargs="+", default=["query", "value"])
    parser.add_argument("--rank", type=int, default=8)


def _model_info(args) -> str:
    from linft import models

    model, _ = models.load(args.model, num_labels=args.num_labels)
    info = {"model": args.model, **models.architecture_summary(model), **models.count_parameters(model)}
    peft_model = models.add_lora(model, targets=args.targets, rank=args.rank, alpha=2 * args.rank)
    info["lora"] = models.count_parameters(peft_model)
    return _json(info)


def _models(_args) -> str:
    from linft.models import MODEL_KEYS

    return _json({"keys": list(MODEL_KEYS), "other": "any Hugging Face id or local folder"})


def _tasks(_args) -> str:
    from linft import data

    return _json({key: {"available": data.task_available(key), "title": data.TASKS[key].title} for key in data.TASKS})


def _fetch(_args) -> str:
    from linft import sources

    return _json(sources.fetch_sources())


def _no_arguments(_parser: argparse.ArgumentParser) -> None:
    pass


def _study_arguments(parser) -> None:
    from linft.study import add_arguments

    add_arguments(parser)


def _study(args) -> str:
    from linft.results import dumps
    from linft.study import run_cli

    return dumps(run_cli(args), indent=2)


#: name -> (help, add the subcommand's arguments, run it and return the text to print)
_COMMANDS = {
    "predict": ("predict LoRA fine-tuning from the eNTK before training: κ, κ_λ, loss curve, KR accuracy held out "
                "on the test split (linft.preflight.preflight → linft.kernel_summary.summarize)",
                _predict_arguments, _predict),
    "layers": ("recommend which layers to adapt under a budget, with Weyl bounds and baselines (training "
               "examples only; the task split as linft predict's, whose held-out split is the test split)",
               _layers_arguments, _layers),
    "study": ("run a resumable sweep (tasks × LoRA configs × seeds × settings × λ) to a tidy CSV, serial or on Ray",
              _study_arguments, _study),
    "models": ("list the shipped model keys", _no_arguments, _models),
    "model-info": ("architecture and parameter counts, with LoRA attached", _model_info_arguments, _model_info),
    "tasks": ("the task registry and which tasks are available here", _no_arguments, _tasks),
    "fetch": ("download the optional data sources (VADER sdist, Debian r-cran-modeldata)", _no_arguments, _fetch),
}


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line (``linft model-info: error: ...``) and exit code 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def main(argv=None) -> int:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # idle threads yield: steadier on shared cores
    user_text = __doc__.split("\n\nAdding a subcommand")[0]  # the rest of the docstring is for developers
    parser = _Parser(prog="linft", description=user_text, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name, (text, add_arguments, _) in _COMMANDS.items():
        add_arguments(sub.add_parser(name, help=text, description=text))
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help (0) or a usage error (2, already reported on stderr)
        return exit_.code if isinstance(exit_.code, int) else 2
    try:
        text = _COMMANDS[args.command][2](args)
    except LinftError as err:
        message = " ".join(str(err).split())  # one line, whatever the message holds
        print(f"linft {args.command}: error: {message}", file=sys.stderr)
        return 2
    _write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
