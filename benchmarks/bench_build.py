"""Benchmark: build the 1000-day demo cube (config/default.yaml) and show where the time goes.

    .venv/bin/python benchmarks/bench_build.py [--sources DIR] [--out DIR] [--workers N]

1. Sources: ``--sources`` (default ``/tmp/no2fusion_bench/sources``) is generated with
   ``no2fusion synth --config config/default.yaml`` when it does not hold a world yet (not timed).
2. The build: ``build_cube`` exactly as ``no2fusion build`` runs it (fresh store), wall time per
   stage from the build report. Goal: <= 120 s on 2 cores.
3. Per-day breakdown: the per-day stages run in this process, one after the other, on
   ``--sample`` days (read L2, QA filter, regrid, align, features, write), as fractions of the
   per-day total. This shows which stage dominates inside the parallel passes.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from no2fusion.config import load_config  # noqa: E402
from no2fusion.io.cube import open_cube, write_day  # noqa: E402
from no2fusion.io.era5 import read_era5  # noqa: E402
from no2fusion.io.tropomi import SentinelDataLoader  # noqa: E402
from no2fusion.pipeline.align import TemporalAligner  # noqa: E402
from no2fusion.pipeline.build import build_cube, find_sources, group_by_day  # noqa: E402
from no2fusion.pipeline.features import FeatureEngineer  # noqa: E402
from no2fusion.pipeline.regrid import AreaWeightedRegridder  # noqa: E402
from no2fusion.vocab import MET_VARIABLES  # noqa: E402


def ensure_sources(sources: Path, config_path: Path) -> None:
    if (sources / "world.json").exists() and any((sources / "tropomi").glob("*.nc")):
        print(f"sources: reusing {sources}")
        return
    print(f"sources: generating the demo world into {sources} (not timed) ...", flush=True)
    exe = Path(sys.executable).parent / "no2fusion"
    subprocess.run(
        [str(exe), "synth", "--config", str(config_path), "--out", str(sources)], check=True
    )


def per_day_breakdown(sources: Path, config_path: Path, sample: int, scratch: Path) -> None:
    """Run the per-day stages sequentially on ``sample`` days and time each."""
    config = load_config(config_path)
    grid = config.grid.to_grid()
    found = find_sources(sources)
    by_day, _ = group_by_day(found.tropomi)
    days = sorted(by_day)[:: max(1, len(by_day) // sample)][:sample]
    met = read_era5(found.era5, grid.bbox, config.pipeline.met_margin_deg)
    cube = open_cube(scratch, complete_only=False)
    day_index = {t: i for i, t in enumerate(cube["time"].values)}
    loader = SentinelDataLoader(config.pipeline.qa_threshold)
    regridder = AreaWeightedRegridder(grid)
    align = config.pipeline.align
    aligner = TemporalAligner(align.window_hours, align.method, align.steps)
    engineer = FeatureEngineer()
    totals = dict.fromkeys(["read_l2", "qa_filter", "regrid", "align", "features", "write"], 0.0)
    pixels = 0
    for day in days:
        clock = time.perf_counter()
        try:
            data = loader.load_tropomi_no2(by_day[day], bbox=grid.bbox)
            totals["read_l2"] += time.perf_counter() - clock
            clock = time.perf_counter()
            kept = loader.apply_filtering(data)
        except Exception:  # noqa: BLE001 - cloudy/empty days are skipped by the build too
            continue
        totals["qa_filter"] += time.perf_counter() - clock
        clock = time.perf_counter()
        result = regridder.regrid(
            kept["no2"].values,
            kept["latitude_bounds"].values,
            kept["longitude_bounds"].values,
            uncertainty=kept["no2_precision"].values,
        )
        pixels += kept.sizes["pixel"]
        totals["regrid"] += time.perf_counter() - clock
        clock = time.perf_counter()
        stamps = kept["time"].values.astype("datetime64[ns]").astype(np.int64)
        overpass = np.datetime64(int(stamps.mean()), "ns")
        aligned = aligner.align_to_overpass(met, overpass)
        totals["align"] += time.perf_counter() - clock
        clock = time.perf_counter()
        features = engineer.transform(aligned)
        totals["features"] += time.perf_counter() - clock
        clock = time.perf_counter()
        values = {
            "no2": result.mean.astype(np.float32),
            "no2_weight": result.weight.astype(np.float32),
            "no2_count": result.count,
            "overpass_time": overpass,
            "met_time": aligned["met_time"].values,
            "features": features,
            **{f"met_{v}": aligned[v].values.astype(np.float32) for v in MET_VARIABLES},
        }
        write_day(scratch, day_index[day], values)
        totals["write"] += time.perf_counter() - clock
    total = sum(totals.values())
    n = len(days)
    print(f"\nper-day stages, sequential in one process, {n} sampled days ({pixels} kept pixels):")
    for name, seconds in totals.items():
        print(f"  {name:10s} {1000 * seconds / n:7.1f} ms/day  {seconds / total:6.1%}")
    print(f"  {'total':10s} {1000 * total / n:7.1f} ms/day")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=REPO / "config" / "default.yaml")
    parser.add_argument("--sources", type=Path, default=Path("/tmp/no2fusion_bench/sources"))
    parser.add_argument("--out", type=Path, default=Path("/tmp/no2fusion_bench/cube.zarr"))
    parser.add_argument("--workers", type=int, default=None, help="default: pipeline.workers")
    parser.add_argument("--sample", type=int, default=40, help="days for the per-day breakdown")
    args = parser.parse_args()

    ensure_sources(args.sources, args.config)
    config = load_config(args.config)
    pipeline = config.pipeline
    if args.workers is not None:
        pipeline = pipeline.model_copy(update={"workers": args.workers})
    shutil.rmtree(args.out, ignore_errors=True)
    print(
        f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} "
        f"(timings under load are slower); workers {pipeline.workers}",
        flush=True,
    )
    clock = time.perf_counter()
    report = build_cube(args.sources, args.out, config.grid.to_grid(), pipeline, progress=False)
    elapsed = time.perf_counter() - clock
    summary = report.summary()
    size_mb = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file()) / 1e6
    print(f"\nbuild of {summary['days_total']} days: {elapsed:.1f} s wall (goal <= 120 s)")
    print(f"  days written {summary['days_written']}, skipped {summary['days_skipped']}")
    print(f"  pixels kept {summary['pixels']['kept']} of {summary['pixels']['pixels_total']}")
    print(f"  cube size {size_mb:.0f} MB on disk")
    print("stages (wall):")
    for name, seconds in report.stage_seconds.items():
        print(f"  {name:22s} {seconds:7.1f} s  {seconds / elapsed:6.1%}")
    print(f"  {'per day (all stages)':22s} {1000 * elapsed / summary['days_total']:7.1f} ms")
    if args.sample > 0:
        per_day_breakdown(args.sources, args.config, args.sample, args.out)
    print("\nsummary json:", json.dumps({"seconds": round(elapsed, 1), **report.stage_seconds}))


if __name__ == "__main__":
    main()
