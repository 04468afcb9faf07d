"""What the CLI prints when the user or the machine gets in the way (issue 12): one line, exit 2.

``--set`` and argparse mistakes, an ``OSError`` on an output (a file where a folder belongs, a
read-only folder, a full disk) named with the user's path, outputs checked before long work
starts, and a failing ``train`` that leaves the earlier run in its folder exactly as it was.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from no2fusion.cli import main
from no2fusion.training.module import NO2LightningModule

TRAIN_FAST = ["--set", "training.limit_train_batches=3", "--set", "training.limit_val_batches=2"]


def _one_line_error(capsys: pytest.CaptureFixture[str], command: str) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"no2fusion {command}: error: "), err
    return err


# ------------------------------------------------------------------------------------------------
# read-only and full folders (tmpfs mounts need root; chmod works for everyone else)
# ------------------------------------------------------------------------------------------------
def _mount_tmpfs(target: Path, options: str) -> bool:
    target.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)],
        capture_output=True,
        check=False,
    )
    return done.returncode == 0


@pytest.fixture
def read_only_dir(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "read_only"
    if os.geteuid() != 0:
        folder.mkdir()
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    if not _mount_tmpfs(folder, "ro,size=1m"):
        pytest.skip("running as root and cannot mount a read-only tmpfs")
    yield folder
    subprocess.run(["umount", "-l", str(folder)], check=False)


@pytest.fixture
def full_dir(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "full"
    if os.geteuid() != 0 or not _mount_tmpfs(folder, "size=256k"):
        pytest.skip("needs root to mount a small tmpfs")
    try:
        with (folder / "filler").open("wb") as filler:
            filler.write(b"\0" * (1 << 20))
    except OSError as error:
        assert error.errno == errno.ENOSPC
    yield folder
    subprocess.run(["umount", "-l", str(folder)], check=False)


# ------------------------------------------------------------------------------------------------
# --set and argparse
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("seed.x=1", "--set seed.x: 'seed' is a value, not a section with keys"),
        ("grid.resolution.deg=1", "'grid.resolution' is a value"),
        ("nosuch.key=1", "--set nosuch.key: unknown key 'nosuch'"),
        ("training.warmup_epochs=[1", "--set training.warmup_epochs: the value '[1' is not valid"),
        ("training.warmup_epochs=abc", "training.warmup_epochs"),
        ("training.no_such_key=1", "training.no_such_key: unknown key"),
        ("novalue", "--set expects KEY=VALUE, got 'novalue'"),
    ],
)
def test_set_errors_are_one_line_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], override: str, expected: str
) -> None:
    code = main(["train", "--cube", str(tmp_path / "c.zarr"), "--set", override])
    assert code == 2
    assert expected in _one_line_error(capsys, "train")


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["train"], "the following arguments are required: --cube"),
        (["build", "--sources", "x", "--out", "y", "--workers", "2"], "unrecognized arguments"),
        (["nosuch"], "invalid choice: 'nosuch'"),
        (["predict", "--checkpoint", "c", "--cube", "x", "--date", "soon", "--out", "p"], "date"),
    ],
)
def test_argparse_errors_are_one_line(
    capsys: pytest.CaptureFixture[str], argv: list[str], expected: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err, err
    assert "usage:" not in err


# ------------------------------------------------------------------------------------------------
# OSError on outputs: the user's path, before the long work
# ------------------------------------------------------------------------------------------------
def _build(sources: Path, out: Path) -> int:
    return main(
        ["build", "--config", "test", "--sources", str(sources), "--out", str(out)]
        + ["--no-progress", "--set", "pipeline.workers=1"]
    )


def test_build_into_a_path_below_a_file(
    synth_sources: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "notes.txt").write_text("a file, not a folder")
    started = time.perf_counter()
    assert _build(synth_sources, tmp_path / "notes.txt" / "cube.zarr") == 2
    assert time.perf_counter() - started < 5  # checked before any source is read
    err = _one_line_error(capsys, "build")
    assert f"{tmp_path / 'notes.txt'}: Not a directory" in err


def test_build_into_a_read_only_folder(
    synth_sources: Path, read_only_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _build(synth_sources, read_only_dir / "cube.zarr") == 2
    err = _one_line_error(capsys, "build")
    assert f"{read_only_dir}: " in err and "cannot write there" in err
    assert not (read_only_dir / "cube.zarr").exists()


def test_build_onto_a_full_disk(
    synth_sources: Path, full_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _build(synth_sources, full_dir / "cube.zarr") == 2
    err = _one_line_error(capsys, "build")
    assert f"{full_dir}: No space left on device (the disk is full)" in err


def test_a_full_disk_during_the_build_names_the_output(
    synth_sources: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A write into an open file on a full disk raises an OSError without a file name."""
    import no2fusion.pipeline.days as days_module

    def full(*_args: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(days_module, "write_day", full)
    out = tmp_path / "cube.zarr"
    assert _build(synth_sources, out) == 2
    err = _one_line_error(capsys, "build")
    assert f"while writing {out}: No space left on device (the disk is full)" in err


def test_predict_to_a_read_only_folder_fails_before_loading(
    read_only_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["predict", "--checkpoint", str(tmp_path / "missing.ckpt"), "--cube", str(tmp_path)]
        + ["--date", "2021-03-01", "--out", str(read_only_dir / "pred.nc")]
    )
    assert code == 2
    assert f"{read_only_dir}: " in _one_line_error(capsys, "predict")


# ------------------------------------------------------------------------------------------------
# train: checked first, and an earlier run survives a failing one
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def earlier_run(tiny_cube: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("earlier") / "run"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        code = main(
            ["train", "--config", "test", "--cube", str(tiny_cube), "--output", str(out)]
            + ["--no-progress", *TRAIN_FAST]
        )
    finally:
        torch.set_num_threads(threads)
    assert code == 0
    return out


def _files(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def test_train_with_checkpoints_a_file_fails_in_the_first_second(
    earlier_run: Path, tiny_cube: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    shutil.copytree(earlier_run, run)
    shutil.rmtree(run / "checkpoints")
    (run / "checkpoints").write_text("not a folder")
    before = _files(run)
    started = time.perf_counter()
    code = main(
        ["train", "--config", "test", "--cube", str(tiny_cube), "--output", str(run)]
        + ["--no-progress", *TRAIN_FAST]
    )
    assert code == 2
    assert time.perf_counter() - started < 2
    assert f"{run / 'checkpoints'}: Not a directory" in _one_line_error(capsys, "train")
    assert _files(run) == before  # logs/metrics.csv of the earlier run included


def test_a_failing_fresh_train_leaves_the_earlier_run_as_it_was(
    earlier_run: Path,
    tiny_cube: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The disk fills up in the second batch: the new run has already replaced logs/ by then
    (Lightning's CSV logger deletes metrics.csv when it starts)."""
    run = tmp_path / "run"
    shutil.copytree(earlier_run, run)
    before = _files(run)
    assert len((run / "logs" / "metrics.csv").read_text().splitlines()) > 3
    real_step = NO2LightningModule.training_step
    calls: list[int] = []

    def filling_up(self: NO2LightningModule, *args: object, **kwargs: object) -> object:
        calls.append(1)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_step(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(NO2LightningModule, "training_step", filling_up)
    torch.set_num_threads(1)
    code = main(
        ["train", "--config", "test", "--cube", str(tiny_cube), "--output", str(run)]
        + ["--no-progress", "--set", "seed=7", *TRAIN_FAST]
    )
    assert code == 2 and len(calls) == 2
    assert f"while writing {run}: No space left on device" in _one_line_error(capsys, "train")
    assert _files(run) == before
    assert not [p for p in run.iterdir() if p.name.startswith(".previous-")]


def test_run_refuses_a_tile_larger_than_the_domain_at_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    started = time.perf_counter()
    code = main(
        ["run", "--mode", "test", "--output", str(tmp_path / "run")]
        + ["--set", "data.tile_size=32", "--no-progress"]
    )
    assert code == 2 and time.perf_counter() - started < 5
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "data.tile_size 32 is larger than the domain of the config's grid (16 x 16" in err
    assert not (tmp_path / "run").exists()
