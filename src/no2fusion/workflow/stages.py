"""Stage markers of a run directory: reuse a completed stage, refuse a mixed one.

Sits in ``workflow/`` under ``run.py``. A stage writes ``DIR/.stages/<name>.json`` (atomically)
only after it finished, holding the config sections it depended on; a re-run reuses the stage
when they are unchanged and raises ``ConfigError`` when they differ (reusing it would mix two
configs in one run directory; deleting it silently could destroy a long run).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from no2fusion.config import Config
from no2fusion.errors import ConfigError
from no2fusion.files import atomic_path

T = TypeVar("T")
Log = Callable[[str], None]
SUBRULE = "-" * 50

# Config sections each stage depends on: a stage is reused only when they are unchanged.
STAGE_SECTIONS = {
    "synth": ("seed", "grid", "synth"),
    "build": ("seed", "grid", "synth", "pipeline"),
    "train": ("seed", "grid", "synth", "pipeline", "data", "model", "training"),
}


def stage_inputs(config: Config, stage: str) -> dict[str, Any]:
    """The plain-typed config sections stage ``stage`` (a key of ``STAGE_SECTIONS``) depends
    on; how many processes do the work never changes the result, so ``workers`` and
    ``scheduler`` are left out."""
    dumped = config.model_dump(mode="json")
    inputs = {section: dumped[section] for section in STAGE_SECTIONS[stage]}
    for section in inputs.values():
        if isinstance(section, dict):
            section.pop("workers", None)
            section.pop("scheduler", None)
    return inputs


class Steps:
    """Numbered step headers, stage markers (``.stages/<name>.json``) and stage timings."""

    def __init__(self, run_dir: Path, log: Log = print) -> None:
        self.run_dir = run_dir
        self.log = log
        self.number = 0
        self.timings: dict[str, float] = {}

    def header(self, title: str) -> None:
        self.number += 1
        self.log(f"\nStep {self.number}: {title}")
        self.log(SUBRULE)

    def marker(self, name: str) -> Path:
        return self.run_dir / ".stages" / f"{name}.json"

    def done(self, name: str, inputs: dict[str, Any]) -> bool:
        """True when stage ``name`` completed before with the same ``inputs``.

        Raises ``ConfigError`` when it completed with different inputs.
        """
        path = self.marker(name)
        if not path.is_file():
            return False
        stored = json.loads(path.read_text()).get("inputs")
        if stored != json.loads(json.dumps(inputs, default=str)):
            raise ConfigError(
                f"stage '{name}' in this run directory was made with a different config; "
                "use a new --output (or delete the directory)",
                self.run_dir,
            )
        return True

    def mark(self, name: str, inputs: dict[str, Any], info: dict[str, Any]) -> None:
        """Record that stage ``name`` completed with ``inputs`` (written last, atomically)."""
        path = self.marker(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps({"inputs": inputs, **info}, indent=1, default=str))

    def timed(self, name: str, action: Callable[[], T]) -> T:
        started = time.perf_counter()
        result = action()
        self.timings[name] = time.perf_counter() - started
        return result
