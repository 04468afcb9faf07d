"""A normal (not editable) install works from any folder: the wheel built from this checkout,
installed into a fresh virtual environment, runs ``no2fusion run --mode test`` in an empty
folder with the shipped config and gives the same metrics as the checkout (same seed, same
thread count), and prints a shipped config.

Offline and quick: the wheel is built without build isolation (hatchling is a dev
dependency) and installed without dependencies; the fresh environment sees the development
environment's third-party packages through a ``.pth`` path line (which does not process that
environment's own ``.pth`` files, so the checkout's editable ``no2fusion`` stays invisible).
"""

from __future__ import annotations

import json
import os
import site
import subprocess
import sys
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCORES = ("rmse", "mae", "bias", "r2", "spatial_correlation", "n_valid")


def _run(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    return done.stdout + done.stderr


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ``bin`` folder of a fresh venv holding the wheel of this checkout."""
    root = tmp_path_factory.mktemp("install")
    wheels = root / "wheels"
    _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index"]
        + ["--quiet", "-w", str(wheels), str(REPO)],
        cwd=root,
    )
    (wheel,) = wheels.glob("no2fusion-*.whl")
    env_dir = root / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    fresh_site = _run([str(python), "-c", "import site; print(site.getsitepackages()[0])"], root)
    deps = "\n".join(site.getsitepackages())  # the development environment's packages
    (Path(fresh_site.strip()) / "dev_environment_packages.pth").write_text(deps + "\n")
    _run(
        [str(python), "-m", "pip", "install", "--no-deps", "--no-index", "--quiet", str(wheel)],
        root,
    )
    return env_dir / "bin"


@pytest.mark.slow
def test_installed_package_runs_the_test_mode_from_another_folder(
    installed: Path, tmp_path: Path, run_dir: Path
) -> None:
    where = _run(
        [str(installed / "python"), "-c", "import no2fusion; print(no2fusion.__file__)"], tmp_path
    )
    assert str(installed.parent) in where and str(REPO) not in where  # the installed copy
    shown = _run([str(installed / "no2fusion"), "config", "show", "test"], tmp_path)
    assert "tile_size: 16" in shown
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # the thread count of the checkout's run
    env.pop("PYTHONPATH", None)
    printed = _run(
        [str(installed / "no2fusion"), "run", "--mode", "test", "--no-progress"], tmp_path, env
    )
    assert "EXECUTION COMPLETE" in printed
    out = tmp_path / "outputs" / "test"
    for name in ("metrics.json", "predictions.nc", "report.html"):
        assert (out / name).is_file(), name
    # same seed, same machine, same thread count -> the same numbers as the checkout's run
    mine = json.loads((out / "metrics.json").read_text())
    checkout = json.loads((run_dir / "metrics.json").read_text())
    assert {k: mine["global"][k] for k in SCORES} == {k: checkout["global"][k] for k in SCORES}
    for name, baseline in checkout["baselines"].items():
        assert mine["baselines"][name]["global"]["rmse"] == baseline["global"]["rmse"], name
    assert mine["robustness"] == checkout["robustness"]
    assert mine["ablation"] == checkout["ablation"]
