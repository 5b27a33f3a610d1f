"""Write src/linft/study_finding.json, the keystone study's finding that `linft predict` reports (linft.finding).

    .venv/bin/python scripts/update_finding.py     # after committing new rows of data/results/study-reference.csv
"""

import json
from pathlib import Path

from linft.experiments import reference_study as rx

ROOT = Path(__file__).resolve().parents[1]
CSV, CONFIG = ROOT / "data/results/study-reference.csv", ROOT / "sweeps/reference.yaml"


def compute() -> dict:
    """The finding from the committed CSV (fixed bootstrap seed, so the same rows give the same file)."""
    return rx.finding(CSV, planned=len(rx.planned_runs(CONFIG)), seed=0)


def main() -> None:
    out = ROOT / "src/linft/study_finding.json"
    out.write_text(json.dumps(compute(), indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
