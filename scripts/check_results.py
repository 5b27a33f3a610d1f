"""Check that every chapter wrote its headline numbers and that the HTML book exists."""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run_chapters import ROOT, chapters_in_toc

from linft.results import load_results


def claims_problems(results: Path, scale: str) -> list[str]:
    """The claims page: one valid verdict per claim, current with the chapters' results, evidence links that land."""
    from linft.claims import CLAIMS, VERDICTS, claims_table
    from linft.results import json_safe

    path = results / f"claims-{scale}.json"
    if not path.exists():
        return []  # reported above
    numbers = load_results(path).get("numbers") or {}
    rows = numbers.get("rows") or []
    problems = []
    if [r.get("#") for r in rows] != [c.id for c in CLAIMS]:
        problems.append(f"{path}: rows for claims {[r.get('#') for r in rows]}, expected 1–{len(CLAIMS)}")
    bad = [r.get("verdict") for r in rows if r.get("verdict") not in VERDICTS]
    if bad:
        problems.append(f"{path}: verdicts {bad} are not among {VERDICTS}")
    if numbers.get("counts") != {v: sum(r.get("verdict") == v for r in rows) for v in VERDICTS}:
        problems.append(f"{path}: verdict counts {numbers.get('counts')} do not match its rows")
    current = claims_table(scale, results).reset_index().to_dict("records")
    if rows and json_safe(current) != json_safe(rows):  # as written: NaN == NaN there (both null)
        changed = [r["#"] for r, c in zip(rows, current) if json_safe(r) != json_safe(c)]
        problems.append(f"{path} is stale for claims {changed}: a chapter re-ran after it; run "
                        f"`python scripts/run_chapters.py --scale {scale} --only claims` and rebuild the book")
    page = ROOT / "_build" / "html" / "book" / "chapters" / "claims.html"
    if page.exists():
        html = page.read_text()
        if "claims-table" not in html:
            problems.append(f"{page} has no claims table")
        for target, anchor in sorted(set(re.findall(r'<a href="([\w.-]+\.html)#([\w-]+)"', html))):
            linked = page.parent / target
            if not linked.exists() or f'id="{anchor}"' not in linked.read_text():
                problems.append(f"{page}: evidence link {target}#{anchor} lands nowhere (renamed section?)")
    return problems


CH4_CLAIMS = ("weyl_bounds", "layer_selection")
CH4_VERDICTS = ("holds", "partly", "does not hold")


def chapter4_problems(numbers: dict, path: Path) -> list[str]:
    """Chapter 4: a computed verdict with evidence and a section for each of its two claims (the claims page combines
    them into claim 9), and every tested union of layers counted."""
    problems = []
    for key in CH4_CLAIMS:
        entry = numbers.get(key)
        if not isinstance(entry, dict) or entry.get("verdict") not in CH4_VERDICTS:
            problems.append(f"{path}: {key!r} needs a verdict among {CH4_VERDICTS}, got {entry!r}")
        elif not entry.get("evidence") or not entry.get("section"):
            problems.append(f"{path}: {key!r} needs an 'evidence' sentence and a 'section' label")
    unions = numbers.get("unions") or {}
    if not unions.get("n_unions") or unions.get("n_inside", -1) + unions.get("n_outside", -1) != unions.get(
            "n_eigenvalues"):
        problems.append(f"{path}: 'unions' must count every tested union's eigenvalues (inside + outside), got "
                        f"{unions!r}")
    return problems


CH5_CLAIMS = ("kappa-orders-mse", "kappa-orders-adamw")


