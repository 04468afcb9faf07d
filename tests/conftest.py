"""Shared fixtures. Test data comes from the package's own seeded generators, in real formats."""

from __future__ import annotations

from pathlib import Path

import pytest

from no2fusion.config import Config, load_config

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def test_config() -> Config:
    """The tiny config used by tests and ``main.py --mode test``."""
    return load_config(REPO / "config" / "test.yaml")
