"""The shape of the code, read from its source (AST, no imports): import floors without circles, small files and
functions, and one home for each constant (docs/architecture.md, "Layers" and "Decisions and where they live")."""
from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("emavfi", "nodes")
MAX_FILE_LINES, MAX_FUNCTION_LINES = 400, 60

# Each module may import modules on its own floor or below, never above (docs/architecture.md, "Layers").
FLOORS = {
    0: "emavfi emavfi.errors emavfi.config emavfi.files emavfi.plans emavfi.schedule emavfi.ranges emavfi.hdr "
       "emavfi.memory",
    1: "emavfi.model emavfi.model.* emavfi.optimize emavfi.loss emavfi.devices emavfi.weights emavfi.hub_errors "
       "emavfi.hub emavfi.local_weights emavfi.inference",
    2: "emavfi.settings",
    3: "emavfi.cuts emavfi.media emavfi.media.* emavfi.outputs emavfi.source_window emavfi.runner emavfi.engine",
    4: "emavfi.render emavfi.distributed emavfi.ray_cluster",
    5: "emavfi.cli emavfi.__main__ nodes nodes.*",
}


def _modules() -> dict[str, tuple[Path, ast.Module]]:
    """Dotted module name -> (file, parsed source) for every module of emavfi/ and nodes/."""
    found = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = (path, ast.parse(path.read_text(encoding="utf-8"), str(path)))
    return found


MODULES = _modules()


def _imported(module: str, node: ast.Import | ast.ImportFrom) -> set[str]:
    """Our modules an import statement in `module` loads (`from . import x` names the submodule x)."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:  # relative: from the module's package, one level up per extra dot
            package = module.split(".") if MODULES[module][0].name == "__init__.py" else module.split(".")[:-1]
            base = ".".join(package[:len(package) - node.level + 1] + ([node.module] if node.module else []))
        names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]
    ours = set()
    for name in names:
        while name not in MODULES and "." in name:
            name = name.rsplit(".", 1)[0]
        if name in MODULES and name != module:
            ours.add(name)
    return ours


def import_graph() -> dict[str, set[str]]:
    """Module -> the modules it imports anywhere: at the top, inside functions, or for type checking only."""
    return {module: set().union(*(_imported(module, node) for node in ast.walk(tree)
                                  if isinstance(node, (ast.Import, ast.ImportFrom))))
            for module, (_, tree) in MODULES.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for target in sorted(graph[module]):
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = []
            while not component or component[-1] != module:
                component.append(stack.pop())
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return found


def floor_of(module: str) -> int | None:
    """The floor FLOORS gives a module (an entry "pkg.*" covers pkg's submodules), or None."""
    for floor, names in FLOORS.items():
        for name in names.split():
            if module == name or (name.endswith(".*") and module.startswith(name[:-1])):
                return floor
    return None


def test_the_import_graph_is_read_from_the_source():
    graph = import_graph()
    assert {"emavfi.settings", "emavfi.schedule"} <= graph["emavfi.cli"]
    assert "emavfi.plans" in graph["emavfi.schedule"]
    assert "emavfi.weights" in graph["emavfi.settings"]  # an import inside a function counts
    assert "emavfi.settings" in graph["nodes.spec"]  # `from ..emavfi.settings import ...` in nodes/
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_circles():
    assert _cycles(import_graph()) == []


def test_every_module_is_on_a_floor_and_imports_nothing_above_it():
    graph = import_graph()
    unplaced = sorted(module for module in graph if floor_of(module) is None)
    assert not unplaced, (f"{unplaced} are on no floor: add them to FLOORS here and to docs/architecture.md's "
                          "layer diagram")
    upward = [f"{module} (floor {floor_of(module)}) imports {target} (floor {floor_of(target)})"
              for module, targets in sorted(graph.items()) for target in sorted(targets)
              if floor_of(target) > floor_of(module)]
    assert upward == []


def test_no_file_over_400_lines_and_no_function_over_60():
    too_long = []
    for path, tree in MODULES.values():
        where = path.relative_to(REPO)
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > MAX_FILE_LINES:
            too_long.append(f"{where}: {lines} lines")
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    too_long.append(f"{where}:{node.lineno} {node.name}(): {length} lines")
    assert too_long == []


def _module_constants() -> dict[str, list[str]]:
    """UPPER_CASE name -> the modules that assign it at module level."""
    homes = defaultdict(list)
    for module, (_, tree) in MODULES.items():
        for node in tree.body:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target] \
                if isinstance(node, ast.AnnAssign) else []
            for target in targets:
                if isinstance(target, ast.Name) and target.id.lstrip("_").isupper():
                    homes[target.id].append(module)
    return homes


def test_each_constant_has_one_home():
    homes = _module_constants()
    assert homes["DEFAULT_VARIANT"] == ["emavfi.config"] and homes["VIDEO_EXTENSIONS"] == ["emavfi.media.base"]
    assert {name: where for name, where in homes.items() if len(where) > 1} == {}


def test_one_helper_per_shared_job():
    defined = defaultdict(list)
    for module, (_, tree) in MODULES.items():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                defined[node.name].append(module)
    assert defined["one_line"] == ["emavfi.errors"]
    assert not any(defined[name] for name in ("_one_line", "_first_line", "first_line", "resolve_device",
                                                "resolve_dtype", "_nice_rate", "nearest_dyadic", "expected_shapes"))
