"""No import cycle in docktap: each module can be read, and loaded, after what it uses.

The graph is built from the source with ast, every import counted: at the top, inside
functions (loaded late, but a cycle all the same) and under TYPE_CHECKING.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"
PACKAGE = SRC / "docktap"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, name: str, modules: set[str]) -> set[str]:
    """The docktap modules `path` imports; `from package import module` counts the module."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.add(candidate if candidate in modules else base)
    return {m for m in found if m in modules and m != name}


def import_graph() -> dict[str, set[str]]:
    paths = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    modules = set(paths)
    # A package's __init__ runs before its modules, but that is no edge here: docktap/__init__
    # re-exports the reader, and a module of the reader's that imported `docktap` back would
    # show up as the cycle it is through its explicit import.
    return {name: _imports(path, name, modules) for name, path in paths.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle through each strongly connected set of modules (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_graph_sees_the_imports_it_must() -> None:
    graph = import_graph()
    assert "docktap.recording.session" in graph["docktap.cli"]
    assert "docktap.replay.session" in graph["docktap.cli"]  # inside a function
    assert "docktap.tap" in graph["docktap.relay"]
    assert "docktap.recording.engine" in graph["docktap.recording.child"]  # inside a function
    assert "docktap" in graph["docktap.recording.engine"]  # `from docktap import __version__`
    assert "docktap.routes" in graph["docktap.capture.format"]  # `from docktap import routes`


def test_docktap_has_no_import_cycle() -> None:
    assert cycles(import_graph()) == []


def test_the_recording_child_does_not_load_the_command_line() -> None:
    graph = import_graph()
    seen: set[str] = set()
    todo = ["docktap.recording.child"]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(graph[name])
    assert "docktap.cli" not in seen
    assert "docktap.relay" not in seen
