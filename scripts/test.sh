#!/usr/bin/env bash
# Run the tests: set up .venv if needed, run pytest, execute every chapter at "smoke" scale with papermill,
# then build the book with warnings as errors.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh
.venv/bin/ruff check .
.venv/bin/python -m pytest
.venv/bin/python scripts/run_chapters.py --scale smoke
.venv/bin/jupyter-book build . -W -n --keep-going
.venv/bin/python scripts/check_results.py --scale smoke
