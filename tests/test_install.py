"""Tests for linft as an installable, citable artifact: the wheel and a non-editable install carry every module and
the data manifest, ``linft tasks`` works from outside the repository, and CITATION.cff / the book's "How to cite"
page agree with pyproject.toml and the bibliography."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from importlib import resources
from pathlib import Path

import pytest

from linft import LinftError, data, sources

REPO = Path(__file__).resolve().parents[1]
tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
yaml = pytest.importorskip("yaml")


def _pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def _run(cmd: list[str], cwd: Path, env: dict | None = None, timeout: int = 300) -> str:
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(map(str, cmd))} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _copy_source(dest: Path) -> Path:
    """What a build reads (pyproject.toml, README.md, src/) copied to ``dest``, so that building leaves no
    ``build/`` or ``*.egg-info`` in the shared working tree."""
    dest.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, dest / name)
    shutil.copytree(REPO / "src", dest / "src", ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
    return dest


def _package_files(src: Path) -> set[str]:
    """Every file of the ``linft`` package under ``src`` (modules and package data), as wheel paths."""
    return {p.relative_to(src).as_posix() for p in (src / "linft").rglob("*")
            if p.is_file() and "__pycache__" not in p.parts}


def _clean_env() -> dict:
    """The test environment minus anything that would put the repository's sources on the path."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "LINFT_MANIFEST", "VIRTUAL_ENV")}
    env["PYTHONNOUSERSITE"] = "1"
    return env


def _venv(root: Path) -> Path:
    """A fresh venv (``--system-site-packages``) whose dependencies come from this interpreter's site-packages,
    added by a plain path line in a ``.pth`` file: the editable linft of the development venv (itself a ``.pth``
    in that folder, which a path line does not process) stays out, so only the copy installed here is importable."""
    _run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(root)], cwd=root.parent)
    python = root / "bin" / "python"
    site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                     cwd=root.parent, env=_clean_env()).strip())
    dev_site = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "_linft_test_deps.pth").write_text("".join(f"{p}\n" for p in sorted(dev_site)))
    return python


