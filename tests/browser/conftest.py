"""Fixtures of the browser test: the built book served over local HTTP, and headless Chromium driven by Playwright.

The book must already be built (``jupyter-book build .`` writes ``_build/html``). Chromium is Debian's package
(``/usr/bin/chromium``; ``scripts/setup.sh`` installs it when run as root), never Playwright's own download. Where
Playwright or Chromium is missing every browser test is skipped with one message saying what to install.
Set ``LINFT_CHROMIUM`` to use another Chromium binary.
"""

from __future__ import annotations

import functools
import os
import shutil
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HTML_DIR = ROOT / "_build" / "html"


def chromium_path() -> str | None:
    """The Chromium binary: $LINFT_CHROMIUM when set (alone), else Debian's /usr/bin/chromium or `chromium` on PATH."""
    explicit = os.environ.get("LINFT_CHROMIUM")
    candidates = [explicit] if explicit else ["/usr/bin/chromium", shutil.which("chromium")]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep the test output free of one line per request
        pass


@pytest.fixture(scope="session")
def site_url():
    """Base URL (ending in '/') of _build/html served by http.server on 127.0.0.1 (file:// breaks search)."""
    if not (HTML_DIR / "search.html").is_file():
        pytest.fail(f"no built book at {HTML_DIR}: run `jupyter-book build . -W -n --keep-going` first")
    handler = functools.partial(_QuietHandler, directory=str(HTML_DIR))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def browser():
    """One headless Chromium for the session; skips (one reason for all tests) where it cannot run."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("browser test skipped: Playwright is not installed (pip install -c constraints.txt -e '.[dev]')")
    executable = chromium_path()
    if executable is None:
        where = os.environ.get("LINFT_CHROMIUM") or "/usr/bin/chromium"
        pytest.skip(f"browser test skipped: no Chromium at {where} (install Debian's package as root: "
                    "apt-get install -y chromium, which scripts/setup.sh does; or set LINFT_CHROMIUM)")
    with sync_playwright() as pw:
        # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
        chromium = pw.chromium.launch(executable_path=executable, headless=True,
                                      args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    """A fresh page (own context) at a fixed desktop size."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, device_scale_factor=1)
    context.set_default_timeout(90_000)
    page = context.new_page()
    yield page
    context.close()


@pytest.fixture(scope="session")
def link_cache():
    """URL (without fragment) -> (HTTP status, set of element ids) for the internal-link check, shared by pages."""
    return {}
