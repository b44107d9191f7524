"""The package's shape cannot rot: layers import only downward, no import cycles, small files.

Every ``import`` and ``from ... import`` in ``src/leash`` (function-local ones too) is an edge.
An edge into a higher layer fails, and so does any cycle, even inside one layer. The tests of
the checker itself plant a bad import in a copy of the package and see it fail.
"""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

LAYERS: tuple[tuple[str, ...], ...] = (
    ("leash.cli", "leash.__main__"),
    ("leash.pipeline",),
    ("leash.report",),
    ("leash.callbacks", "leash.logging_wandb", "leash.logging_csv"),
    ("leash.modules",),
    ("leash.evaluation",),
    ("leash.rollout",),
    ("leash.data",),
    ("leash.models",),
    ("leash.losses",),
    ("leash.config",),
    ("leash.sequences", "leash.atomic", "leash.resources", "leash.checkpoints",
     "leash.run_lock", "leash.runtime", "leash"),
)
"""Top to bottom; a module may import its own layer and the layers below it."""

MAX_FILE_LINES = 450
MAX_FUNCTION_LINES = 60


def module_name(path: Path, root: Path) -> str:
    """``<root>/leash/data/types.py`` -> ``leash.data.types`` (a package is its ``__init__``)."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> int:
    """Index of the module's layer (0 is the top), by its longest listed prefix."""
    best, index = -1, None
    for position, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            matches = module == prefix or module.startswith(prefix + ".")
            if matches and len(prefix) > best:
                best, index = len(prefix), position
    if index is None:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS")
    return index


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The leash modules ``path`` imports (``from a import b`` counts ``a.b`` if it is one)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names} & modules
    return {name for name in found if name in modules}


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the leash modules it imports, for every module under ``root/leash``."""
    paths = {module_name(p, root): p for p in (root / "leash").rglob("*.py")}
    return {name: imports_of(path, set(paths)) - {name} for name, path in paths.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first repeated at the end), or None."""
    state: dict[str, int] = {}  # 1 on the current path, 2 finished
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def layering_violations(root: Path) -> list[str]:
    """Every upward import, and one cycle if there is any, as readable lines."""
    graph = import_graph(root)
    problems = [
        f"{source} (layer {layer_of(source)}) imports {target} (layer {layer_of(target)})"
        for source, targets in sorted(graph.items())
        for target in sorted(targets)
        if layer_of(target) < layer_of(source)
    ]
    cycle = find_cycle(graph)
    if cycle:
        problems.append("import cycle: " + " -> ".join(cycle))
    return problems


def test_layers_import_only_downward_and_nothing_is_circular():
    assert layering_violations(SRC) == []


@pytest.fixture
def package_copy(tmp_path: Path) -> Path:
    shutil.copytree(SRC / "leash", tmp_path / "leash")
    return tmp_path


def test_the_check_catches_an_upward_import(package_copy: Path):
    losses = package_copy / "leash" / "losses" / "ppo.py"
    losses.write_text(losses.read_text() + "\nimport leash.report.table  # noqa\n")
    assert layering_violations(package_copy) == [
        "leash.losses.ppo (layer 9) imports leash.report.table (layer 2)"
    ]


def test_the_check_catches_a_function_local_import_and_a_cycle(package_copy: Path):
    # models.reference imports models.factory; the factory importing it back closes a cycle
    # inside one layer, which only the cycle check can see.
    factory = package_copy / "leash" / "models" / "factory.py"
    factory.write_text(factory.read_text() + "\n\ndef f():\n    import leash.models.reference\n")
    problems = layering_violations(package_copy)
    assert len(problems) == 1 and problems[0].startswith("import cycle: ")
    assert "leash.models.factory" in problems[0] and "leash.models.reference" in problems[0]


def test_files_and_functions_stay_small():
    too_long = []
    for path in sorted((SRC / "leash").rglob("*.py")):
        text = path.read_text()
        if len(text.splitlines()) > MAX_FILE_LINES:
            too_long.append(f"{path.name}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    too_long.append(f"{path.name}:{node.name}: {length} lines")
    assert too_long == []
