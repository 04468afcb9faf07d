"""``files.atomic_path``: the target appears only complete; a failed write changes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from no2fusion.files import atomic_path


def test_a_finished_write_replaces_and_a_failed_one_changes_nothing(tmp_path: Path) -> None:
    target = tmp_path / "metrics.json"
    target.write_text("old")
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp != target
        tmp.write_text("new")
        assert target.read_text() == "old"  # not visible before the block ends
    assert target.read_text() == "new"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash mid-write")
    assert target.read_text() == "new" and sorted(tmp_path.iterdir()) == [target]


def test_restored_on_failure_puts_back_exactly_what_was_there(tmp_path: Path) -> None:
    from no2fusion.files import restored_on_failure

    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "metrics.csv").write_text("epoch,loss\n0,1.0\n1,0.5\n")
    (tmp_path / "config.yaml").write_text("seed: 1\n")
    with pytest.raises(OSError), restored_on_failure(tmp_path, ["logs", "config.yaml", "new"]):
        (tmp_path / "logs" / "metrics.csv").unlink()  # what Lightning's CSV logger does
        (tmp_path / "logs" / "other.csv").write_text("x")
        (tmp_path / "config.yaml").write_text("seed: 2\n")
        (tmp_path / "new").write_text("kept: it did not exist before")
        raise OSError(28, "No space left on device")
    assert (tmp_path / "logs" / "metrics.csv").read_text() == "epoch,loss\n0,1.0\n1,0.5\n"
    assert sorted(p.name for p in (tmp_path / "logs").iterdir()) == ["metrics.csv"]
    assert (tmp_path / "config.yaml").read_text() == "seed: 1\n"
    assert (tmp_path / "new").is_file()
    with restored_on_failure(tmp_path, ["config.yaml"]):
        (tmp_path / "config.yaml").write_text("seed: 3\n")
    assert (tmp_path / "config.yaml").read_text() == "seed: 3\n"  # success keeps the new
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".previous")]


def test_output_checks_name_the_users_path(tmp_path: Path) -> None:
    from no2fusion.files import check_output_dir, check_output_file

    (tmp_path / "file").write_text("x")
    with pytest.raises(OSError, match="file"):
        check_output_dir(tmp_path / "file" / "run")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "checkpoints").write_text("x")
    with pytest.raises(OSError) as error:
        check_output_dir(tmp_path / "run", subdirs=("checkpoints",))
    assert error.value.filename == str(tmp_path / "run" / "checkpoints")
    with pytest.raises(OSError) as error:
        check_output_file(tmp_path / "run")
    assert error.value.filename == str(tmp_path / "run")
    check_output_dir(tmp_path / "new" / "deeper")  # absent folders are fine (created later)
    check_output_file(tmp_path / "new" / "pred.nc")
    assert not (tmp_path / "new").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "run"]
