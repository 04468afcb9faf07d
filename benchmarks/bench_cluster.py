"""The cluster path measured on one machine: the build on dask.distributed, training under DDP.

Issue 13, item 4. Both parts run the commands a cluster user runs, as child processes:

1. **Build on a dask.distributed cluster.** A ``LocalCluster`` of 1, then 2 worker processes
   (one thread each) is started here, and ``no2fusion build --scheduler tcp://...`` builds the
   same simulated sources into a fresh cube on it. On a real cluster the scheduler address comes
   from ``dask scheduler`` / ``dask worker`` (or dask-jobqueue) instead. Speed-up = wall(1) /
   wall(2), in the same run.
2. **Training under Lightning DDP on CPU processes.** ``no2fusion train --set
   training.devices=K --set training.strategy=ddp`` (Lightning starts the K processes; on Slurm
   it reads the allocation instead) for a short and a long number of batches per rank; the
   difference removes start-up, cube loading and validation, so samples/s = K x batch x
   (extra batches) / (extra seconds). Ratio = samples/s(2) / samples/s(1).

Usage::

    .venv/bin/python benchmarks/bench_cluster.py --work /tmp/cluster --cube CUBE
        [--days 90] [--batches 6 30]

``--cube`` is a built cube to train on (e.g. the demo run's ``outputs/cube.zarr``); the build
part simulates ``--days`` days of the demo world into ``--work``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CLI = str(Path(sys.executable).with_name("no2fusion"))


def timed(command: list[str], log: Path) -> float:
    """Wall seconds of ``command`` (its output into ``log``); exits on failure."""
    started = time.perf_counter()
    with log.open("w") as handle:
        code = subprocess.call(command, cwd=REPO, stdout=handle, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - started
    if code != 0:
        raise SystemExit(f"{' '.join(command)} failed with {code}; see {log}")
    return seconds


def build_on_cluster(work: Path, days: int) -> list[tuple[int, float]]:
    from dask.distributed import LocalCluster

    sources = work / "sources"
    if not (sources / "era5").is_dir():
        timed(
            [CLI, "synth", "--config", "demo", "--set", f"synth.days={days}", "--out", str(sources)]
            + ["--no-progress"],
            work / "synth.log",
        )
    rows = []
    for workers in (1, 2):
        cube = work / f"cube_{workers}.zarr"
        shutil.rmtree(cube, ignore_errors=True)
        with LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster:
            command = [CLI, "build", "--config", "demo", "--sources", str(sources)]
            command += ["--out", str(cube), "--scheduler", str(cluster.scheduler_address)]
            seconds = timed(command + ["--no-progress"], work / f"build_{workers}.log")
        rows.append((workers, seconds))
        print(f"build, {workers} dask worker(s): {seconds:.1f} s", flush=True)
    return rows


def train_seconds(cube: Path, out: Path, devices: int, batches: int, log: Path) -> float:
    shutil.rmtree(out, ignore_errors=True)
    command = [CLI, "train", "--config", "demo", "--cube", str(cube), "--output", str(out)]
    for setting in (
        "training.accelerator=cpu",
        f"training.devices={devices}",
        f"training.strategy={'ddp' if devices > 1 else 'auto'}",
        "training.warmup_epochs=1",
        "training.finetune_epochs=0",
        f"training.limit_train_batches={batches}",
        "training.limit_val_batches=1",
    ):
        command += ["--set", setting]
    return timed(command + ["--no-progress"], log)


def ddp_throughput(work: Path, cube: Path, batches: tuple[int, int], batch_size: int) -> list:
    rows = []
    short, long = batches
    for devices in (1, 2):
        seconds = [
            train_seconds(
                cube, work / f"train_{devices}_{n}", devices, n, work / f"train_{devices}_{n}.log"
            )
            for n in (short, long)
        ]
        rate = devices * batch_size * (long - short) / (seconds[1] - seconds[0])
        rows.append((devices, seconds, rate))
        print(
            f"train, {devices} process(es): {short} batches/rank {seconds[0]:.1f} s, {long} "
            f"batches/rank {seconds[1]:.1f} s -> {rate:.1f} samples/s",
            flush=True,
        )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--cube", type=Path, required=True, help="a built cube to train on")
    parser.add_argument("--days", type=int, default=90, help="days simulated for the build part")
    parser.add_argument("--batches", type=int, nargs=2, default=[6, 30])
    parser.add_argument("--skip-build", action="store_true")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(REPO / "src"))
    from no2fusion.config import load_config, shipped_config

    batch_size = load_config(shipped_config("demo")).data.batch_size
    print(f"{os.cpu_count()} CPU cores, load average {os.getloadavg()}", flush=True)
    builds = [] if args.skip_build else build_on_cluster(args.work, args.days)
    trains = ddp_throughput(args.work, args.cube, tuple(args.batches), batch_size)
    print()
    if builds:
        (one, t1), (two, t2) = builds
        print("| build on dask.distributed | wall s | speed-up |\n|---|---|---|")
        print(f"| {one} worker | {t1:.1f} | 1.00 |\n| {two} workers | {t2:.1f} | {t1 / t2:.2f} |")
    print("\n| Lightning training | processes | samples/s | ratio |\n|---|---|---|---|")
    base = trains[0][2]
    for devices, _, rate in trains:
        label = "single process" if devices == 1 else "DDP (gloo)"
        print(f"| {label} | {devices} | {rate:.1f} | {rate / base:.2f} |")
    print(f"\nload average after: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
