#!/usr/bin/env bash
# Build the whole book: set up .venv if needed, execute every chapter with papermill at SCALE
# (default: "default"), then render HTML with Jupyter Book into _build/html.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh
SCALE=${SCALE:-default}
.venv/bin/python scripts/run_chapters.py --scale "$SCALE" "$@"
.venv/bin/jupyter-book build . -W -n --keep-going
echo "book: open _build/html/index.html"
