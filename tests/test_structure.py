"""The shape of the code, read from its source (AST, no imports): import floors without circles, small files and
functions, and one home for each constant (docs/architecture.md, "Layers" and "Decisions and where they live")."""
from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("emavfi", "nodes")
MAX_FILE_LINES, MAX_FUNCTION_LINES = 400, 60

# Each module may import modules on its own floor or below, never above (docs/architecture.md, "Layers"). A module
# named nowhere here is a tool on the top floor (a command, an evaluation or training package): nothing below may
# import it until it is given its floor.
FLOORS = {
    0: "emavfi emavfi.errors emavfi.config emavfi.files emavfi.plans emavfi.schedule emavfi.ranges emavfi.hdr "
       "emavfi.memory emavfi.sequences emavfi.buffers",
    1: "emavfi.model emavfi.model.* emavfi.optimize emavfi.loss emavfi.devices emavfi.weights emavfi.hub_errors "
       "emavfi.hub emavfi.local_weights emavfi.inference emavfi.inference_checks emavfi.backends emavfi.backends.* "
       "emavfi.host_copies",
    2: "emavfi.settings emavfi.loading",
    3: "emavfi.cuts emavfi.dedupe emavfi.media emavfi.media.* emavfi.outputs emavfi.preflight emavfi.provenance "
       "emavfi.source_window emavfi.runner emavfi.engine emavfi.clips emavfi.protect emavfi.overlays "
       "emavfi.overlay_motion emavfi.overlay_masks emavfi.mask_files emavfi.pipeline",
    4: "emavfi.render emavfi.distributed emavfi.ray_cluster emavfi.ray_private",
    5: "emavfi.cli emavfi.__main__ emavfi.progress nodes nodes.*",
}
TOP = max(FLOORS)


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


def floor_of(module: str) -> int:
    """The floor FLOORS gives a module (an entry "pkg.*" covers pkg's submodules); TOP for one it does not name."""
    for floor, names in FLOORS.items():
        for name in names.split():
            if module == name or (name.endswith(".*") and module.startswith(name[:-1])):
                return floor
    return TOP


def test_the_import_graph_is_read_from_the_source():
    graph = import_graph()
    assert {"emavfi.settings", "emavfi.schedule"} <= graph["emavfi.cli"]
    assert "emavfi.plans" in graph["emavfi.schedule"]
    assert "emavfi.weights" in graph["emavfi.settings"]  # an import inside a function counts
    assert "emavfi.settings" in graph["nodes.spec"]  # `from ..emavfi.settings import ...` in nodes/
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_circles():
    assert _cycles(import_graph()) == []


def test_no_module_imports_one_on_a_floor_above_it():
    upward = [f"{module} (floor {floor_of(module)}) imports {target} (floor {floor_of(target)})"
              for module, targets in sorted(import_graph().items()) for target in sorted(targets)
              if floor_of(target) > floor_of(module)]
    assert upward == [], "give the imported module its floor in FLOORS (and docs/architecture.md), or import down"
    assert floor_of("emavfi.media.folder") == 3 and floor_of("emavfi.some_new_tool") == TOP


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


# Decisions the code once made in several places (docs/architecture.md): each must have exactly one home.
ONE_HOME = ("DEFAULT_VARIANT", "VARIANTS", "PRECISIONS", "DTYPES", "BIT_DEPTHS", "VIDEO_EXTENSIONS",
            "IMAGE_EXTENSIONS", "SCALES", "MAX_CHUNK", "MAX_BISECTION_DEPTH", "BISECTION_DEPTH", "MAX_MULTIPLIER",
            "DEFAULT_CUT_THRESHOLD", "CUT_CONTEXT")


def _module_constants() -> dict[str, list[tuple[str, str]]]:
    """UPPER_CASE name -> (module, value as source text) for each module-level assignment of it."""
    homes = defaultdict(list)
    for module, (_, tree) in MODULES.items():
        for node in tree.body:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target] \
                if isinstance(node, ast.AnnAssign) and node.value is not None else []
            for target in targets:
                if isinstance(target, ast.Name) and target.id.lstrip("_").isupper():
                    homes[target.id].append((module, ast.unparse(node.value)))
    return homes


def test_each_constant_has_one_home():
    homes = _module_constants()
    assert [module for module, _ in homes["DEFAULT_VARIANT"]] == ["emavfi.config"]
    assert [module for module, _ in homes["VIDEO_EXTENSIONS"]] == ["emavfi.media.base"]
    # a named decision defined twice, or any constant copied (same name, same value) into a second module
    twice = {name: sorted(module for module, _ in places) for name, places in homes.items()
             if len(places) > 1 and (name in ONE_HOME or len({value for _, value in places}) < len(places))}
    assert twice == {}


def test_one_helper_per_shared_job():
    defined = defaultdict(list)
    for module, (_, tree) in MODULES.items():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                defined[node.name].append(module)
    assert defined["one_line"] == ["emavfi.errors"]
    assert not any(defined[name] for name in ("_one_line", "_first_line", "first_line", "resolve_device",
                                                "resolve_dtype", "_nice_rate", "nearest_dyadic", "expected_shapes"))


def _defines(module: str, path: list[str]) -> bool:
    """Whether `module` defines the dotted `path` (a function, class, method or module-level name)."""
    body = MODULES[module][1].body
    for name in path:
        found = None
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == name:
                found = node
            targets = node.targets if isinstance(node, ast.Assign) else [node.target] \
                if isinstance(node, ast.AnnAssign) else []
            if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                found = node
            if isinstance(node, ast.ImportFrom) and any((a.asname or a.name) == name for a in node.names):
                found = node  # a re-export (schedule's plans names, local_weights' default_models_dir)
        if found is None:
            return False
        body = getattr(found, "body", [])
    return True


