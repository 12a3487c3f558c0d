"""No import cycle between the project's own modules.

Every module of lambda_src, container_src, local, stacks and tools is parsed (never imported); each ``import`` and
``from ... import`` that names one of the project's modules is an edge, wherever it stands (at the top, in a
function, in a ``try``), except under ``if TYPE_CHECKING:``, which never runs. A cycle works only as long as each
module's first import happens to come from the right side, and it makes neither module understandable alone.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Where a module's dotted name starts: the Lambda and container roots are on sys.path, the others are packages.
SOURCES = {ROOT / "lambda_src": ROOT / "lambda_src", ROOT / "container_src": ROOT / "container_src",
           ROOT / "local": ROOT, ROOT / "stacks": ROOT, ROOT / "tools": ROOT}


def modules() -> dict[str, Path]:
    found = {}
    for tree, base in SOURCES.items():
        for path in sorted(tree.rglob("*.py")):
            parts = path.relative_to(base).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _runs(node: ast.AST) -> Iterator[ast.AST]:
    """The nodes under ``node``, less the bodies of ``if TYPE_CHECKING:``."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and ast.unparse(child.test) in {"TYPE_CHECKING", "typing.TYPE_CHECKING"}:
            for other in child.orelse:
                yield other
                yield from _runs(other)
            continue
        yield child
        yield from _runs(child)


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The project's modules that module ``name`` imports."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in _runs(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[:len(package.split(".")) - node.level + 1] if node.level else []
            source = ".".join([*base, *([node.module] if node.module else [])])
            # ``from a import b``: the module a.b if there is one, else a name of a
            found.update(f"{source}.{alias.name}" if f"{source}.{alias.name}" in known else source for alias in node.names)
    return {module for module in found if module in known and module != name}


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """One cycle through each strongly connected component of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(edges[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(component)

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return [_a_cycle(component, edges) for component in components]


def _a_cycle(component: set[str], edges: dict[str, set[str]]) -> list[str]:
    """A shortest way from the component's first module back to itself, inside the component."""
    start = min(component)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for target in sorted(edges[node] & component):
                if target == start:
                    return [*paths[node], start]
                if target not in paths:
                    paths[target] = [*paths[node], target]
                    following.append(target)
        frontier = following
    raise AssertionError(f"{sorted(component)} is not strongly connected")


def test_the_walk_sees_the_project_and_its_function_level_imports():
    edges = graph()
    assert {"jobcore.service", "router.handler", "worker.poller", "local.serve", "stacks.service_stack",
            "tools.cost"} <= set(edges)
    assert "jobcore.model" in edges["jobcore.service"]
    # router.handler imports router.openapi inside the route that serves it, on first use
    assert "router.openapi" in edges["router.handler"]


def test_a_cycle_is_found_and_printed_as_a_path():
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"e"}}
    assert cycles(edges) == [["a", "b", "c", "a"]]


def test_no_module_of_the_project_imports_itself_through_others():
    found = cycles(graph())
    assert not found, "import cycles:\n" + "\n".join(" -> ".join(cycle) for cycle in found)
