"""The import structure of ``secfl``: no cycle between packages, none between the modules of one package.

What counts as an import: every ``import`` / ``from ... import`` statement in a module, at module level
or inside a function or class (a deferred import is still a dependency, it only runs later), except the
ones under ``if TYPE_CHECKING:`` (never executed). ``from secfl.a import b`` depends on the module
``secfl.a.b`` when that module exists, else on ``secfl.a``; relative imports are resolved first.

Package graph: every module is mapped to its node, the first two components of its name: a subpackage
(``secfl.fl``, ``secfl.methods``, ``secfl.attacks``, ``secfl.stages``, ...) or a top-level module
(``secfl.scenario``, ``secfl.pipeline``, ``secfl.engine``, ...), each its own node; ``secfl`` (the
package's ``__init__``, the public facade) is a node too. An import between two nodes is an edge.

File graph: within one subpackage, an import of one of its modules by another is an edge. A package's
``__init__`` is left out of it (it re-exports its modules: importing a sibling through the package is
an import of the facade, not of a module). Nested subpackages are nodes of their parent's level too: in
``secfl.audit``, an import from any module of ``secfl.audit.privacy`` of any module of
``secfl.audit.protocol`` is the edge ``secfl.audit.privacy -> secfl.audit.protocol``, and the modules of
each (``secfl.audit.protocol.harness``, ...) form their own level.

The failure message names the cycle and, for each of its edges, where the import is.

Also here: ``import secfl`` does not load TenSEAL, and the shared argument checks live in ``secfl.checks``.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

import secfl

ROOT = Path(secfl.__file__).resolve().parent
Edge = tuple[str, str]


def _modules() -> dict[str, Path]:
    """Dotted name -> file of every module of secfl (a package by its ``__init__.py``)."""
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_nodes(tree: ast.AST) -> Iterable[ast.Import | ast.ImportFrom]:
    """Every import statement in ``tree`` (any depth), skipping ``if TYPE_CHECKING:`` bodies."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
        else:
            stack.extend(ast.iter_child_nodes(node))


def _imports(name: str, path: Path, modules: Mapping[str, Path]) -> list[tuple[str, int]]:
    """(imported secfl module, line) for every import in the module ``name``."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in _import_nodes(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            submodules = [f"{source}.{alias.name}" for alias in node.names if f"{source}.{alias.name}" in modules]
            targets = submodules if len(submodules) == len(node.names) else [source, *submodules]
        for target in targets:
            while target and target not in modules:  # `import secfl.a.b.C`-like: the nearest module
                target = target.rpartition(".")[0]
            if target:
                out.append((target, node.lineno))
    return out


def _graphs() -> tuple[dict[str, set[str]], dict[str, set[str]], dict[Edge, str]]:
    """(package graph, file graph, edge -> where its first import is)."""
    modules = _modules()
    packages: dict[str, set[str]] = {}
    files: dict[str, set[str]] = {}
    where: dict[Edge, str] = {}
    for name, path in modules.items():
        for target, line in _imports(name, path, modules):
            site = f"{path.relative_to(ROOT.parent)}:{line} imports {target}"
            a, b = ".".join(name.split(".")[:2]), ".".join(target.split(".")[:2])
            if a != b:
                packages.setdefault(a, set()).add(b)
                where.setdefault((a, b), site)
            elif (edge := _sibling_edge(name, target)) is not None:
                files.setdefault(edge[0], set()).add(edge[1])
                where.setdefault(edge, site)
    return packages, files, where


def _sibling_edge(name: str, target: str) -> Edge | None:
    """The file-graph edge of module ``name`` importing ``target`` (both in one package node): the children of
    their deepest common package that hold them (two modules, or a subpackage when nested), or None when one
    holds the other (a package's ``__init__`` importing its own modules, or a module its own package's)."""
    a, b = name.split("."), target.split(".")
    common = 0
    while common < min(len(a), len(b)) and a[common] == b[common]:
        common += 1
    if common >= len(a) or common >= len(b):
        return None
    return ".".join(a[: common + 1]), ".".join(b[: common + 1])


def find_cycle(graph: Mapping[str, Iterable[str]]) -> list[str] | None:
    """A cycle of ``graph`` as its nodes with the first repeated at the end, or None if it has none."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done (no cycle through it)
    for start in sorted(graph):
        if state.get(start):
            continue
        path, iters = [start], [iter(sorted(graph.get(start, ())))]
        state[start] = 1
        while path:
            nxt = next(iters[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                iters.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                iters.append(iter(sorted(graph.get(nxt, ()))))
    return None


def _describe(cycle: list[str], where: Mapping[Edge, str]) -> str:
    steps = "\n".join(f"  {where[(a, b)]}" for a, b in zip(cycle, cycle[1:]))
    return " -> ".join(cycle) + "\n" + steps


def test_find_cycle_finds_a_cycle_and_only_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set(), "d": {"a", "c"}}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"x": {"y"}, "y": {"y"}}) == ["y", "y"]


