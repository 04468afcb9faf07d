"""Data flows one way: each layer imports only from layers to its left (DESIGN §3).

io → pipeline → (cube lives in io) → data → models → training → evaluation → report; the
top-level modules (config, errors, vocab, grid) are shared; ``synth`` writes sources through
nothing but the shared modules; ``cli``/``commands`` wire everything and may import anything.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "no2fusion"

ORDER = ["io", "pipeline", "data", "models", "training", "evaluation", "report"]
SHARED = {"config", "errors", "files", "vocab", "grid", "__init__"}

# Layers each layer may import from, besides itself and the shared modules.
ALLOWED: dict[str, set[str]] = {layer: set(ORDER[:i]) for i, layer in enumerate(ORDER)}
ALLOWED["synth"] = set()
# models are pure nn.Modules: they need nothing from io/pipeline/data.
ALLOWED["models"] = set()


def _imported_layers(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        for name in names:
            parts = name.split(".")
            if parts[0] == "no2fusion" and len(parts) > 1:
                found.add(parts[1])
    return found


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
