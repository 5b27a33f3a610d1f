"""Every page of the built book, opened in headless Chromium as a reader would.

Run after the book build (scripts/test.sh does): ``.venv/bin/python -m pytest tests/browser -q``. The plain
``pytest`` run does not collect this folder (``norecursedirs`` in pyproject.toml).

Per page (discovered from _build/html, not listed here): no console error, page error or failed request; every
image loaded; MathJax typeset every formula without an error and no raw TeX is left in the visible text; no cell
output shows a traceback or a machine-local absolute path; no papermill parameters cell is rendered; no content
sticks out of the text column; every internal link (and its #anchor) resolves. Plus: the search page finds a known
word. A full-page screenshot of each page goes to _build/screenshots/<page>.png.
"""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urldefrag

import pytest

ROOT = Path(__file__).resolve().parents[2]
HTML_DIR = ROOT / "_build" / "html"
SCREENSHOT_DIR = ROOT / "_build" / "screenshots"

SKIP_DIRS = {"_static", "_sources", "_images", "_downloads"}
SEARCH_PAGE = "search.html"
SEARCH_WORD = "kernel"  # the subject of chapter 3: any build of the book has it


def discover_pages() -> list[str]:
    """Every HTML page of the built book (relative paths), except the search page, which has its own test."""
    pages = []
    for path in sorted(HTML_DIR.rglob("*.html")):
        rel = path.relative_to(HTML_DIR)
        if rel.parts[0] in SKIP_DIRS or rel.as_posix() == SEARCH_PAGE:
            continue
        pages.append(rel.as_posix())
    return pages


PAGES = discover_pages() or ["(no pages: the book is not built)"]

# Raw TeX that escaped MathJax: delimiters or a control sequence in the visible text outside code.
RAW_TEX = re.compile(r"\$\$|\\\(|\\\)|\\\[|\\\]|\\[a-zA-Z]+|\$[^$\n]{1,200}\$")
# An absolute path of the build machine (the repository root is added per run).
LOCAL_PATH = re.compile(r"(?<![\w.~/-])/(?:work|home|root|tmp)/[^\s'\"<>,;)]*")
TRACEBACK = re.compile(r"Traceback \(most recent call last\)|Error:")