def test_the_import_graph_sees_deferred_imports() -> None:
    """A function-level import is an edge (``secfl.cli`` defers ``secfl.engine`` to keep start-up fast)."""
    packages, _, where = _graphs()
    assert "secfl.engine" in packages["secfl.cli"]
    assert "secfl.fl" in packages["secfl.methods"]  # and module-level ones, of course
    assert where[("secfl.cli", "secfl.engine")].startswith("secfl/cli.py:")


def test_nested_subpackages_are_nodes_of_their_level() -> None:
    """``secfl.audit``'s subpackages are nodes beside each other, and their modules form their own level."""
    _, files, where = _graphs()
    assert _sibling_edge("secfl.audit.privacy.run", "secfl.audit.protocol.base") == (
        "secfl.audit.privacy", "secfl.audit.protocol")
    assert _sibling_edge("secfl.audit.protocol.cases", "secfl.audit.protocol") is None  # its own package's facade
    assert _sibling_edge("secfl.attacks", "secfl.attacks.alie") is None  # a facade re-exporting its modules
    assert "secfl.audit.protocol.base" in files["secfl.audit.protocol.harness"]
    assert where[("secfl.audit.protocol.harness", "secfl.audit.protocol.base")].startswith(
        "secfl/audit/protocol/harness.py:")


def test_no_import_cycle_between_packages() -> None:
    packages, _, where = _graphs()
    cycle = find_cycle(packages)
    assert cycle is None, "import cycle between secfl packages: " + _describe(cycle, where)


def test_no_import_cycle_between_the_modules_of_a_package() -> None:
    _, files, where = _graphs()
    cycle = find_cycle(files)
    assert cycle is None, "import cycle between modules of one package: " + _describe(cycle, where)


def test_import_secfl_does_not_import_tenseal() -> None:
    """TenSEAL (HE only) loads when an HE protocol is used, not with the package."""
    code = ("import sys, secfl, secfl.cli, secfl.registry; from secfl.protocols import HeSum; "
            "assert 'tenseal' not in sys.modules, 'tenseal imported'; "
            "HeSum(); assert 'tenseal' in sys.modules, 'HeSum() did not load tenseal'")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr



def test_argument_checks_live_in_one_bottom_module() -> None:
    """``secfl.checks`` imports only ``secfl.exceptions``, and no other module defines its own integer check.

    (``secfl.fl.builtin_data._check_number`` stays: it accepts only Python ints and floats, a stricter contract.)
    """
    modules = _modules()
    assert {target for target, _ in _imports("secfl.checks", modules["secfl.checks"], modules)} <= {"secfl.exceptions"}
    copies = [f"{path.relative_to(ROOT.parent)}:{node.lineno} defines {node.name}"
              for name, path in modules.items() if name != "secfl.checks"
              for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
              if isinstance(node, ast.FunctionDef) and node.name in {"check_int", "_check_int", "check_number"}]
    assert copies == [], copies
