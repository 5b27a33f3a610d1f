"""Command line: ``linft models``, ``linft model-info NAME``, ``linft tasks``, ``linft fetch``.

Output is JSON (one object) so scripts can read it; errors are one line on stderr with exit code 2, argparse's
usage errors included. Output piped into a reader that stops early (``linft tasks | head -1``) ends quietly with
exit code 0: the reader having seen enough is not an error of ours, and 0 keeps ``set -o pipefail`` scripts going.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from linft import LinftError


def _model_info(args) -> dict:
    from linft import models

    model, _ = models.load(args.model, num_labels=args.num_labels)
    info = {"model": args.model, **models.architecture_summary(model), **models.count_parameters(model)}
    peft_model = models.add_lora(model, targets=args.targets, rank=args.rank, alpha=2 * args.rank)
    info["lora"] = models.count_parameters(peft_model)
    return info


def _tasks(_args) -> dict:
    from linft import data

    return {key: {"available": data.task_available(key), "title": data.TASKS[key].title} for key in data.TASKS}


def _fetch(_args) -> dict:
    from linft import sources

    return sources.fetch_sources()


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line (``linft model-info: error: ...``) and exit code 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


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


def main(argv=None) -> int:
    parser = _Parser(prog="linft", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("models", help="list the shipped model keys")
    info = sub.add_parser("model-info", help="architecture and parameter counts, with LoRA attached")
    info.add_argument("model", nargs="?", default="minilm")
    info.add_argument("--num-labels", type=int, default=2)
    info.add_argument("--targets", nargs="+", default=["query", "value"])
    info.add_argument("--rank", type=int, default=8)
    sub.add_parser("tasks", help="the task registry and which tasks are available here")
    sub.add_parser("fetch", help="download the optional data sources (VADER sdist, Debian r-cran-modeldata)")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help (0) or a usage error (2, already reported on stderr)
        return exit_.code if isinstance(exit_.code, int) else 2
    try:
        if args.command == "models":
            from linft.models import MODEL_KEYS

            out = {"keys": list(MODEL_KEYS), "other": "any Hugging Face id or local folder"}
        else:
            out = {"model-info": _model_info, "tasks": _tasks, "fetch": _fetch}[args.command](args)
    except LinftError as err:
        print(f"linft: error: {err}", file=sys.stderr)
        return 2
    _write(json.dumps(out, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