# Runs in the page after load: waits for images and MathJax, then reports everything wrong it can see.
INSPECT_JS = r"""
async () => {
  const withTimeout = (p, ms) => Promise.race([p, new Promise(r => setTimeout(r, ms))]);
  const imgs = Array.from(document.images);
  await withTimeout(Promise.all(imgs.map(img => img.complete ? null :
      new Promise(r => { img.addEventListener('load', r); img.addEventListener('error', r); }))), 30000);
  const out = {mathjax: null, mathErrors: [], untypeset: [], brokenImages: [], rawTex: '', outputs: [],
               glued: [], allText: '', tracebackNodes: 0, paramCells: [], overflow: [], hrefs: []};
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
    await MathJax.startup.promise;
    if (MathJax.typesetPromise) await MathJax.typesetPromise();
    out.mathjax = MathJax.version || 'unknown';
    for (const item of (MathJax.startup.document.math || [])) {
      let mml = '';
      try { mml = MathJax.startup.toMML(item.root); } catch (e) { mml = '<merror>' + e + '</merror>'; }
      if (/<merror|mathcolor="red"/.test(mml)) out.mathErrors.push(item.math);
    }
  }
  for (const el of document.querySelectorAll('mjx-merror, .MathJax_Error, [data-mjx-error]')) {
    out.mathErrors.push((el.getAttribute('data-mjx-error') || '') + ' ' + el.textContent);
  }
  if (out.mathjax) {
    for (const el of document.querySelectorAll('span.math, div.math')) {
      if (!el.querySelector('mjx-container')) out.untypeset.push(el.textContent.slice(0, 200));
    }
  }
  for (const img of imgs) {
    if (!img.complete || img.naturalWidth === 0) out.brokenImages.push(img.getAttribute('src'));
  }
  const main = document.querySelector('main') || document.body;
  const clone = main.cloneNode(true);
  clone.querySelectorAll('pre, code, kbd, samp, tt, script, style, textarea, mjx-container, .highlight, ' +
                         '.cell_input, .pre, .sig')
       .forEach(el => el.remove());
  out.rawTex = clone.textContent;
  out.outputs = Array.from(main.querySelectorAll('.cell_output')).map(el => el.textContent);
  out.glued = Array.from(main.querySelectorAll('.pasted-text, .pasted-inline')).map(el => el.textContent);
  out.allText = main.textContent;
  out.tracebackNodes = main.querySelectorAll('.output.traceback, .output.error').length;
  out.paramCells = Array.from(main.querySelectorAll('.tag_injected-parameters, .tag_parameters'))
      .map(el => (el.querySelector('pre') || el).textContent.trim().slice(0, 120));
  for (const el of main.querySelectorAll('.cell_input pre')) {
    if (!el.closest('.tag_injected-parameters, .tag_parameters') && /^\s*# Parameters\s*$/m.test(el.textContent)) {
      out.paramCells.push(el.textContent.trim().slice(0, 120));
    }
  }
  // Content wider than the text column must scroll inside it, not stick out over the margin.
  const article = document.querySelector('article') || main;
  const right = article.getBoundingClientRect().right;
  const scrolls = el => { for (let a = el.parentElement; a && a !== article; a = a.parentElement) {
      const ox = getComputedStyle(a).overflowX; if (ox === 'auto' || ox === 'scroll' || ox === 'hidden') return true; }
    return false; };
  for (const el of article.querySelectorAll('table, pre, img, mjx-container[display="true"]')) {
    const r = el.getBoundingClientRect();
    if (r.width > 0 && r.right > right + 2 && !scrolls(el)) {
      out.overflow.push(`${el.tagName.toLowerCase()} ${Math.round(r.right - right)}px past the column: ` +
                        el.textContent.trim().slice(0, 80));
    }
  }
  if (document.documentElement.scrollWidth > document.documentElement.clientWidth + 2) {
    out.overflow.push(`the page scrolls sideways (${document.documentElement.scrollWidth}px wide)`);
  }
  out.hrefs = Array.from(document.querySelectorAll('a[href]')).map(a => a.href);
  return out;
}
"""


class _Ids(HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        for key, value in attrs:
            if key == "id" or (key == "name" and tag == "a"):
                self.ids.add(value or "")


def _fetch(url: str, cache: dict) -> tuple[int, set[str]]:
    """HTTP status and element ids of an internal URL (cached across pages)."""
    if url not in cache:
        try:
            with urllib.request.urlopen(url, timeout=30) as resp:
                body, status = resp.read(), resp.status
                kind = resp.headers.get("Content-Type", "")
        except urllib.error.HTTPError as err:
            cache[url] = (err.code, set())
            return cache[url]
        ids: set[str] = set()
        if "html" in kind:
            parser = _Ids()
            parser.feed(body.decode("utf-8", "replace"))
            ids = parser.ids
        cache[url] = (status, ids)
    return cache[url]


def _snippets(text: str, pattern: re.Pattern, limit: int = 5) -> list[str]:
    """Matches of pattern with some context (matches inside an earlier snippet are not repeated)."""
    found, covered = [], -1
    for m in pattern.finditer(text):
        if m.start() < covered:
            continue
        start, covered = max(0, m.start() - 60), min(len(text), m.end() + 60)
        found.append(" ".join(text[start:covered].split()))
        if len(found) == limit:
            break
    return found


def _screenshot(page, name: str) -> None:
    target = SCREENSHOT_DIR / f"{name}.png"
    target.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(target), full_page=True)


