"""The book's structure: every chapter in the toc has a jupytext source with a papermill parameters cell
that takes ``scale`` and writes its headline numbers; no executed notebooks are kept in notebooks/."""

import re
import sys
from pathlib import Path

import jupytext
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from run_chapters import chapters_in_toc, parse_value  # noqa: E402

CHAPTERS = chapters_in_toc(ROOT / "_toc.yml")


def test_toc_lists_every_chapter_source():
    sources = sorted(p.stem for p in (ROOT / "notebooks").glob("*.md") if p.stem != "README")  # chapters, claims
    assert CHAPTERS, "no chapters found in _toc.yml"
    assert sorted(CHAPTERS) == sources
    assert not list((ROOT / "notebooks").glob("*.ipynb")), "executed notebooks do not belong in notebooks/"


@pytest.mark.parametrize("name", CHAPTERS)
def test_chapter_is_a_parameterized_notebook(name):
    notebook = jupytext.read(ROOT / "notebooks" / f"{name}.md")
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert code, f"{name}: jupytext found no code cells (front matter must declare format_name: myst)"
    params = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1, f"{name}: needs exactly one cell tagged 'parameters'"
    assert re.search(r"^scale\s*=\s*\"default\"", params[0].source, re.M), f"{name}: parameters must set scale"
    chapter_id = name.split("-")[0]
    assert re.search(rf"write_results\(\s*\"{chapter_id}\"", code[-1].source), (
        f"{name}: the last cell must call results.write_results({chapter_id!r}, scale, ...)"
    )
    text = "\n".join(c.source for c in code)
    assert 'matplotlib.use("Agg")' not in text and "MPLBACKEND" not in text


def test_parameter_values_parse_as_json_when_they_can():
    assert parse_value("3") == 3 and parse_value("[1, 2]") == [1, 2] and parse_value("true") is True
    assert parse_value("smollm2") == "smollm2"


MAX_CELL_LINES = 17  # "about 15": an imports-and-settings cell may run a line or two longer


@pytest.mark.parametrize("name", CHAPTERS)
def test_chapter_cells_are_prose_plus_calls(name):
    """Chapters define nothing: no def, no lambda, no long code cell (protocols live in linft.experiments)."""
    notebook = jupytext.read(ROOT / "notebooks" / f"{name}.md")
    for cell in (c for c in notebook.cells if c.cell_type == "code"):
        source = cell.source
        assert not re.search(r"^\s*(def|class|lambda)\b|\blambda\b", source, re.M), (
            f"{name}: a code cell defines a function or lambda; move it into linft:\n{source[:200]}"
        )
        lines = [line for line in source.splitlines() if line.strip()]
        assert len(lines) <= MAX_CELL_LINES, f"{name}: a code cell has {len(lines)} lines:\n{source[:200]}"
