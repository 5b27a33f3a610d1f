#!/usr/bin/env bash
# Run the tests: set up .venv if needed, run pytest, execute every chapter at "smoke" scale with papermill,
# build the book with warnings as errors, check the results files, then open every page of the built book in
# headless Chromium (tests/browser: skipped where Chromium is missing).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh
.venv/bin/ruff check .
.venv/bin/python -m pytest
.venv/bin/python scripts/run_chapters.py --scale smoke
.venv/bin/jupyter-book build . -W -n --keep-going
.venv/bin/python scripts/check_results.py --scale smoke
.venv/bin/python -m pytest tests/browser -q
