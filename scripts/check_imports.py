"""Fail on an import cycle in a package, or on a pure subpackage importing too much.

    python scripts/check_imports.py [--root src] [--package popbox] [--pure popbox.protocol]

Three rules, each reported with the file and line of every import involved:

* no cycle among the package's modules;
* no cycle among its subpackages and top-level modules (``server/`` importing
  ``delivery/`` and ``delivery/`` importing ``server/`` is one layer in two folders, even
  when no two modules import each other);
* a pure subpackage (``--pure``, repeatable; default the sans-IO ``protocol`` and
  ``ldapwire``) imports only the standard library and itself.

Every import statement counts, wherever it stands: at module level, under
``if TYPE_CHECKING:`` and inside a function.  A type-only import is still a dependency:
the module's signatures are written in the other module's types, so neither can be read,
type-checked or moved without the other (the protocol core naming a store type is the
case in point), and ``typing.get_type_hints`` imports it after all.  A function-level
import only postpones a cycle to the first call.  So neither may hide one: a cycle is
broken by moving the shared name down into a leaf module.  The one edge not counted is
the implicit one from ``a.b.c`` to its parent package ``a.b``: Python runs
``a/b/__init__.py`` first, but a package that re-exports its submodules would otherwise
be a cycle by construction.

Written over ``ast`` rather than with import-linter: the rules fit in a page, and
import-linter would be one more CI dependency to learn and pin for them.
"""

from __future__ import annotations

import argparse
import ast
import sys
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Edge", "find_cycles", "impure_imports", "main", "module_edges", "package_edges"]


@dataclass(frozen=True, slots=True)
class Edge:
    """``source`` depends on ``target`` by the import of ``imported`` at ``path:line``.

    Between modules ``imported`` is ``target``; between packages it is the module.
    """

    source: str
    target: str
    path: Path
    line: int
    imported: str


def module_names(root: Path, package: str) -> dict[str, Path]:
    """Dotted module name → file, for every ``.py`` file of ``package`` under ``root``."""
    names: dict[str, Path] = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def _imported(node: ast.Import | ast.ImportFrom, module: str, *, is_package: bool) -> list[str]:
    """The dotted names one import statement names (a ``from`` import: base and base.name)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        # Relative: level 1 is the module's own package (the module itself for __init__).
        anchor = module.split(".")
        drop = node.level - 1 if is_package else node.level
        anchor = anchor[: len(anchor) - drop] if drop else anchor
        base = ".".join([*anchor, base] if base else anchor)
    return [base, *(f"{base}.{alias.name}" for alias in node.names)]


def _internal_targets(
    node: ast.Import | ast.ImportFrom, names: list[str], module: str, modules: dict[str, Path]
) -> list[str]:
    """The package's modules one import statement depends on.

    ``from a import b`` depends on module ``a.b`` when there is one, else on ``a`` (b is a
    name defined there); and on ``a`` itself unless ``a`` is the importer's own parent
    package, whose ``__init__`` runs first anyway (the implicit edge not counted).
    """
    if isinstance(node, ast.Import):
        found = names
    else:
        base, members = names[0], names[1:]
        found = [name if name in modules else base for name in members]
        if not module.startswith(f"{base}."):
            found.insert(0, base)
    return [name for name in dict.fromkeys(found) if name in modules and name != module]


def module_edges(root: Path, package: str) -> tuple[dict[str, Path], list[Edge], list[Edge]]:
    """(modules, edges between them, every import of any name) for ``package``."""
    modules = module_names(root, package)
    internal: list[Edge] = []
    every: list[Edge] = []
    for module, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        is_package = path.name == "__init__.py"
        for node in ast.walk(tree):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            names = _imported(node, module, is_package=is_package)
            # What the statement loads for certain: each ``import x.y``, or a from-import's base.
            loaded = names if isinstance(node, ast.Import) else names[:1]
            every.extend(Edge(module, name, path, node.lineno, name) for name in loaded)
            internal.extend(
                Edge(module, name, path, node.lineno, name)
                for name in _internal_targets(node, names, module, modules)
            )
    every.sort(key=lambda edge: (edge.path, edge.line))
    return modules, internal, every


def package_edges(internal: list[Edge], package: str) -> list[Edge]:
    """The module edges seen between ``package``'s subpackages (and top-level modules).

    ``a.server.accept`` belongs to ``a.server``; ``a.config`` to itself.  Two subpackages
    that import each other are one layer in two folders, however their modules line up.
    """
    depth = package.count(".") + 2

    def unit(module: str) -> str:
        return ".".join(module.split(".")[:depth])

    return [
        Edge(unit(edge.source), unit(edge.target), edge.path, edge.line, edge.target)
        for edge in internal
        if unit(edge.source) != unit(edge.target)
    ]


def find_cycles(edges: list[Edge]) -> list[tuple[list[str], list[Edge]]]:
    """Each strongly connected group of modules, with one cycle through it (its edges)."""
    graph: dict[str, dict[str, Edge]] = {}
    for edge in edges:
        graph.setdefault(edge.source, {}).setdefault(edge.target, edge)
        graph.setdefault(edge.target, {})
    return [(group, _cycle_through(group, graph)) for group in _groups(graph)]


def _groups(graph: dict[str, dict[str, Edge]]) -> list[list[str]]:
    """Kosaraju's algorithm: finish order on the graph, then reach back on its reverse.

    Iterative, so that a long import chain cannot hit the recursion limit.
    """
    finished: list[str] = []
    seen: set[str] = set()
    for start in sorted(graph):
        if start in seen:
            continue
        seen.add(start)
        stack = [(start, iter(sorted(graph[start])))]
        while stack:
            node, targets = stack[-1]
            target = next((t for t in targets if t not in seen), None)
            if target is None:
                stack.pop()
                finished.append(node)
            else:
                seen.add(target)
                stack.append((target, iter(sorted(graph[target]))))
    reverse: dict[str, set[str]] = {node: set() for node in graph}
    for node, targets in graph.items():
        for target in targets:
            reverse[target].add(node)
    taken: set[str] = set()
    groups = []
    for node in reversed(finished):
        if node not in taken:
            group = _reach(node, reverse, taken)
            if len(group) > 1:
                groups.append(sorted(group))
    return sorted(groups)


def _reach(start: str, graph: dict[str, set[str]], taken: set[str]) -> list[str]:
    """Every node reachable from ``start`` not yet ``taken`` (and takes them)."""
    taken.add(start)
    found, stack = [start], [start]
    while stack:
        for target in graph[stack.pop()] - taken:
            taken.add(target)
            found.append(target)
            stack.append(target)
    return found


def _cycle_through(group: list[str], graph: dict[str, dict[str, Edge]]) -> list[Edge]:
    """A shortest cycle from the group's first module back to itself, inside the group."""
    members = set(group)
    start = group[0]
    came_by: dict[str, Edge] = {}
    frontier = [start]
    while frontier:
        following: list[str] = []
        for node in frontier:
            for target, edge in sorted(graph[node].items()):
                if target not in members or target in came_by:
                    continue
                came_by[target] = edge
                if target == start:
                    return _path_back(start, came_by)
                following.append(target)
        frontier = following
    raise AssertionError(f"no cycle through {start} in its own group")