def chapter5_problems(numbers: dict, path: Path) -> list[str]:
    """Chapter 5: a verdict for claims 7 and 8, every re-run committed row reproduced, the sweep's rows counted."""
    problems = []
    claims = numbers.get("claims") or {}
    for key in CH5_CLAIMS:
        entry = claims.get(key)
        if not isinstance(entry, dict) or entry.get("verdict") not in (*CH4_VERDICTS, "not yet tested"):
            problems.append(f"{path}: claims[{key!r}] needs a computed verdict, got {entry!r}")
    rerun = numbers.get("rerun") or []
    if not rerun or not all(row.get("match") for row in rerun):
        problems.append(f"{path}: the re-run subset must reproduce the committed rows, got "
                        f"{[(r.get('task'), r.get('config'), r.get('match')) for r in rerun]}")
    anchored = numbers.get("anchored") or {}
    if not anchored.get("lam", 0) > 0 or not (anchored.get("counts") or {}).get("rows") or not all(
            isinstance(v, dict) and v.get("verdict") in (*CH4_VERDICTS, "not yet tested") and v.get("evidence")
            for v in (anchored.get("verdicts") or {None: None}).values()):
        problems.append(f"{path}: 'anchored' needs the slice's λ > 0, its row count and a computed verdict per "
                        f"setting, got {str(anchored)[:200]}")
    problems += reference_problems(numbers.get("reference") or {}, path)
    counts = numbers.get("counts") or {}
    if counts.get("rows", 0) < 1 or counts.get("used", 0) + counts.get("failed", 0) + counts.get("not_moved", 0) != \
            counts.get("rows"):
        problems.append(f"{path}: 'counts' must split every sweep row into used, failed and not moved, got {counts}")
    return problems


def _finite(value) -> bool:
    """A finite number (results files read through linft.results hold NaN where a number is missing)."""
    return isinstance(value, (int, float)) and math.isfinite(value)


def reference_problems(reference: dict, path: Path) -> list[str]:
    """Chapter 5's keystone: the primary test's ρ with its configuration-bootstrap interval per task and pooled, ρ(N)
    with costs for both kernels at every calibration size, and a re-run that matches its committed row."""
    problems = []
    primary = reference.get("primary") or {}
    tasks = (reference.get("counts") or {}).get("tasks") or []
    for task in [*tasks, "pooled"]:
        row = primary.get(task) or {}
        # a task the sweep has reached with fewer than 3 configurations has no ρ yet ("not tested"); pooled must
        if task != "pooled" and (row.get("n_configs") or 0) < 3 and row.get("verdict") == "not tested":
            continue
        if not all(_finite(row.get(k)) for k in ("rho", "low", "high")) or row.get("verdict") not in \
                ("holds", "fails", "not resolved"):
            problems.append(f"{path}: reference.primary[{task!r}] needs rho, low, high and a verdict, got {row!r}")
    calib = (reference.get("counts") or {}).get("calib") or []
    rho_n = reference.get("rho_n") or []
    have = {(r.get("kernel"), r.get("n")) for r in rho_n if _finite(r.get("kernel_seconds"))}
    missing = [(k, n) for k in ("ref", "trained") for n in calib if (k, n) not in have]
    if not calib or missing:
        problems.append(f"{path}: reference.rho_n lacks ρ(N) with its cost for {missing or 'every N'}")
    rerun = reference.get("rerun") or []
    if any(r.get("match") is False for r in rerun):
        problems.append(f"{path}: the re-run reference run does not reproduce its committed row: "
                        f"{[(r.get('column'), r.get('committed'), r.get('rerun')) for r in rerun]}")
    return problems


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
        numbers = load_results(path).get("numbers")
        if not numbers:
            problems.append(f"{path} has no numbers")
        elif chapter == "ch4":
            problems += chapter4_problems(numbers, path)
        elif chapter == "ch5":
            problems += chapter5_problems(numbers, path)
        html = ROOT / "_build" / "html" / "book" / "chapters" / f"{name}.html"
        if not html.exists():
            problems.append(f"{html} was not rendered")
    if not (ROOT / "_build" / "html" / "index.html").exists():
        problems.append("_build/html/index.html missing")
    if "claims" in chapters_in_toc(ROOT / "_toc.yml"):
        problems += claims_problems(results, args.scale)
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if not problems:
        print(f"results: every chapter wrote {results}/<chapter>-{args.scale}.json; HTML rendered")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
