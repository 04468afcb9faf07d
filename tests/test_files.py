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
