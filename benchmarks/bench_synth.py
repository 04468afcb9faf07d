"""Benchmark: simulate and write the default world (config/default.yaml, 1000 days).

Run: .venv/bin/python benchmarks/bench_synth.py [--config CFG] [--days N] [--workers N]
     [--crop-margin-deg D] [--out DIR]

Prints the wall time, where it went (meteorology / transport / sampling / writing, measured in
the main process; plus the seconds the writer processes spent), the CPU seconds of the main
process and of the writer processes (less sensitive to other load on a shared machine than the
wall time), and the size of what was written. Goal (issue 2): <= 60 s on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path


def _cpu_seconds() -> tuple[float, float]:
    me = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime, children.ru_utime + children.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--config", default=str(Path(__file__).resolve().parents[1] / "config" / "default.yaml")
    )
    parser.add_argument("--days", type=int, default=None, help="override synth.days")
    parser.add_argument("--workers", type=int, default=None, help="override synth.workers")
    parser.add_argument(
        "--crop-margin-deg",
        type=float,
        default=None,
        help="override synth.satellite.crop_margin_deg (write only pixels near the domain)",
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="keep the world here (default: temp, deleted)"
    )
    args = parser.parse_args()

    from no2fusion.config import load_config
    from no2fusion.synth.transport import advance_column, hour_inputs
    from no2fusion.synth.world import generate_world

    overrides: dict[str, object] = {}
    if args.days is not None:
        overrides["synth.days"] = args.days
    if args.workers is not None:
        overrides["synth.workers"] = args.workers
    if args.crop_margin_deg is not None:
        overrides["synth.satellite.crop_margin_deg"] = args.crop_margin_deg
    config = load_config(args.config, overrides)
    # numba kernels are cached on disk (cache=True); make sure compilation is not timed
    assert advance_column is not None and hour_inputs is not None
    warm = load_config(args.config, {"synth.days": 1, "synth.workers": 1})
    out = args.out or Path(tempfile.mkdtemp(prefix="bench_synth_"))
    try:
        generate_world(warm, out / "warmup", progress=False)
        shutil.rmtree(out / "warmup")
        cpu0 = _cpu_seconds()
        start = time.perf_counter()
        summary = generate_world(config, out / "world", progress=False)
        wall = time.perf_counter() - start
        cpu1 = _cpu_seconds()
        size = sum(f.stat().st_size for f in (out / "world").rglob("*") if f.is_file())
    finally:
        if args.out is None:
            shutil.rmtree(out, ignore_errors=True)
    t = summary.timings
    grid_shape = config.grid.to_grid().shape
    cpu_main, cpu_writers = cpu1[0] - cpu0[0], cpu1[1] - cpu0[1]
    lines = [
        f"bench_synth: {config.synth.days} days, grid {grid_shape}, "
        f"workers {config.synth.workers}, cores {os.cpu_count()}, "
        f"crop_margin_deg {config.synth.satellite.crop_margin_deg}",
        f"  wall time                  {wall:8.1f} s   (goal <= 60 s)",
    ]
    for stage in ("meteorology", "transport", "sampling", "writing"):
        lines.append(f"  main: {stage:<20} {t[stage]:8.1f} s   ({t[stage] / wall:5.1%} of wall)")
    lines += [
        f"  writer processes, summed   {t['writing_in_workers']:8.1f} s   (inside write calls)",
        f"  CPU main process           {cpu_main:8.1f} s",
        f"  CPU writer processes       {cpu_writers:8.1f} s   (0 when workers = 1)",
        f"  CPU total / 2 cores        {(cpu_main + cpu_writers) / 2:8.1f} s   (quiet floor)",
        f"  files: {len(summary.tropomi_files)} L2, {len(summary.era5_files)} ERA5; "
        f"{size / 1e9:.2f} GB written",
        f"  pixels {summary.pixels} ({summary.pixels / summary.days:.0f} per day), "
        f"qa > 0.75: {summary.pixels_qa_pass / summary.pixels:.1%}",
        f"  load average (1 min) at the end: {os.getloadavg()[0]:.1f} (2 cores: above ~2 the "
        "wall times are inflated by other work)",
    ]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
