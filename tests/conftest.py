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


@pytest.fixture(scope="session")
def synth_sources(test_config: Config, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The simulated world of ``config/test.yaml`` (16 x 16 cells, 60 days) in the real formats.

    Layout (``no2fusion.synth.world``): ``tropomi/S5P_OFFL_L2__NO2____*.nc`` (one per day),
    ``era5/era5_single_levels_YYYY-MM.nc``, ``truth/truth.nc``, ``world.json``. Read-only: copy
    before modifying.
    """
    from no2fusion.synth.world import generate_world

    out = tmp_path_factory.mktemp("synth_sources")
    generate_world(test_config, out, progress=False)
    return out


@pytest.fixture(scope="session")
def tiny_cube(
    synth_sources: Path, test_config: Config, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The Zarr cube built from ``synth_sources`` with ``config/test.yaml`` (``no2fusion build``).

    Read-only: copy before modifying. Its build report is ``<parent>/cube.report.json``.
    """
    from no2fusion.pipeline.build import build_cube

    out = tmp_path_factory.mktemp("tiny_cube") / "cube.zarr"
    build_cube(synth_sources, out, test_config.grid.to_grid(), test_config.pipeline, progress=False)
    return out


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``no2fusion run --mode test`` of this checkout, in process, with one torch thread.

    Read-only: tests compare other runs with it or re-evaluate it in place."""
    import torch

    from no2fusion.cli import main

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("run") / "outputs"
    # the shipped test config, by name, as an installed package finds it
    code = main(
        ["run", "--mode", "test", "--config", "test", "--output", str(out), "--no-progress"]
    )
    assert code == 0
    return out
