"""Command line: ``linft models``, ``linft model-info NAME``, ``linft tasks``, ``linft fetch``.

Output is JSON (one object) so scripts can read it; errors are one line on stderr with exit code 2.
"""

from __future__ import annotations

import argparse
import json
import sys

from linft import LinftError


def _model_info(args) -> dict:
    from linft import models

    model, _ = models.load(args.model, num_labels=args.num_labels)
    info = {"model": args.model, **models.architecture_summary(model), **models.count_parameters(model)}
    peft_model = models.add_lora(model, targets=args.targets, rank=args.rank, alpha=2 * args.rank)
    info["lora"] = models.count_parameters(peft_model)
    return info


def _tasks(args) -> dict:
    from linft import data

    return {key: {"available": data.task_available(key), "title": data.TASKS[key].title} for key in data.TASKS}


def _fetch(args) -> dict:
    from linft import sources

    return sources.fetch_sources()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="linft", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("models", help="list the shipped model keys")
    info = sub.add_parser("model-info", help="architecture and parameter counts, with LoRA attached")
    info.add_argument("model", nargs="?", default="minilm")
    info.add_argument("--num-labels", type=int, default=2)
    info.add_argument("--targets", nargs="+", default=["query", "value"])
    info.add_argument("--rank", type=int, default=8)
    sub.add_parser("tasks", help="the task registry and which tasks are available here")
    sub.add_parser("fetch", help="download the optional data sources (VADER sdist, Debian r-cran-modeldata)")
    args = parser.parse_args(argv)
    try:
        if args.command == "models":
            from linft.models import MODEL_KEYS

            out = {"keys": list(MODEL_KEYS), "other": "any Hugging Face id or local folder"}
        else:
            out = {"model-info": _model_info, "tasks": _tasks, "fetch": _fetch}[args.command](args)
    except LinftError as err:
        print(f"linft: error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(out, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