def _watch(page, base: str) -> list[str]:
    """Collect console errors, uncaught page errors and failed same-site requests into a list."""
    problems: list[str] = []
    page.on("console", lambda msg: problems.append(f"console {msg.type}: {msg.text}") if msg.type == "error" else None)
    page.on("pageerror", lambda err: problems.append(f"page error: {err}"))
    page.on("requestfailed", lambda req: problems.append(f"request failed: {req.url} ({req.failure})"))
    page.on("response", lambda resp: problems.append(f"HTTP {resp.status}: {resp.url}")
            if resp.status >= 400 and resp.url.startswith(base) else None)
    return problems


@pytest.mark.parametrize("name", PAGES)
def test_page(name, page, site_url, link_cache):
    if not (HTML_DIR / name).is_file():
        pytest.fail(f"no built book at {HTML_DIR}: run `jupyter-book build . -W -n --keep-going` first")
    problems = _watch(page, site_url)
    page.goto(site_url + name, wait_until="load")
    page.wait_for_load_state("networkidle")  # index.html redirects to the first page
    found = page.evaluate(INSPECT_JS)
    _screenshot(page, name.removesuffix(".html"))
    where = page.url.removeprefix(site_url)
    failures = [f"{where}: {p}" for p in dict.fromkeys(problems)]  # a resource can fail more than once

    failures += [f"{where}: MathJax error in formula: {tex.strip()[:200]}" for tex in found["mathErrors"]]
    failures += [f"{where}: formula not typeset by MathJax: {tex}" for tex in found["untypeset"]]
    failures += [f"{where}: raw TeX in the visible text: …{s}…" for s in _snippets(found["rawTex"], RAW_TEX)]
    failures += [f"{where}: image did not load: {src}" for src in found["brokenImages"]]

    outputs = "\n".join(found["outputs"] + found["glued"])
    failures += [f"{where}: traceback/error in a cell output: …{s}…" for s in _snippets(outputs, TRACEBACK)]
    if found["tracebackNodes"]:
        failures.append(f"{where}: {found['tracebackNodes']} cell output(s) rendered as an error/traceback")
    failures += [f"{where}: machine-local path in a cell output: …{s}…" for s in _snippets(outputs, LOCAL_PATH)]
    failures += [f"{where}: repository path {ROOT} on the page: …{s}…"
                 for s in _snippets(found["allText"], re.compile(re.escape(str(ROOT))))]
    failures += [f"{where}: papermill parameters cell rendered: {text!r}" for text in found["paramCells"]]
    failures += [f"{where}: {text}" for text in found["overflow"]]

    for href in sorted(set(found["hrefs"])):
        if not href.startswith(site_url):
            continue
        url, fragment = urldefrag(href)
        status, ids = _fetch(url, link_cache)
        if status >= 400:
            failures.append(f"{where}: broken link {href.removeprefix(site_url)} (HTTP {status})")
        elif fragment and fragment not in ids and url.endswith((".html", "/")):
            failures.append(f"{where}: link to a missing anchor {href.removeprefix(site_url)}")

    if failures:
        pytest.fail(f"{len(failures)} problem(s) on {name}:\n  " + "\n  ".join(failures), pytrace=False)


def test_search_finds_a_known_word(page, site_url):
    problems = _watch(page, site_url)
    page.goto(f"{site_url}{SEARCH_PAGE}?q={SEARCH_WORD}", wait_until="load")
    page.wait_for_function(
        "() => document.querySelectorAll('#search-results ul.search li').length > 0"
        " || /found 0|did not match|no .*results/i.test(document.querySelector('#search-results')?.innerText || '')",
        timeout=90_000,
    )
    page.wait_for_load_state("networkidle")
    _screenshot(page, "search")
    hits = page.eval_on_selector_all("#search-results ul.search li a", "els => els.map(a => a.getAttribute('href'))")
    assert hits, f"{SEARCH_PAGE}: searching for {SEARCH_WORD!r} found nothing (is searchindex.js built?)"
    assert any("chapters/" in h for h in hits), f"{SEARCH_PAGE}: {SEARCH_WORD!r} found no chapter, only {hits}"
    assert not problems, f"{SEARCH_PAGE}: " + "; ".join(dict.fromkeys(problems))