def _pip_install(python: Path, target: str, cwd: Path) -> None:
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-build-isolation",
          "--no-index", "--disable-pip-version-check", target], cwd=cwd, env=_clean_env())


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> tuple[Path, set[str]]:
    """The wheel built from a copy of the sources, and the package files that copy holds."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = _copy_source(tmp / "src-copy")
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
          "--disable-pip-version-check", "-w", str(tmp / "dist"), str(src)], cwd=tmp, env=_clean_env())
    (built,) = (tmp / "dist").glob("linft-*.whl")
    return built, _package_files(src / "src")


# ---------------------------------------------------------------------------------------------- the manifest


def test_manifest_is_package_data_with_one_source_of_truth():
    packaged = resources.files("linft") / sources.MANIFEST_RESOURCE
    assert json.loads(packaged.read_text(encoding="utf-8")) == sources.load_manifest()
    assert Path(str(packaged)) == REPO / "src" / "linft" / "data_manifest.json"
    assert not (REPO / "data" / "manifest.json").exists(), "two manifests: keep src/linft/data_manifest.json only"


def test_manifest_override_that_is_missing_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("LINFT_MANIFEST", str(tmp_path / "nope.json"))
    with pytest.raises(LinftError, match=r"nope\.json \(from LINFT_MANIFEST\) is missing: .*unset LINFT_MANIFEST"):
        sources.load_manifest()


# ---------------------------------------------------------------------------------------------- installing


def test_wheel_holds_every_module_the_manifest_and_the_console_script(wheel):
    built, package_files = wheel
    with zipfile.ZipFile(built) as zf:
        names = set(zf.namelist())
        (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        scripts = zf.read(entry_points).decode()
        manifest = json.loads(zf.read("linft/data_manifest.json"))
    assert "linft/data_manifest.json" in package_files and "linft/ntk/__init__.py" in package_files
    assert package_files <= names, f"missing from the wheel: {sorted(package_files - names)}"
    assert manifest == json.loads((REPO / "src" / "linft" / "data_manifest.json").read_text(encoding="utf-8"))
    assert re.search(r"^linft = linft\.cli:main$", scripts, re.MULTILINE)
    assert built.name.startswith(f"linft-{_pyproject()['version']}-")


@pytest.mark.parametrize("how", ["wheel", "source"])
def test_installed_linft_lists_tasks_outside_the_repository(wheel, tmp_path, how):
    """``pip install`` of the wheel, or non-editable ``pip install .`` of the sources, into a fresh venv; then
    ``linft tasks`` run from a folder outside the repository must find the packaged manifest."""
    python = _venv(tmp_path / "venv")
    if how == "wheel":
        _pip_install(python, str(wheel[0]), cwd=tmp_path)
    else:
        _pip_install(python, ".", cwd=_copy_source(tmp_path / "src-copy"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    probe = ("import json, linft, linft.sources as s; from importlib import resources; "
             "print(json.dumps({'linft': linft.__file__, "
             "'manifest': str(resources.files('linft') / s.MANIFEST_RESOURCE)}))")
    where = json.loads(_run([str(python), "-c", probe], cwd=elsewhere, env=_clean_env()))
    venv = (tmp_path / "venv").resolve()
    for path in where.values():
        assert Path(path).resolve().is_relative_to(venv), f"imported {path}, not the copy installed in {venv}"
    out = json.loads(_run([str(tmp_path / "venv" / "bin" / "linft"), "tasks"], cwd=elsewhere, env=_clean_env()))
    assert list(out) == list(data.TASKS)
    for key, row in out.items():
        assert row["available"] is data.task_available(key) and row["title"] == data.TASKS[key].title, key
    assert all(out[key]["available"] for key in ("mr", "subj", "tweets", "bbc", "r8"))


# ---------------------------------------------------------------------------------------------- citing


def _citation() -> dict:
    return yaml.safe_load((REPO / "CITATION.cff").read_text(encoding="utf-8"))


def _bib_entry(bib: str, key: str) -> dict[str, str]:
    """Fields of one BibTeX entry (values with their outer braces removed, whitespace collapsed)."""
    match = re.search(r"@\w+\{" + re.escape(key) + r",(.*?)\n\}", bib, re.DOTALL)
    assert match, f"no BibTeX entry {key}"
    fields = re.findall(r"^\s*([\w-]+)\s*=\s*\{(.*)\},?\s*$", match.group(1), re.MULTILINE)
    return {name.lower(): " ".join(value.split()) for name, value in fields}


def _bib_authors(field: str) -> list[tuple[str, str]]:
    """``Last, First and Last, First`` -> [(family, given), ...]."""
    out = []
    for name in field.split(" and "):
        family, _, given = name.partition(",")
        out.append((family.strip(), given.strip()))
    return out


def test_citation_cff_is_valid_and_matches_pyproject():
    cff, project = _citation(), _pyproject()
    for key in ("cff-version", "message", "title", "authors", "type", "version", "date-released", "license",
                "references"):
        assert key in cff, key
    assert cff["cff-version"] == "1.2.0" and cff["type"] == "software"
    assert cff["title"] == yaml.safe_load((REPO / "_config.yml").read_text(encoding="utf-8"))["title"]
    assert str(cff["version"]) == project["version"]
    assert str(cff["date-released"]) == "2026-11-30" and cff["license"] == project["license"]
    assert cff["authors"] == [{"name": "The linft authors"}]
    for ref in cff["references"]:
        assert {"type", "title", "authors"} <= set(ref) and ref["authors"], ref.get("title")
        assert all("name" in a or "family-names" in a for a in ref["authors"])


def test_citation_cites_the_reference_study_as_the_bibliography_does():
    bib = _bib_entry((REPO / "book" / "references.bib").read_text(encoding="utf-8"), "afzal2025linearization")
    (ref,) = [r for r in _citation()["references"] if r["title"] == bib["title"]]
    assert [(a["family-names"], a["given-names"]) for a in ref["authors"]] == _bib_authors(bib["author"])
    assert str(ref["year"]) == bib["year"] and ref["collection-title"] == bib["booktitle"]
    arxiv = re.search(r"arXiv:\d{4}\.\d{4,5}", bib["note"]).group(0)
    assert arxiv in {i["value"] for i in ref["identifiers"]}


def test_cite_page_matches_citation_cff_and_is_in_the_toc():
    page = (REPO / "book" / "cite.md").read_text(encoding="utf-8")
    cff = _citation()
    blocks = {re.match(r"@\w+\{([^,]+),", b).group(1): b.strip() for b in re.findall(r"```bibtex\n(.*?)```", page,
                                                                                   re.DOTALL)}
    assert set(blocks) == {"linft2026", "afzal2025linearization"}
    bib = (REPO / "book" / "references.bib").read_text(encoding="utf-8")
    assert blocks["afzal2025linearization"] in bib  # the study's entry shown verbatim as the bibliography has it
    entry = _bib_entry(blocks["linft2026"], "linft2026")
    assert entry["title"] == cff["title"] and entry["version"] == str(cff["version"])
    assert entry["year"] == str(cff["date-released"])[:4] and entry["author"] == "{" + cff["authors"][0]["name"] + "}"
    assert "{cite:p}`afzal2025linearization`" in page or "{cite:t}`afzal2025linearization`" in page
    toc = yaml.safe_load((REPO / "_toc.yml").read_text(encoding="utf-8"))
    back = [p for p in toc["parts"] if p["caption"] == "Back matter"][0]
    assert {"file": "book/cite"} in back["chapters"]
