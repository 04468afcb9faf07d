"""Data flows one way: each layer imports only from layers to its left (DESIGN §3), and no
module imports itself back through others (no import cycles, lazy imports included).

io → pipeline → (cube lives in io) → data → models → training → evaluation → report →
workflow; the top-level modules (config, errors, files, vocab, grid) are shared; ``synth``
writes sources through nothing but the shared modules; ``cli``/``commands``/``seed_api`` wire
everything and may import anything.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "no2fusion"

ORDER = ["io", "pipeline", "data", "models", "training", "evaluation", "report", "workflow"]
SHARED = {"config", "errors", "files", "vocab", "grid", "__init__"}

# Layers each layer may import from, besides itself and the shared modules.
ALLOWED: dict[str, set[str]] = {layer: set(ORDER[:i]) for i, layer in enumerate(ORDER)}
ALLOWED["synth"] = set()
# models are pure nn.Modules: they need nothing from io/pipeline/data.
ALLOWED["models"] = set()
# the workflow runs the whole chain, from the simulated sources (synth) on.
ALLOWED["workflow"] |= {"synth"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every ``no2fusion`` module ``path`` imports (at top level or inside functions); a name
    imported from a package counts as its submodule when it is one."""
    tree = ast.parse(path.read_text())
    modules = {_module_name(p) for p in PACKAGE.rglob("*.py")}
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                found.add(candidate if candidate in modules else node.module)
    return {name for name in found if name.split(".")[0] == "no2fusion"}


def _imported_layers(path: Path) -> set[str]:
    return {name.split(".")[1] for name in _imports(path) if "." in name}


def import_graph() -> dict[str, set[str]]:
    """module -> the no2fusion modules it imports."""
    return {_module_name(path): _imports(path) for path in sorted(PACKAGE.rglob("*.py"))}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None (depth-first search)."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = finished
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return path[path.index(target) :] + [target]
            if target not in state and (cycle := visit(target)) is not None:
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)) is not None:
            return cycle
    return None


def test_layers_import_only_to_their_left() -> None:
    violations = []
    for layer, allowed in ALLOWED.items():
        folder = PACKAGE / layer
        if not folder.is_dir():
            continue
        for path in sorted(folder.rglob("*.py")):
            for imported in _imported_layers(path) - SHARED - {layer} - allowed:
                violations.append(f"{path.relative_to(PACKAGE)} imports no2fusion.{imported}")
    assert not violations, "layering violations:\n" + "\n".join(violations)


def test_shared_modules_import_no_layer() -> None:
    for name in ("config", "errors", "files", "vocab", "grid"):
        imported = _imported_layers(PACKAGE / f"{name}.py") - SHARED
        assert not imported, f"{name}.py imports layers {imported}"


def test_no_import_cycles() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set()}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
