"""Fixtures for the training tests: one thread each, and the cube they train on."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from no2fusion.config import Config, load_config

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def train_cube(tiny_cube: Path) -> Path:
    """The cube built from the simulated world's files with config/test.yaml (real build)."""
    return tiny_cube


@pytest.fixture
def tiny_train_config() -> Config:
    """config/test.yaml with at most 3 batches per epoch: a run takes about a second."""
    return load_config(
        REPO / "config" / "test.yaml",
        {"training.limit_train_batches": 3, "training.limit_val_batches": 2},
    )
