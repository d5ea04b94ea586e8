"""Import rules, read from the source with ``ast`` (nothing is imported):

- the data plane (``sources``, ``detect``, ``pipeline``) never imports the daemon (``app``), the sinks
  or the sensors, not even lazily inside a function: those plug in through the pipeline's protocols;
- no import cycle among edgeinfer modules at import time (module-level imports, ``TYPE_CHECKING``
  blocks left out; imports inside functions are the sanctioned way to load something late).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "edgeinfer"
DATA_PLANE = ("sources", "detect", "pipeline")
FORBIDDEN = ("edgeinfer.app", "edgeinfer.sinks", "edgeinfer.sensors")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imported(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> list[str]:
    """The edgeinfer modules an import statement names (``from pkg import mod`` names pkg.mod)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:  # relative: resolve against this module's package
        package = module.split(".") if is_package else module.split(".")[:-1]
        package = package[: len(package) - (node.level - 1)]
        base = ".".join([*package, base] if base else package)
    names = [f"{base}.{alias.name}" for alias in node.names]
    found = [n for n in names if n in MODULES]
    return found or [base]


def imports(path: Path, *, top_level_only: bool) -> set[str]:
    """The edgeinfer modules ``path`` imports: all of them, or those run at import time."""
    module, is_package = module_name(path), path.name == "__init__.py"
    tree = ast.parse(path.read_text(), filename=str(path))
    nodes: list[ast.Import | ast.ImportFrom] = []

    def top_level(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.Import | ast.ImportFrom):
                nodes.append(node)
            elif isinstance(node, ast.If):
                if ast.unparse(node.test) not in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
                    top_level(node.body)
                top_level(node.orelse)
            elif isinstance(node, ast.Try):
                for block in (node.body, *(h.body for h in node.handlers), node.orelse, node.finalbody):
                    top_level(block)
            elif isinstance(node, ast.With):
                top_level(node.body)

    if top_level_only:
        top_level(tree.body)
    else:
        nodes = [n for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom)]
    found = {name for node in nodes for name in imported(node, module, is_package)}
    return {name for name in found if name == "edgeinfer" or name.startswith("edgeinfer.")}


def find_cycles(graph: dict[str, list[str]]) -> list[str]:
    """Every back edge of a depth-first search, as the cycle it closes."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    stack: list[str] = []
    cycles: list[str] = []

    def dfs(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for target in graph.get(node, ()):
            if state.get(target) == 1:
                cycles.append(" -> ".join([*stack[stack.index(target) :], target]))
            elif target not in state:
                dfs(target)
        stack.pop()
        state[node] = 2

    for name in graph:
        if name not in state:
            dfs(name)
    return cycles


def test_the_data_plane_never_imports_the_daemon_sinks_or_sensors():
    offenders = []
    for name, path in MODULES.items():
        if name.split(".")[1:2] and name.split(".")[1] in DATA_PLANE:
            for target in sorted(imports(path, top_level_only=False)):
                if any(target == f or target.startswith(f + ".") for f in FORBIDDEN):
                    offenders.append(f"{path.relative_to(ROOT)} imports {target}")
    assert not offenders, "\n".join(offenders)


def test_the_walker_sees_module_and_function_level_imports():
    stages = PACKAGE / "pipeline" / "stages.py"
    assert "edgeinfer.pipeline.outcomes" in imports(stages, top_level_only=True)
    worker = PACKAGE / "bench" / "worker.py"
    assert "edgeinfer.app.daemon" not in imports(worker, top_level_only=True)
    assert "edgeinfer.app.daemon" in imports(worker, top_level_only=False)  # inside a function


def test_find_cycles_finds_one():
    assert find_cycles({"a": ["b"], "b": ["c"], "c": ["a"], "d": ["a"]}) == ["a -> b -> c -> a"]
    assert find_cycles({"a": ["b", "c"], "b": ["c"], "c": []}) == []


def test_no_import_cycle_among_edgeinfer_modules():
    graph = {
        name: sorted(t for t in imports(path, top_level_only=True) if t in MODULES and t != name)
        for name, path in MODULES.items()
    }
    cycles = find_cycles(graph)
    assert not cycles, "\n".join(cycles)
