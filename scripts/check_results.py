"""Check that every chapter wrote its headline numbers and that the HTML book exists."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run_chapters import ROOT, chapters_in_toc


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", default="smoke")
    args = parser.parse_args(argv)
    results = Path(os.environ.get("LINFT_RESULTS_DIR") or ROOT / "_build" / "results")
    problems = []
    for name in chapters_in_toc(ROOT / "_toc.yml"):
        chapter = name.split("-")[0]
        path = results / f"{chapter}-{args.scale}.json"
        if not path.exists():
            problems.append(f"{path} missing (chapter {name} must call linft.results.write_results)")
            continue
        numbers = json.loads(path.read_text()).get("numbers")
        if not numbers:
            problems.append(f"{path} has no numbers")
        html = ROOT / "_build" / "html" / "book" / "chapters" / f"{name}.html"
        if not html.exists():
            problems.append(f"{html} was not rendered")
    if not (ROOT / "_build" / "html" / "index.html").exists():
        problems.append("_build/html/index.html missing")
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if not problems:
        print(f"results: every chapter wrote {results}/<chapter>-{args.scale}.json; HTML rendered")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
