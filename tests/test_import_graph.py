"""The import graph of `orca_utils`, read from the source with `ast` (nothing is imported).

Two rules keep the package walkable:
- no module imports another module's `_private` name (`from .x import _name`, or `x._name` on an imported module);
  a package's `__init__` re-exports public names only. What two modules share is public in the module that owns it
  (e.g. `orca_utils.teacher.protocol` for the teacher client and its Batch mode);
- no import cycle among module-level imports (imports inside functions are lazy and may point anywhere).
Importing `a.b.c` also runs `a/__init__` and `a/b/__init__`, so those count as edges too.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "orca_utils"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE

# Private imports left in modules that another piece of work is rewriting at the same time; each is to be fixed
# there (make the name public where it is defined) and then removed from this list. The test fails when an entry
# no longer occurs, so the list only shrinks. Format: (importing module, name, module it comes from).
KNOWN_PRIVATE: set[tuple[str, str, str]] = set()


@dataclass(frozen=True)
class Edge:
    source: str          # importing module
    target: str          # imported module (resolved; a package means its __init__)
    names: tuple         # names taken from the target (`from target import names`); () for `import target`
    line: int
    module_level: bool


def module_files(root: Path = ROOT) -> dict[str, Path]:
    """{dotted module name: file} for every module of the package (`pkg/__init__.py` is `pkg`)."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = (PACKAGE,) + path.relative_to(root).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _is_package(module: str, modules: dict[str, Path]) -> bool:
    return modules[module].name == "__init__.py"


def _resolve_base(module: str, level: int, target: str | None, modules: dict[str, Path]) -> str:
    """The absolute module named by a `from <level dots><target> import ...` inside `module`."""
    if level == 0:
        return target or ""
    parts = module.split(".")
    if not _is_package(module, modules):
        parts = parts[:-1]                       # a plain module's relative imports start at its package
    parts = parts[: len(parts) - (level - 1)]
    return ".".join(parts + ([target] if target else []))


class _Visitor(ast.NodeVisitor):
    def __init__(self, module: str, modules: dict[str, Path]):
        self.module, self.modules = module, modules
        self.edges: list[Edge] = []
        self.module_aliases: dict[str, str] = {}     # local name -> orca_utils module it is bound to
        self.private_attrs: list[tuple[int, str, str]] = []
        self.depth = 0                               # >0 inside a function body

    def _ours(self, name: str) -> bool:
        return name == PACKAGE or name.startswith(PACKAGE + ".")

    def _add(self, target: str, names: tuple, line: int) -> None:
        self.edges.append(Edge(self.module, target, names, line, self.depth == 0))

    def visit_FunctionDef(self, node):
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_AsyncFunctionDef = visit_FunctionDef
    visit_Lambda = visit_FunctionDef

    def visit_If(self, node):
        test = node.test
        name = test.id if isinstance(test, ast.Name) else test.attr if isinstance(test, ast.Attribute) else ""
        if name == "TYPE_CHECKING":                  # never runs: not an import-time edge
            self.depth += 1
            for child in node.body:
                self.visit(child)
            self.depth -= 1
            for child in node.orelse:
                self.visit(child)
            return
        self.generic_visit(node)

    def visit_Import(self, node):
        for alias in node.names:
            if self._ours(alias.name) and alias.name in self.modules:
                self._add(alias.name, (), node.lineno)
                if alias.asname:
                    self.module_aliases[alias.asname] = alias.name

    def visit_ImportFrom(self, node):
        base = _resolve_base(self.module, node.level, node.module, self.modules)
        if not self._ours(base):
            return
        names = []
        for alias in node.names:
            sub = f"{base}.{alias.name}"
            if sub in self.modules:                  # `from pkg import submodule`
                self._add(sub, (), node.lineno)
                self.module_aliases[alias.asname or alias.name] = sub
            else:
                names.append(alias.name)
        if names or base in self.modules:
            self._add(base, tuple(names), node.lineno)

    def visit_Attribute(self, node):
        if isinstance(node.value, ast.Name) and node.value.id in self.module_aliases and _private(node.attr):
            self.private_attrs.append((node.lineno, self.module_aliases[node.value.id], node.attr))
        self.generic_visit(node)


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def import_graph(root: Path = ROOT) -> tuple[list[Edge], list[str]]:
    """(every import edge between modules of the package, every `module._private` attribute use as a message)."""
    modules = module_files(root)
    edges, attrs = [], []
    for module, path in modules.items():
        visitor = _Visitor(module, modules)
        visitor.visit(ast.parse(path.read_text(), str(path)))
        edges += visitor.edges
        attrs += [f"{module}:{line} uses {target}.{name}" for line, target, name in visitor.private_attrs
                  if target != module]
    return edges, attrs


