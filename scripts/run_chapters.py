"""Execute the book's chapters with papermill.

Each chapter is a jupytext MyST notebook ``notebooks/<name>.md`` listed in ``_toc.yml`` as
``book/chapters/<name>``. It is converted to .ipynb, executed with papermill (parameter ``scale`` plus any
``-p name value``), and written to ``book/chapters/<name>.ipynb`` (git-ignored), where Jupyter Book renders it.

    python scripts/run_chapters.py --scale smoke
    python scripts/run_chapters.py --scale default --only ch3-ntk -p model smollm2

Runs every selected chapter even if one fails, then exits non-zero naming the failures. Timings go to
``_build/results/timings-<scale>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import jupytext
import nbformat
import papermill
import yaml

ROOT = Path(__file__).resolve().parents[1]
CHAPTER_DIR = "book/chapters/"


def chapters_in_toc(toc_path: Path) -> list[str]:
    """Chapter names in reading order (entries of the toc under book/chapters/)."""
    names: list[str] = []

    def walk(node):
        if isinstance(node, dict):
            entry = node.get("file")
            if isinstance(entry, str) and entry.startswith(CHAPTER_DIR):
                names.append(entry[len(CHAPTER_DIR):])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(yaml.safe_load(toc_path.read_text()))
    return names


# Cells the rendered page leaves out: the chapter's defaults (papermill's `parameters` cell) and the values papermill
# injected for this run (its `injected-parameters` cell, which begins "# Parameters"). The set-up cell prints the
# values in force. Other cells carry their own tags in notebooks/*.md (see notebooks/README.md).
PAGE_REMOVED_TAGS = ("parameters", "injected-parameters")


def tag_for_the_page(path: Path) -> None:
    """Tag the executed notebook's parameter cells ``remove-cell`` so Jupyter Book does not render them."""
    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        tags = cell.metadata.setdefault("tags", [])
        if any(t in tags for t in PAGE_REMOVED_TAGS) and "remove-cell" not in tags:
            tags.append("remove-cell")
    nbformat.write(notebook, path)


def parse_value(text: str):
    """papermill -p values: JSON when it parses (numbers, lists, booleans), else the string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", default="default", choices=["smoke", "default", "paper"])
    parser.add_argument("--only", nargs="*", help="chapter names (default: every chapter in _toc.yml)")
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"))
    args = parser.parse_args(argv)

    os.chdir(ROOT)
    names = chapters_in_toc(ROOT / "_toc.yml")
    if args.only:
        unknown = sorted(set(args.only) - set(names))
        if unknown:
            print(f"error: unknown chapter(s) {unknown}: choose from {names}", file=sys.stderr)
            return 2
        names = [n for n in names if n in args.only]
    parameters = {"scale": args.scale, **{k: parse_value(v) for k, v in args.parameter}}
    out_dir = ROOT / CHAPTER_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    results_dir = Path(os.environ.setdefault("LINFT_RESULTS_DIR", str(ROOT / "_build" / "results")))
    results_dir.mkdir(parents=True, exist_ok=True)

    timings, failures = {}, []
    for name in names:
        source = ROOT / "notebooks" / f"{name}.md"
        if not source.exists():
            print(f"error: chapter {name} is in _toc.yml but {source} is missing", file=sys.stderr)
            failures.append(name)
            continue
        notebook = jupytext.read(source)
        notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        raw = out_dir / f"{name}.source.ipynb"
        jupytext.write(notebook, raw)
        print(f"== {name}: executing at scale={args.scale} {parameters}", flush=True)
        start = time.perf_counter()
        try:
            papermill.execute_notebook(
                str(raw), str(out_dir / f"{name}.ipynb"), parameters=parameters, kernel_name="python3",
                cwd=str(ROOT), progress_bar=False, log_output=False,
            )
        except Exception as err:  # papermill raises PapermillExecutionError with the cell's traceback
            failures.append(name)
            print(f"!! {name} failed: {str(err).strip().splitlines()[-1] if str(err).strip() else err}", flush=True)
        finally:
            raw.unlink(missing_ok=True)
            if (out_dir / f"{name}.ipynb").exists():
                tag_for_the_page(out_dir / f"{name}.ipynb")
        timings[name] = round(time.perf_counter() - start, 1)
        print(f"== {name}: {timings[name]} s", flush=True)

    (results_dir / f"timings-{args.scale}.json").write_text(json.dumps(timings, indent=2) + "\n")
    print("chapter timings (s): " + ", ".join(f"{k}={v}" for k, v in timings.items()))
    if failures:
        print(
            f"error: chapter(s) failed: {failures}; see book/chapters/<name>.ipynb for the traceback",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
