"""``make bench`` runs every benchmark of BENCHMARKS.md: each script exists and takes the
options ``benchmarks/run_all.py`` passes it (the benchmarks themselves are run by hand)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_run_all_lists_scripts_that_take_its_options(tmp_path: Path) -> None:
    run_all = REPO / "benchmarks" / "run_all.py"
    listed = subprocess.run(
        [sys.executable, str(run_all), "--list", "--work", str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.splitlines()
    assert [line.split(":")[0] for line in listed][:3] == ["synth", "build", "regrid"]
    for line in listed:
        argv = line.split(": ", 1)[1].split()
        script = Path(argv[1])
        assert script.is_file(), script
        shown = subprocess.run(
            [sys.executable, str(script), "--help"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert shown.returncode == 0, shown.stderr[-1000:]
        for option in (arg for arg in argv[2:] if arg.startswith("--")):
            assert re.search(rf"{option}\b", shown.stdout), f"{script.name} lacks {option}"
    makefile = (REPO / "Makefile").read_text()
    assert "benchmarks/run_all.py" in makefile
