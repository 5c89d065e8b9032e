"""The import graph of `orca_utils`, read from the source with `ast` (nothing is imported).

Two rules keep the package walkable:
- no module imports another module's `_private` name (`from .x import _name`, or `x._name` on an imported module);
  a package's `__init__` re-exports public names only. What two modules share is public in the module that owns it
  (e.g. `orca_utils.teacher.protocol` for the teacher client and its Batch mode);
- no import cycle, counting imports inside functions too. A function-level import of one of our modules is still an
  arrow: a lazy import is for heavy third-party packages (torch, transformers, vllm, matplotlib, openai, fastapi,
  datasets, trl, accelerate, pandas, pyarrow), which are not modules of ours and so never edges here.
Importing `a.b.c` also runs `a/__init__` and `a/b/__init__`, so those count as edges too.

Floors (the README's "Architecture" section; `FLOORS` below is the same map as data): tools, drivers (one per
notebook, `DRIVERS`), engines, infrastructure. Every arrow (module- or function-level) points down or sideways
within a floor, and no driver imports another driver (a driver that is a package, `sampling/`, may import its own
modules). The re-export shims (`SHIMS`) are exempt as importers; a module of ours not in the map fails until it is
given a floor.

Layering: `orca_utils.backends` (how text comes out of a model) builds on the `orca_utils.chat_api` leaf (model
registry, wire format) and on shared infrastructure, never on the teacher client, evaluation or a notebook driver;
the leaf imports nothing else of ours.
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

# The floors, top to bottom. A name is a module or a package (then everything under it, unless a longer name in the
# map says otherwise); the longest name that matches a module gives its floor.
TOOLS, DRIVERS_FLOOR, ENGINES, INFRASTRUCTURE = 3, 2, 1, 0
FLOOR_NAMES = {TOOLS: "tools", DRIVERS_FLOOR: "drivers", ENGINES: "engines", INFRASTRUCTURE: "infrastructure"}
# One driver per notebook, named in the README's Layout table; a package driver owns the modules under it.
DRIVERS = ("sampling", "augmentation", "packing_analysis", "training", "evaluation.zero_shot", "open_ended", "safety",
           "experiment.explanation_vs_answer", "report")
FLOORS: dict[str, int] = {
    # tools: commands and checks around the notebooks
    "__main__": TOOLS, "cli": TOOLS, "runner": TOOLS, "preflight": TOOLS, "projections": TOOLS,
    "teacher_servers": TOOLS, "evaluation.score_cli": TOOLS,
    # drivers
    **{name: DRIVERS_FLOOR for name in DRIVERS},
    # engines: how text comes out of a model, the teacher client, evaluation, judging, training, packing, 09's parts
    "backends": ENGINES, "teacher": ENGINES, "evaluation": ENGINES, "judge": ENGINES, "train": ENGINES,
    "train_data": ENGINES, "train_report": ENGINES, "fsdp_cpu": ENGINES, "packing": ENGINES, "flan": ENGINES,
    "experiment": ENGINES, "generate": ENGINES, "serving": ENGINES,
    "funnel.checks": ENGINES, "funnel.dedup": ENGINES, "funnel.core": ENGINES,   # 02's data funnel
    # infrastructure: params, files between notebooks, data and model specs, tokenization, the paper's numbers
    "": INFRASTRUCTURE,                          # the package's own __init__ (a version string)
    "config": INFRASTRUCTURE, "schemas": INFRASTRUCTURE, "contracts": INFRASTRUCTURE, "runs": INFRASTRUCTURE,
    "provenance": INFRASTRUCTURE, "data": INFRASTRUCTURE, "models": INFRASTRUCTURE, "tokens": INFRASTRUCTURE,
    "chat_api": INFRASTRUCTURE, "reference": INFRASTRUCTURE, "figure_style": INFRASTRUCTURE, "paths": INFRASTRUCTURE,
    "system_messages": INFRASTRUCTURE, "strategies": INFRASTRUCTURE,
    "funnel": INFRASTRUCTURE,                    # its __init__ (imports nothing) and params (read by schemas)
}
# Re-export shims kept for one release: their own imports are exempt (they point at where the names now live).
SHIMS = ("generate", "serving", "teacher.models", "teacher.protocol", "teacher.local_server",
         "teacher.openai_emulation")

BACKENDS = f"{PACKAGE}.backends"
LEAF = f"{PACKAGE}.chat_api"
# What backends/ must never reach (directly or through anything it imports): the teacher client, evaluation, the
# notebook drivers and the tools, and the re-export shims (which point back into the teacher).
NOT_BELOW_BACKENDS = ("teacher", "evaluation", "experiment", "judge", "safety", "open_ended", "sampling",
                      "augmentation", "packing_analysis", "train", "report", "cli", "runner", "preflight",
                      "teacher_servers", "generate", "serving")
# The modules this layering is about: no cycle may run through any of them.
LAYERED = (BACKENDS, LEAF, f"{PACKAGE}.teacher", f"{PACKAGE}.generate", f"{PACKAGE}.serving",
           f"{PACKAGE}.teacher_servers", f"{PACKAGE}.judge", f"{PACKAGE}.safety", f"{PACKAGE}.open_ended",
           f"{PACKAGE}.experiment.symbolic_teacher", f"{PACKAGE}.schemas")


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


def module_level_graph(edges: list[Edge], modules: dict[str, Path], lazy: bool = False) -> dict[str, set[str]]:
    """source -> targets of its module-level imports (`lazy`: also those inside functions), with the packages a
    target's import runs first."""
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for e in edges:
        if (not e.module_level and not lazy) or e.target == e.source:
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


