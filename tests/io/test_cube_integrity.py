"""Damaged cubes (issue 12): a deleted or garbage Zarr chunk is never used silently.

A complete day that lacks a chunk makes ``open_cube`` fail (zarr would read it as NaN: a
deleted features chunk trained as all-NaN meteorology); an undecodable chunk fails when it is
read. Both are one line naming the cube, the variable and the day, exit 2 from the CLI;
``no2fusion check CUBE`` lists every problem, and a rerun of ``build`` rewrites the day.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr

from no2fusion.cli import main
from no2fusion.config import Config
from no2fusion.errors import CubeDamagedError
from no2fusion.io.cube import check_cube, completed_days, open_cube
from no2fusion.pipeline.build import build_cube


def _chunk(cube: Path, name: str, index: int) -> Path:
    array = zarr.open_array(str(cube), path=name, mode="r")
    key = array.metadata.encode_chunk_key((index,) + (0,) * (array.ndim - 1))
    return cube / name / key


@pytest.fixture
def cube(tiny_cube: Path, tmp_path: Path) -> tuple[Path, int, str]:
    """A copy of the test cube, its 4th complete day (index, YYYY-MM-DD)."""
    copy = tmp_path / "cube.zarr"
    shutil.copytree(tiny_cube, copy)
    index = int(np.flatnonzero(completed_days(copy))[3])
    day = str(
        np.datetime_as_string(open_cube(copy, complete_only=False)["time"].values[index], "D")
    )
    return copy, index, day


def _train(cube: Path, out: Path) -> int:
    return main(
        ["train", "--config", "test", "--cube", str(cube), "--output", str(out), "--no-progress"]
        + ["--set", "training.limit_train_batches=2", "--set", "training.limit_val_batches=1"]
    )


def _err_line(capsys: pytest.CaptureFixture[str], command: str) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"no2fusion {command}: error: "), err
    return err


def test_intact_cube_checks_clean(tiny_cube: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = check_cube(tiny_cube)
    assert not report.damaged and report.complete == int(completed_days(tiny_cube).sum())
    assert any("not complete" in note for note in report.notes)  # the cloudy days
    assert main(["check", str(tiny_cube), "--no-progress"]) == 0
    assert "intact" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["features", "no2", "met_t2m"])
def test_deleted_chunk_is_refused_naming_cube_variable_and_day(
    cube: tuple[Path, int, str], tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    path, index, day = cube
    _chunk(path, name, index).unlink()
    with pytest.raises(CubeDamagedError, match=rf"{path}: variable '{name}' has no chunk "):
        open_cube(path)
    assert _train(path, tmp_path / "run") == 2
    err = _err_line(capsys, "train")
    assert str(path) in err and f"'{name}'" in err and day in err
    assert not (tmp_path / "run" / "checkpoints").exists()  # nothing trained on it

    assert main(["check", str(path), "--no-progress"]) == 2
    out = capsys.readouterr()
    assert "DAMAGED (1 problem(s))" in out.out
    assert f"day {day}: variable '{name}': chunk missing" in out.err


def test_garbage_chunk_fails_when_read_naming_cube_variable_and_day(
    cube: tuple[Path, int, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, index, day = cube
    chunk = _chunk(path, "no2", index)
    chunk.write_bytes(np.random.default_rng(0).bytes(chunk.stat().st_size))
    opened = open_cube(path)  # opening reads no chunk of it
    with pytest.raises(CubeDamagedError, match=rf"variable 'no2' of day {day} cannot be read"):
        _ = opened["no2"].values
    assert _train(path, tmp_path / "run") == 2
    err = _err_line(capsys, "train")
    assert str(path) in err and "'no2'" in err and day in err and "Traceback" not in err
    report = check_cube(path)
    assert report.problems == [f"day {day}: variable 'no2': chunk cannot be decoded"]


def test_check_finds_a_flag_that_disagrees_with_the_data(cube: tuple[Path, int, str]) -> None:
    path, _index, _day = cube
    flags = zarr.open_array(str(path), path="day_complete", mode="r+")
    skipped = int(np.flatnonzero(~np.asarray(flags[:]))[0])  # a cloudy day: never written
    flags[skipped] = True
    report = check_cube(path)
    assert report.damaged
    assert all(problem.startswith("day ") for problem in report.problems)
    assert any("'features': chunk missing" in problem for problem in report.problems)


def test_a_rerun_of_build_rewrites_the_damaged_day(
    cube: tuple[Path, int, str], synth_sources: Path, test_config: Config, tiny_cube: Path
) -> None:
    path, index, _day = cube
    _chunk(path, "features", index).unlink()
    report = build_cube(
        synth_sources, path, test_config.grid.to_grid(), test_config.pipeline, progress=False
    )
    assert report.count("written") == 1
    assert not check_cube(path).damaged
    np.testing.assert_array_equal(
        open_cube(path)["features"].values, open_cube(tiny_cube)["features"].values
    )
