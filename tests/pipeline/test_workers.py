"""Worker processes of a build die with it (issue 12): after ``kill -9`` of a build with two
workers, none of its processes (workers, their reader helpers) keeps running and writing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil


def _wait(condition: object, timeout: float, step: float = 0.1) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(step)
    return False


def _command_line(process: psutil.Process) -> str:
    """The process's command line; "" once it has exited (a zombie, or gone): short-lived
    children come and go while the family is listed."""
    try:
        return " ".join(process.cmdline())
    except psutil.Error:
        return ""


def _alive(process: psutil.Process) -> bool:
    """Running and not a zombie (a zombie has exited and only waits to be reaped)."""
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def test_kill_9_of_a_build_takes_its_workers_along(synth_sources: Path, tmp_path: Path) -> None:
    out = tmp_path / "cube.zarr"
    build = subprocess.Popen(
        [sys.executable, "-m", "no2fusion.cli", "build", "--config", "test"]
        + ["--sources", str(synth_sources), "--out", str(out), "--no-progress"]
        + ["--set", "pipeline.workers=2"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    parent = psutil.Process(build.pid)
    family: list[psutil.Process] = []
    try:
        # both workers started and reading L2 files (each through its own reader helper)
        def busy() -> bool:
            family = parent.children(recursive=True)
            helpers = [p for p in family if "no2fusion.io.isolated" in _command_line(p)]
            return len(helpers) >= 2

        assert _wait(busy, timeout=20), "the build never started two busy workers"
        family = parent.children(recursive=True)
        assert len(family) >= 4
        build.send_signal(signal.SIGKILL)
        build.wait(timeout=5)

        def all_gone() -> bool:
            return not [p for p in family if _alive(p)]

        assert _wait(all_gone, timeout=5), [_command_line(p) for p in family if _alive(p)]
        time.sleep(1.0)
        assert not out.exists()  # nobody went on to create the cube and write days into it
    finally:  # orphans of a failed run are not our children any more: kill them by name
        for process in [parent, *family, *psutil.Process(os.getpid()).children(recursive=True)]:
            if process.is_running():
                process.kill()


CHILD = """
import os, time
from no2fusion.io.isolated import exit_with_parent
exit_with_parent(os.getppid(), 0.1)
print("ready", flush=True)
time.sleep(60)
"""
PARENT = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, sys.argv[1]], stdout=subprocess.PIPE, text=True)
child.stdout.readline()
print(child.pid, flush=True)
time.sleep(60)
"""


def test_exit_with_parent_exits_when_the_parent_is_gone(tmp_path: Path) -> None:
    """The watchdog itself: a child whose parent is killed with SIGKILL exits."""
    (tmp_path / "child.py").write_text(CHILD)
    (tmp_path / "parent.py").write_text(PARENT)
    parent = subprocess.Popen(
        [sys.executable, str(tmp_path / "parent.py"), str(tmp_path / "child.py")],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert parent.stdout is not None
        child = psutil.Process(int(parent.stdout.readline()))
        parent.kill()
        parent.wait()
        assert _wait(lambda: not _alive(child), timeout=5)
    finally:
        for process in psutil.Process(os.getpid()).children(recursive=True):
            process.kill()