def cycles(graph: dict[str, set[str]]) -> set[frozenset[str]]:
    """Every set of modules that import each other round a cycle (strongly connected, more than one module)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: set[frozenset[str]] = set()
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                members = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    members.add(member)
                    if member == node:
                        break
                if len(members) > 1:
                    found.add(frozenset(members))
    return found


def reachable(graph: dict[str, set[str]], prefix: str) -> set[str]:
    """Every module that importing any module under `prefix` may import (transitively, lazy imports included)."""
    seen: set[str] = set()
    todo = [m for m in graph if m == prefix or m.startswith(prefix + ".")]
    while todo:
        for target in graph[todo.pop()]:
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def _under(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


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


def test_no_cycle_when_function_level_imports_count():
    edges, _ = import_graph()
    found = sorted(sorted(c) for c in cycles(module_level_graph(edges, module_files(), lazy=True)))
    assert not found, f"import cycles (function-level imports count): {found}"


def _short(module: str) -> str:
    return module[len(PACKAGE) + 1:] if module.startswith(PACKAGE + ".") else ""


def _longest(module: str, names) -> str | None:
    short = _short(module)
    hits = [n for n in names if n == "" and short == "" or n and (short == n or short.startswith(n + "."))]
    return max(hits, key=len) if hits else None


def floor_of(module: str) -> int | None:
    """The module's floor from `FLOORS` (None: not in the map)."""
    name = _longest(module, FLOORS)
    return None if name is None else FLOORS[name]


def driver_of(module: str) -> str | None:
    """The driver a module belongs to (itself, or the package driver above it), None for a module of another floor."""
    name = _longest(module, DRIVERS)
    return name if name is not None and floor_of(module) == DRIVERS_FLOOR else None


def floor_violations(edges: list[Edge], modules: dict[str, Path]) -> list[str]:
    """`source:line (floor) -> target (floor)` for each arrow that points up or from one driver to another, and one
    line per module without a floor. Every edge counts, function-level ones too; importing `a.b` also runs `a`."""
    out = [f"{m}: no floor (add it to FLOORS)" for m in modules if floor_of(m) is None]
    for e in edges:
        if e.source == e.target or _longest(e.source, SHIMS) is not None:
            continue
        parts = e.target.split(".")
        for target in {".".join(parts[:k]) for k in range(2, len(parts) + 1)}:
            if target == e.source or _short(e.source).startswith(_short(target) + "."):
                continue                         # a module's own package __init__ runs first: not an arrow up
            src, dst = floor_of(e.source), floor_of(target)
            if src is None or dst is None:
                continue
            where = f"{e.source}:{e.line} ({FLOOR_NAMES[src]}) -> {target} ({FLOOR_NAMES[dst]})"
            if dst > src:
                out.append(where + ": points up")
            elif src == dst == DRIVERS_FLOOR and driver_of(e.source) != driver_of(target):
                out.append(where + ": one driver imports another")
    return sorted(set(out))


