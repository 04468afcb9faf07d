"""The bookkeeping of one evaluation: its random streams and its phase timer.

Sits in ``evaluation/`` under ``evaluate.py``, which composes the runners with these.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np

Log = Callable[[str], None]


class SeedStreams:
    """Independent random generators by purpose, all from one seed: adding or reordering a
    runner never changes another runner's draws."""

    def __init__(self, seed: int) -> None:
        self.seed = int(seed)

    def rng(self, purpose: str) -> np.random.Generator:
        return np.random.default_rng([self.seed, zlib.crc32(purpose.encode())])


class PhaseTimer:
    """Logs each phase's name and seconds; ``seconds`` holds them for metrics.json."""

    def __init__(self, log: Log) -> None:
        self.log = log
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        self.log(f"  {name}...")
        started = time.perf_counter()
        yield
        self.seconds[name] = time.perf_counter() - started
        self.log(f"    {name}: {self.seconds[name]:.1f} s")
