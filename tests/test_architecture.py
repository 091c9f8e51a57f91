"""The shape of the source tree, checked: packages in layers that import only downwards,
no import cycle (also none under TYPE_CHECKING), the read side free of torch and of the
engine, no source file over 500 lines, and a runner that stays small."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "knowundo_bench"

# Bottom to top. A package imports only from packages of lower layers (``knowundo_bench``
# itself, which holds only the version, from anywhere). The engine is layers 1-6; the
# entry points sit on it, and on them ``python -m`` and the built-in plugins (which import
# only the api: tests/test_api.py).
LAYERS: tuple[tuple[str, ...], ...] = (
    ("core",),
    ("records", "config", "benchmark", "modeling"),
    ("evaluate", "leaderboard", "tracking"),
    ("train",),
    ("plugin",),
    ("run", "build"),
    ("api", "cli", "testing"),
    ("__main__", "plugins"),
)
ENGINE_LAYERS = 6
TORCH_FREE = ("core", "records", "config", "leaderboard", "tracking")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def resolve(name: str) -> str | None:
    """The module of ours that ``name`` (a module, or a module's attribute) is."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(module: str) -> list[tuple[str, int]]:
    """Every module of ours ``module`` imports, anywhere in its source (module level,
    under TYPE_CHECKING, inside functions), with the line."""
    found = []
    for node in ast.walk(ast.parse(MODULES[module].read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        for name in names:
            target = resolve(name) if name.startswith("knowundo_bench") else None
            if target is not None and target != module:
                found.append((target, node.lineno))
    return found


GRAPH = {module: imports_of(module) for module in MODULES}


def package_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""  # "" is knowundo_bench itself (the version)


def layer_of(package: str) -> int:
    if package == "":
        return 0
    for index, layer in enumerate(LAYERS, start=1):
        if package in layer:
            return index
    raise AssertionError(f"package {package!r} is in no layer: add it to LAYERS (and its __init__ docstring)")


def upward_imports(graph: dict[str, list[tuple[str, int]]]) -> list[str]:
    """Imports that reach a package of the same or a higher layer (a package's own
    modules aside; built-in plugins may share code with each other)."""
    found = []
    for module, targets in graph.items():
        source = package_of(module)
        for target, line in targets:
            destination = package_of(target)
            if destination == source:
                continue
            if layer_of(destination) >= layer_of(source):
                found.append(f"{module}:{line} -> {target}")
    return found


def cycles(graph: dict[str, list[tuple[str, int]]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target, _ in graph.get(node, []):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def engine_depth(graph: dict[str, list[tuple[str, int]]]) -> int:
    """The longest chain of package imports inside the engine (layers 1 to 6)."""
    edges: dict[str, set[str]] = {}
    for module, targets in graph.items():
        source = package_of(module)
        if not source or layer_of(source) > ENGINE_LAYERS:
            continue
        edges.setdefault(source, set())
        for target, _ in targets:
            destination = package_of(target)
            if destination and destination != source:
                edges[source].add(destination)
    memo: dict[str, int] = {}

    def depth(package: str) -> int:
        if package not in memo:
            memo[package] = 1 + max((depth(target) for target in edges.get(package, ())), default=0)
        return memo[package]

    return max(depth(package) for package in edges)


def test_every_import_goes_down_a_layer():
    assert upward_imports(GRAPH) == []


def test_the_layer_check_catches_an_upward_import():
    """Checks that can fail: records importing the runner, core importing records, and a
    sideways import between two packages of one layer are each reported."""
    planted = {**GRAPH, "knowundo_bench.records.schema": [("knowundo_bench.run.runner", 1)]}
    assert upward_imports(planted) == ["knowundo_bench.records.schema:1 -> knowundo_bench.run.runner"]
    planted = {**GRAPH, "knowundo_bench.core.errors": [("knowundo_bench.records.files", 3)]}
    assert upward_imports(planted) == ["knowundo_bench.core.errors:3 -> knowundo_bench.records.files"]
    planted = {**GRAPH, "knowundo_bench.config.spec": [("knowundo_bench.benchmark.pairs", 5)]}
    assert upward_imports(planted) == ["knowundo_bench.config.spec:5 -> knowundo_bench.benchmark.pairs"]


def test_no_import_cycle_even_under_type_checking():
    assert cycles(GRAPH) == []
    planted = {**GRAPH, "knowundo_bench.build.datacard": [("knowundo_bench.build.pipeline", 1)]}
    assert cycles(planted) == [["knowundo_bench.build.datacard", "knowundo_bench.build.pipeline"]]


def test_the_engine_is_at_most_six_packages_deep():
    assert engine_depth(GRAPH) <= ENGINE_LAYERS


def test_every_package_says_what_lives_there_and_what_it_may_import():
    for path in sorted(PACKAGE.rglob("__init__.py")):
        if path.parent == PACKAGE or path.parent.parent.name == "plugins":
            continue  # the top package holds the version; plugins/<kind>/ folders are listed in plugins/
        docstring = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
        assert docstring, f"{path.relative_to(ROOT)} has no docstring"
        if path.parent.name != "plugins":
            assert "import" in docstring.lower(), f"{path.relative_to(ROOT)}: say what it may import"


def test_the_read_side_and_the_configuration_do_not_import_torch_in_their_source():
    offenders = []
    for module, path in MODULES.items():
        if package_of(module) not in TORCH_FREE:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            offenders += [f"{module}:{node.lineno}" for name in names if name.split(".")[0] == "torch"]
    assert offenders == []


def loaded_after(statement: str) -> set[str]:
    """The modules a fresh interpreter has loaded after ``statement``."""
    code = f"import sys\n{statement}\nprint('\\n'.join(sorted(sys.modules)))"
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return set(output.split())


def test_the_leaderboard_loads_neither_torch_nor_the_engine():
    loaded = loaded_after("import knowundo_bench.leaderboard, knowundo_bench.leaderboard.samples")
    assert "torch" not in loaded
    engine = {
        m for m in loaded if m.startswith("knowundo_bench.") and package_of(m) not in {"leaderboard", "records", "core"}
    }
    assert engine == set()


def test_the_api_does_not_load_the_runner():
    loaded = loaded_after("import knowundo_bench.api")
    assert {m for m in loaded if m.startswith("knowundo_bench.run")} == set()
    assert "knowundo_bench.run.worker" in loaded_after("from knowundo_bench.api import run_in_worker")


def test_no_source_file_is_over_500_lines():
    sizes = {
        str(path.relative_to(ROOT)): len(path.read_text(encoding="utf-8").splitlines()) for path in MODULES.values()
    }
    assert {path: lines for path, lines in sizes.items() if lines > 500} == {}


def test_the_runner_stays_small():
    from knowundo_bench.run.runner import Runner

    source = (PACKAGE / "run" / "runner.py").read_text(encoding="utf-8")
    node = next(n for n in ast.parse(source).body if isinstance(n, ast.ClassDef) and n.name == Runner.__name__)
    assert node.end_lineno - node.lineno + 1 < 300


@pytest.mark.parametrize("package", sorted({p for layer in LAYERS for p in layer} - {"__main__"}))
def test_every_layered_package_exists(package):
    assert package in {package_of(module) for module in MODULES}
