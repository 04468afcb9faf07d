"""Wall time and peak RSS of the whole pipeline: ``main.py --mode test`` and ``make demo``.

Runs ``python main.py --mode MODE`` in a fresh output directory as a child process, samples the
resident memory of the whole process tree (the run and its worker processes) every 0.1 s, and
prints the wall time, the peak summed RSS and the per-stage seconds the run recorded in
``metrics.json`` (``timings_seconds``), each also as a share of the wall time (ratios within one
run, so they stay meaningful on a loaded machine). Goals (issue 6): ``make demo`` (``--mode
full --config config/demo.yaml``) <= 15 min and <= 4 GB; ``--mode test`` <= 2 min.

Usage::

    .venv/bin/python benchmarks/bench_demo.py                      # --mode test
    .venv/bin/python benchmarks/bench_demo.py --mode full --config config/demo.yaml   # make demo
    .venv/bin/python benchmarks/bench_demo.py --mode full --set synth.days=120   # a smaller demo
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
GOALS_S = {"test": 120.0, "full": 15 * 60.0}
GOAL_RSS_GB = 4.0
STEP = re.compile(r"^Step \d+: ")


def tree_rss(process: psutil.Process) -> int:
    """Summed RSS (bytes) of a process and all its descendants."""
    total = 0
    for proc in [process, *process.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            total += proc.memory_info().rss
    return total


def run(mode: str, config: str | None, output: Path, overrides: list[str]) -> dict[str, object]:
    command = [
        sys.executable,
        str(REPO / "main.py"),
        "--mode",
        mode,
        "--output",
        str(output),
        "--no-progress",
    ]
    if config:
        command += ["--config", config]
    for item in overrides:
        command += ["--set", item]
    log = output.with_suffix(".log")
    load_before = os.getloadavg()
    started = time.perf_counter()
    step_peaks: dict[str, int] = {}  # "Step N: title" header of the log -> peak RSS during it
    step = "start-up (imports, config)"
    with log.open("w") as handle, log.open() as reader:
        child = subprocess.Popen(command, cwd=REPO, stdout=handle, stderr=subprocess.STDOUT)
        watched = psutil.Process(child.pid)
        peak = 0
        while child.poll() is None:
            for line in reader.read().splitlines():
                if STEP.match(line):
                    step = line.strip()
            rss = tree_rss(watched)
            peak = max(peak, rss)
            step_peaks[step] = max(step_peaks.get(step, 0), rss)
            time.sleep(0.1)
    wall = time.perf_counter() - started
    metrics_path = output / "metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
    return {
        "command": " ".join(command),
        "returncode": child.returncode,
        "wall_s": wall,
        "peak_rss_gb": peak / 1e9,
        "step_peak_rss_gb": {name: value / 1e9 for name, value in step_peaks.items()},
        "stages_s": metrics.get("timings_seconds", {}),
        "rmse": metrics.get("global", {}).get("rmse"),
        "load_before": load_before,
        "load_after": os.getloadavg(),
        "log": str(log),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("test", "full"), default="test")
    parser.add_argument("--config", default=None, help="default: the mode's config")
    parser.add_argument("--output", type=Path, default=None, help="default: a temporary directory")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    output = args.output or Path(tempfile.mkdtemp(prefix=f"bench_demo_{args.mode}_")) / "outputs"
    result = run(args.mode, args.config, output, args.overrides)
    goal = GOALS_S[args.mode]
    wall, peak = float(result["wall_s"]), float(result["peak_rss_gb"])  # type: ignore[arg-type]
    print(f"command     : {result['command']}")
    print(f"exit code   : {result['returncode']}  (log: {result['log']})")
    print(
        f"cpu cores   : {os.cpu_count()}  load avg before {result['load_before']}"
        f"  after {result['load_after']}"
    )
    print(f"wall time   : {wall:8.1f} s   goal {goal:.0f} s   ratio {wall / goal:.2f}")
    print(
        f"peak RSS    : {peak:8.2f} GB  goal {GOAL_RSS_GB:.0f} GB  ratio {peak / GOAL_RSS_GB:.2f}"
    )
    print(f"headline RMSE (umol m-2): {result['rmse']}")
    step_peaks = result["step_peak_rss_gb"]
    if isinstance(step_peaks, dict):
        print("peak RSS per step of the run's console output:")
        for name, gigabytes in step_peaks.items():
            print(f"  {gigabytes:6.2f} GB  {name}")
    stages = result["stages_s"]
    if isinstance(stages, dict) and stages:
        print("stage seconds (share of wall time):")
        for name, seconds in stages.items():
            print(f"  {name:<22}{seconds:8.1f} s  {100 * seconds / wall:5.1f} %")
        rest = wall - sum(stages.values())
        print(f"  {'other (imports, I/O)':<22}{rest:8.1f} s  {100 * rest / wall:5.1f} %")
    return int(result["returncode"] != 0)


if __name__ == "__main__":
    sys.exit(main())
