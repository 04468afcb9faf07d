"""Europe at 0.1 deg (200 x 400 cells) for 90 and 365 simulated days: time and peak RSS per stage.

Issue 13's scale benchmark. For each number of days it runs the whole pipeline as a user would,
``main.py --mode full --config demo`` with the Europe grid (35-55 N, 15 W-25 E, the grid of the
regrid and predict benchmarks) and ``synth.days=N``, in a child process whose process tree's
resident memory is sampled every 0.1 s (``bench_demo.run``), then ``no2fusion predict`` of one
test day over the whole domain from the cube. It prints, per stage, the seconds (from the run's
``metrics.json``) and the peak RSS during the stage, and how each grows from the smallest to
the largest number of days (a time ratio equal to the days ratio is linear growth; a memory
ratio near 1 is memory bounded by a budget, not by days x cells).

What is fixed, so that only the number of days changes: one training epoch (every covering tile
of every training day, ``training.warmup_epochs=1``, ``finetune_epochs=0``); the cross-modal
model only (the neural baselines would triple the training time and scale the same way), with
the classical baselines (persistence, climatology, LightGBM) evaluated; 16 test days for the
ablation and robustness runners. The memory budgets are the shipped defaults
(``data.cache_max_gb`` 3 GB for the normalized float16 feature cache; above it samples are read
from the Zarr store), so the peak RSS goal (<= 6 GB whatever the number of days) is a property
of those budgets.

Usage::

    .venv/bin/python benchmarks/bench_scale.py --output /tmp/scale                # 90 and 365
    .venv/bin/python benchmarks/bench_scale.py --output /tmp/scale --days 45 90   # quicker
    .venv/bin/python benchmarks/bench_scale.py --output /tmp/scale --table-only   # re-read
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import psutil
from bench_demo import run, tree_rss

REPO = Path(__file__).resolve().parents[1]
GOAL_RSS_GB = 6.0
EUROPE = "grid.bbox={lat_min: 35.0, lat_max: 55.0, lon_min: -15.0, lon_max: 25.0}"
FIXED = [
    EUROPE,
    "grid.resolution=0.1",
    "training.warmup_epochs=1",
    "training.finetune_epochs=0",
    "evaluation.baselines=[persistence, climatology, lightgbm]",
    "evaluation.robustness_samples=16",
]
STAGES = ("synth", "build", "train_cross_modal", "evaluate", "figures", "predict")
STEP_OF_STAGE = {  # the run's console step header of each stage
    "synth": "Simulating",
    "build": "Building",
    "train_cross_modal": "Training the cross-modal",
    "evaluate": "Evaluation",
    "figures": "Figures",
}


def predict_one_day(run_dir: Path) -> dict[str, float]:
    """``no2fusion predict`` of the last test day over the whole cube: seconds and peak RSS."""
    metrics = json.loads((run_dir / "metrics.json").read_text())
    day = metrics["split"]["last_day"][:10]
    command = [
        str(Path(sys.executable).with_name("no2fusion")),
        "predict",
        "--checkpoint",
        str(run_dir / "checkpoints" / "cross_modal" / "checkpoints" / "best.ckpt"),
        "--cube",
        str(run_dir / "cube.zarr"),
        "--date",
        day,
        "--out",
        str(run_dir / f"predict_{day}.nc"),
        "--no-progress",
    ]
    started = time.perf_counter()
    child = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    watched, peak = psutil.Process(child.pid), 0
    while child.poll() is None:
        peak = max(peak, tree_rss(watched))
        time.sleep(0.1)
    seconds = time.perf_counter() - started
    output = child.stdout.read().decode() if child.stdout else ""
    if child.returncode != 0:
        raise SystemExit(f"predict failed ({child.returncode}):\n{output}")
    return {"seconds": seconds, "peak_rss_gb": peak / 1e9}


def measure(days: int, output: Path, overrides: list[str]) -> dict[str, object]:
    run_dir = output / f"days{days}"
    result = run("full", "demo", run_dir, [*FIXED, f"synth.days={days}", *overrides])
    if result["returncode"] != 0:
        raise SystemExit(f"the run of {days} days failed; see {result['log']}")
    result["predict"] = predict_one_day(run_dir)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    result["train_days"] = metrics["split"]["train_days"]
    result["test_days"] = metrics["split"]["test_days"]
    (output / f"days{days}.json").write_text(json.dumps(result, indent=1))
    return result


def stage_peak(result: dict, stage: str) -> float:
    if stage == "predict":
        return float(result["predict"]["peak_rss_gb"])
    key = STEP_OF_STAGE[stage]
    peaks = [gb for name, gb in result["step_peak_rss_gb"].items() if key in name]
    return max(peaks) if peaks else float("nan")


def stage_seconds(result: dict, stage: str) -> float:
    if stage == "predict":
        return float(result["predict"]["seconds"])
    return float(result["stages_s"].get(stage, float("nan")))


def table(results: dict[int, dict]) -> list[str]:
    days = sorted(results)
    low, high = days[0], days[-1]
    head = " | ".join(f"{d} days: s / peak GB" for d in days)
    lines = [
        f"| stage | {head} | time ratio ({high}/{low} days = {high / low:.2f}) | memory ratio |",
        "|---|" + "---|" * len(days) + "---|---|",
    ]
    for stage in STAGES:
        cells = [
            f"{stage_seconds(results[d], stage):.1f} / {stage_peak(results[d], stage):.2f}"
            for d in days
        ]
        time_ratio = stage_seconds(results[high], stage) / stage_seconds(results[low], stage)
        memory_ratio = stage_peak(results[high], stage) / stage_peak(results[low], stage)
        lines.append(f"| {stage} | {' | '.join(cells)} | {time_ratio:.2f} | {memory_ratio:.2f} |")
    walls = " | ".join(
        f"**{float(results[d]['wall_s']):.0f} / {float(results[d]['peak_rss_gb']):.2f}**"
        for d in days
    )
    lines.append(f"| whole run (wall) | {walls} | | |")
    for d in days:
        r = results[d]
        lines.append(
            f"\n{d} days: {r['train_days']} training days, {r['test_days']} test days; peak RSS "
            f"{float(r['peak_rss_gb']):.2f} GB (goal <= {GOAL_RSS_GB:.0f} GB); load average "
            f"before {r['load_before']}, after {r['load_after']}"
        )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--days", type=int, nargs="+", default=[90, 365])
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="K=V")
    parser.add_argument("--table-only", action="store_true", help="only read finished runs")
    args = parser.parse_args()
    args.output.mkdir(parents=True, exist_ok=True)
    results = {}
    for days in args.days:
        saved = args.output / f"days{days}.json"
        if args.table_only or saved.is_file():
            results[days] = json.loads(saved.read_text())
            continue
        print(f"running {days} days ...", flush=True)
        results[days] = measure(days, args.output, args.overrides)
    print("\n".join(table(results)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
