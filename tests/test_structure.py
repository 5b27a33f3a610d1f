"""The package's shape, checked: no import cycle between modules or between sub-packages, no private name imported
across modules, no function over 100 lines, no module over 600 lines (the bars of the run-spec issue)."""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "linft"
MAX_FUNCTION, MAX_MODULE = 100, 600


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(SRC.rglob("*.py")):
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


MODULES = _modules()


def _imports(path: Path, name: str) -> list[tuple[str, list[str], bool]]:
    """(imported module, imported names, at module level) of every linft import in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top = set(map(id, tree.body))
    found = []
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = package.split(".")
                module = ".".join(base[: len(base) - node.level + 1] + ([module] if module else []))
            if module == "linft" or module.startswith("linft."):
                found.append((module, [a.name for a in node.names], id(node) in top))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("linft"):
                    found.append((alias.name, [], id(node) in top))
    return found


def _target(module: str, names: list[str]) -> list[str]:
    """The linft modules an import refers to (``from linft import data`` is module linft.data)."""
    targets = [f"{module}.{n}" for n in names if f"{module}.{n}" in MODULES]
    return targets or ([module] if module in MODULES else [])


def _graph(top_only: bool) -> dict[str, set[str]]:
    graph = {}
    for name, path in MODULES.items():
        edges = set()
        for module, names, at_top in _imports(path, name):
            if at_top or not top_only:
                edges.update(t for t in _target(module, names) if t != name and not name.startswith(t + "."))
        graph[name] = edges
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state, stack = {}, []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if not state.get(nxt):
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if not state.get(node):
            found = visit(node)
            if found:
                return found
    return None


def test_no_import_cycle_between_modules():
    assert _cycle(_graph(top_only=True)) is None


def test_no_import_cycle_between_subpackages():
    def package(name):
        parts = name.split(".")
        return ".".join(parts[:2])

    graph = {}
    for name, edges in _graph(top_only=False).items():
        graph.setdefault(package(name), set()).update(package(e) for e in edges if package(e) != package(name))
    graph.pop("linft", None)  # the top-level package's helpers (LinftError, checks) are imported by everything
    for edges in graph.values():
        edges.discard("linft")
    assert _cycle(graph) is None


def test_no_private_name_imported_across_modules():
    offenders = []
    for name, path in MODULES.items():
        for module, names, _ in _imports(path, name):
            for imported in names:
                private = imported.startswith("_") and not imported.startswith("__")
                if private and f"{module}.{imported}" not in MODULES:
                    offenders.append(f"{name}: from {module} import {imported}")
    assert not offenders, offenders


@pytest.mark.parametrize("name", sorted(MODULES))
def test_modules_and_functions_are_short(name):
    path = MODULES[name]
    text = path.read_text(encoding="utf-8")
    assert text.count("\n") <= MAX_MODULE, f"{path} has {text.count(chr(10))} lines (max {MAX_MODULE})"
    long = [f"{n.name} ({n.end_lineno - n.lineno + 1} lines)" for n in ast.walk(ast.parse(text))
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.end_lineno - n.lineno + 1 > MAX_FUNCTION]
    assert not long, f"{path}: {long}"


def test_the_checks_can_fail():
    assert _cycle({"a": {"b"}, "b": {"a"}}) == ["a", "b", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None