def test_every_arrow_points_down_and_no_driver_imports_another():
    edges, _ = import_graph()
    modules = module_files()
    found = floor_violations(edges, modules)
    assert not found, "arrows against the floors (README, Architecture):\n" + "\n".join(found)
    for name in DRIVERS:
        assert f"{PACKAGE}.{name}" in modules, f"driver {name} is not a module of {PACKAGE}"


def test_importing_the_sampling_driver_loads_no_evaluation_driver():
    """01's driver (its contamination check included) reads the evaluation sets, never 05-08's drivers or judging."""
    import subprocess
    import sys

    code = ("import sys, orca_utils.sampling, orca_utils.sampling.contamination\n"
            "print(' '.join(sorted(m for m in sys.modules if m.startswith('orca_utils'))))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            cwd=ROOT.parent).stdout.split()
    assert f"{PACKAGE}.sampling" in loaded
    bad = [m for m in loaded if any(_under(m, f"{PACKAGE}.{name}") for name in
                                    ("evaluation.zero_shot", "open_ended", "safety", "judge"))]
    assert not bad, f"import orca_utils.sampling loads {bad}"


def test_no_cycle_runs_through_the_backends_the_leaf_or_the_teacher():
    edges, _ = import_graph()
    found = cycles(module_level_graph(edges, module_files(), lazy=True))
    through = sorted(sorted(c) for c in found if any(_under(m, p) for m in c for p in LAYERED))
    assert not through, f"cycles through the backends, the chat_api leaf or the teacher: {through}"


def test_backends_never_reach_the_teacher_evaluation_or_a_driver():
    edges, _ = import_graph()
    modules = module_files()
    reach = reachable(module_level_graph(edges, modules, lazy=True), BACKENDS)
    bad = sorted(m for m in reach if any(_under(m, f"{PACKAGE}.{name}") for name in NOT_BELOW_BACKENDS))
    direct = sorted(f"{e.source}:{e.line} -> {e.target}" for e in edges if _under(e.source, BACKENDS)
                    and any(_under(e.target, f"{PACKAGE}.{name}") for name in NOT_BELOW_BACKENDS))
    assert not bad, f"orca_utils.backends reaches {bad}; direct imports: {direct}"
    assert any(_under(m, LEAF) for m in reach), "backends/ builds on the chat_api leaf"


def test_the_chat_api_leaf_imports_nothing_else_of_ours():
    edges, _ = import_graph()
    out = sorted(f"{e.source}:{e.line} -> {e.target}" for e in edges
                 if _under(e.source, LEAF) and not _under(e.target, LEAF))
    assert not out, f"the leaf orca_utils.chat_api imports other modules of ours: {out}"


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
    # A cycle closed only by a function-level import is invisible at module level and found with `lazy`.
    (pkg / "c.py").write_text("from . import d\n")
    (pkg / "d.py").write_text("def f():\n    from . import c\n    import torch\n")
    edges, _ = import_graph(pkg)
    lazy = cycles(module_level_graph(edges, module_files(pkg), lazy=True))
    assert frozenset({f"{PACKAGE}.c", f"{PACKAGE}.d"}) in lazy
    assert frozenset({f"{PACKAGE}.c", f"{PACKAGE}.d"}) not in cycles(module_level_graph(edges, module_files(pkg)))
    assert reachable(module_level_graph(edges, module_files(pkg), lazy=True), f"{PACKAGE}.d") >= {f"{PACKAGE}.c"}


def test_the_floor_check_catches_arrows_up_between_drivers_and_unmapped_modules(tmp_path):
    pkg = tmp_path / PACKAGE
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "safety.py").write_text("from .paths import X\n")                     # driver -> infrastructure: fine
    (pkg / "paths.py").write_text("X = 1\n")
    (pkg / "judge.py").write_text("def f():\n    from .safety import g\n")       # engine -> driver, function-level
    (pkg / "open_ended.py").write_text("from . import safety\n")                 # driver -> driver
    (pkg / "mystery.py").write_text("")
    (pkg / "generate.py").write_text("from .safety import g\n")                  # a shim: exempt
    edges, _ = import_graph(pkg)
    found = floor_violations(edges, module_files(pkg))
    assert found == [f"{PACKAGE}.judge:2 (engines) -> {PACKAGE}.safety (drivers): points up",
                     f"{PACKAGE}.mystery: no floor (add it to FLOORS)",
                     f"{PACKAGE}.open_ended:1 (drivers) -> {PACKAGE}.safety (drivers): one driver imports another"]