def _path_back(start: str, came_by: dict[str, Edge]) -> list[Edge]:
    path = [came_by[start]]
    while path[-1].source != start:
        path.append(came_by[path[-1].source])
    return path[::-1]


def impure_imports(every: list[Edge], pure: str) -> list[Edge]:
    """Imports by modules of ``pure`` of anything but the standard library and ``pure``."""
    allowed = sys.stdlib_module_names
    return [
        edge
        for edge in every
        if (edge.source == pure or edge.source.startswith(f"{pure}."))
        and not (edge.target == pure or edge.target.startswith(f"{pure}."))
        and edge.target.split(".")[0] not in allowed
    ]


def problems(root: Path, package: str, pure: list[str]) -> list[str]:
    """Each cycle and each impure import, one readable paragraph per problem."""
    _, internal, every = module_edges(root, package)
    found = []
    for group, cycle in find_cycles(internal):
        found.append(f"import cycle among {', '.join(group)}; one of them: {_chain(cycle)}")
    for group, cycle in find_cycles(package_edges(internal, package)):
        found.append(f"package cycle among {', '.join(group)}; one of them: {_chain(cycle)}")
    for name in pure:
        found.extend(
            f"{edge.path}:{edge.line}: {name} must import only the standard library and "
            f"itself, not {edge.target}"
            for edge in impure_imports(every, name)
        )
    return found


def _chain(cycle: list[Edge]) -> str:
    names = " -> ".join([cycle[0].source, *(edge.target for edge in cycle)])
    return names + "".join(
        f"\n    {edge.path}:{edge.line}: imports {edge.imported}" for edge in cycle
    )


_SANS_IO = ("protocol", "ldapwire")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--root", type=Path, default=Path("src"))
    parser.add_argument("--package", default="popbox")
    parser.add_argument("--pure", action="append", default=[], metavar="PACKAGE")
    args = parser.parse_args(argv)
    pure = args.pure or [f"{args.package}.{name}" for name in _SANS_IO]
    found = problems(args.root, args.package, pure)
    for problem in found:
        print(problem)
    if found:
        print(f"check_imports: {len(found)} problem(s)")
        return 1
    print(f"check_imports: no import cycle in {args.package}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