def _table_homes() -> list[tuple[str, str]]:
    """(decision, dotted name) for every `module.name` the "home" column of the decisions table names."""
    text = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    rows = [line.split(" | ") for line in text.splitlines() if line.startswith("| ") and " | " in line]
    homes = []
    for decision, home in ((row[0][2:], row[-1].rstrip(" |")) for row in rows[2:]):
        for name in re.findall(r"`([A-Za-z_][\w.]*)`", home):
            homes.append((decision, name))
    return homes


def _public_names() -> dict[str, str]:
    """emavfi's public names (emavfi/__init__.py's _EXPORTS): name -> the module that defines it."""
    assign = next(node for node in MODULES["emavfi"][1].body if isinstance(node, ast.Assign)
                  and any(isinstance(t, ast.Name) and t.id == "_EXPORTS" for t in node.targets))
    return {name: f"emavfi{module}" for name, module in ast.literal_eval(assign.value).items()}


def test_every_home_the_decisions_table_names_exists():
    missing = []
    for decision, name in _table_homes():
        parts = name.split(".")
        if parts[0] == "emavfi" and len(parts) == 2:  # a public name: where emavfi/__init__.py sends it
            module = _public_names().get(parts[1])
            if module is None or not _defines(module, parts[1:]):
                missing.append(f"{name} ({decision[:50]})")
            continue
        qualified = parts if parts[0] == "nodes" else ["emavfi", *parts]
        if qualified[1] not in {m.split(".")[1] for m in MODULES if "." in m}:
            continue  # a bare word or a member named after its module in the same row (`Schedule.out_fps`)
        for cut in range(len(qualified), 1, -1):
            module = ".".join(qualified[:cut])
            if module in MODULES:
                if not _defines(module, qualified[cut:]):
                    missing.append(f"{name} ({decision[:50]})")
                break
        else:
            missing.append(f"{name}: no such module ({decision[:50]})")
    assert missing == [], "docs/architecture.md names a home that is not there"
    named = {name for _, name in _table_homes()}
    assert {"loading.load_model_for", "inference.backend_for", "schedule.Schedule.rows_per_pair",
            "dedupe.held_timeline", "ray_private", "clips"} <= named


def test_the_library_functions_have_no_backend_branch_and_runner_never_imports_engine():
    graph = import_graph()
    assert "emavfi.engine" not in graph["emavfi.runner"] and "emavfi.runner" in graph["emavfi.engine"]
    for module in ("emavfi.inference", "emavfi.clips"):
        source = MODULES[module][0].read_text(encoding="utf-8")
        assert "is_runtime(" not in source, f"{module} branches on the kind of model: use inference.backend_for"
    # every front end loads its model through emavfi.loading, never through weights.load_model or render
    for module in ("emavfi.cli", "emavfi.distributed", "emavfi.vapoursynth", "emavfi.evaluate.session",
                   "emavfi.export.cli"):
        assert "emavfi.loading" in graph[module], module
    assert "emavfi.backends" not in graph["emavfi.weights"]  # loading only loads
    train_imports = set().union(*(targets for module, targets in graph.items() if module.startswith("emavfi.train")))
    assert "emavfi.distributed" not in train_imports  # fine-tuning shares Ray's helpers through ray_cluster


MUTATORS = {"append", "extend", "insert", "add", "update", "setdefault", "pop", "popitem", "remove", "discard",
            "clear", "appendleft"}
CONTAINERS = (ast.List, ast.Dict, ast.Set, ast.ListComp, ast.DictComp, ast.SetComp)


def _mutated_module_state(tree: ast.Module) -> list[str]:
    """Module-level containers a function changes (`NAME.append(...)`, `NAME[k] = v`), and `global` statements."""
    containers = {t.id for node in tree.body if isinstance(node, (ast.Assign, ast.AnnAssign))
                  and (isinstance(node.value, CONTAINERS) or isinstance(node.value, ast.Call)
                       and getattr(node.value.func, "id", "") in ("list", "dict", "set", "deque", "defaultdict"))
                  for t in (node.targets if isinstance(node, ast.Assign) else [node.target]) if isinstance(t, ast.Name)}
    found = []
    for function in (n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))):
        for node in ast.walk(function):
            if isinstance(node, ast.Global):
                found += [f"global {name}" for name in node.names]
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in MUTATORS \
                    and isinstance(node.func.value, ast.Name) and node.func.value.id in containers:
                found.append(f"{node.func.value.id}.{node.func.attr}() in {function.name}")
            elif isinstance(node, (ast.Assign, ast.AugAssign, ast.Delete)):
                targets = node.targets if isinstance(node, (ast.Assign, ast.Delete)) else [node.target]
                found += [f"{t.value.id}[...] in {function.name}" for t in targets if isinstance(t, ast.Subscript)
                          and isinstance(t.value, ast.Name) and t.value.id in containers]
    return found


def test_no_module_level_state_is_changed_at_run_time():
    # State lives in objects their owners hold (nodes.state.PackState, a Ray Train backend's LoopbackStore)
    changed = {module: found for module, (_, tree) in MODULES.items() if (found := _mutated_module_state(tree))}
    assert changed == {}


def test_ray_workers_take_their_torch_threads_in_one_place():
    callers = sorted(module for module, (path, _) in MODULES.items()
                     if "set_num_threads(" in path.read_text(encoding="utf-8"))
    assert callers == ["emavfi.ray_cluster"]  # compute_with: render, evaluate and fine-tuning workers
    named = {name for _, name in _table_homes()}
    assert {"ray_cluster.worker_threads", "ray_cluster.worker_slots", "train.ray_train.LoopbackStore",
            "nodes.spec.ClipNodeSchema", "devices.cpu_bf16_problem", "outputs.ADDED_KEYS"} <= named