def private_imports(edges: list[Edge], known: set = frozenset()) -> list[str]:
    """`module:line imports _a, _b from other`, for each import of another module's private names not in `known`."""
    out = []
    for e in edges:
        names = [n for n in e.names if _private(n) and (e.source, n, e.target) not in known]
        if e.target != e.source and names:
            out.append(f"{e.source}:{e.line} imports {', '.join(names)} from {e.target}")
    return out


def module_level_graph(edges: list[Edge], modules: dict[str, Path]) -> dict[str, set[str]]:
    """source -> targets of its module-level imports, with the packages a target's import runs first."""
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for e in edges:
        if not e.module_level or e.target == e.source:
            continue
        parts = e.target.split(".")
        for i in range(1, len(parts) + 1):
            target = ".".join(parts[:i])
            # A package the importer lives in is already being imported: not a new edge.
            if target in modules and target != e.source and not e.source.startswith(target + "."):
                graph[e.source].add(target)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a path [a, b, ..., a], or None (iterative DFS, deterministic order)."""
    state: dict[str, int] = {}                       # 1: on the stack, 2: done
    for start in sorted(graph):
        if state.get(start):
            continue
        stack = [(start, iter(sorted(graph[start])))]
        path = [start]
        state[start] = 1
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                state[node] = 2
                stack.pop()
                path.pop()
            elif state.get(child) == 1:
                return path[path.index(child):] + [child]
            elif not state.get(child):
                state[child] = 1
                stack.append((child, iter(sorted(graph.get(child, ())))))
                path.append(child)
    return None


def test_the_graph_is_read():
    modules = module_files()
    edges, _ = import_graph()
    assert len(modules) > 20
    # Sanity: relative and function-level imports are both seen.
    assert any(e.module_level for e in edges) and any(not e.module_level for e in edges)
    assert all(e.target in modules for e in edges)


def test_no_module_imports_another_modules_private_names():
    edges, attrs = import_graph()
    found = private_imports(edges, KNOWN_PRIVATE) + attrs
    assert not found, ("private names used across modules (make them public in the module that owns them):\n"
                       + "\n".join(found))
    seen = {(e.source, n, e.target) for e in edges for n in e.names}
    assert not KNOWN_PRIVATE - seen, f"fixed: remove from KNOWN_PRIVATE: {sorted(KNOWN_PRIVATE - seen)}"


def test_no_import_cycle_at_module_level():
    edges, _ = import_graph()
    cycle = find_cycle(module_level_graph(edges, module_files()))
    assert cycle is None, "import cycle at module level: " + " -> ".join(cycle)


def test_the_checks_catch_what_they_are_for(tmp_path):
    """A private import (also function-level) and a module-level cycle through a package's __init__ are found."""
    pkg = tmp_path / PACKAGE
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from .sub import thing\n\ndef f():\n    from .b import _helper\n")
    (pkg / "b.py").write_text("_helper = 1\n")
    (pkg / "sub" / "__init__.py").write_text("from .inner import thing\n")
    (pkg / "sub" / "inner.py").write_text("from .. import a\nthing = 1\n")
    edges, _ = import_graph(pkg)
    assert private_imports(edges) == [f"{PACKAGE}.a:4 imports _helper from {PACKAGE}.b"]
    cycle = find_cycle(module_level_graph(edges, module_files(pkg)))
    assert cycle is not None and cycle[0] == cycle[-1] and f"{PACKAGE}.a" in cycle
