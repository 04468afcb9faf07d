"""Every benchmark of BENCHMARKS.md's summary table, one after another, with its command there.

    .venv/bin/python benchmarks/run_all.py                 # all (about 2 h on 2 cores)
    .venv/bin/python benchmarks/run_all.py --list          # print the commands, run nothing
    .venv/bin/python benchmarks/run_all.py --only regrid predict

(``make bench`` runs the first.) Each benchmark runs as its own process in the order of the
table; ``build`` and ``train`` use the world and cube the previous steps leave in ``--work``
(default ``/tmp/no2fusion_bench``). A failing benchmark is reported and the rest still run; the
exit code is 1 if any failed.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def commands(work: Path) -> dict[str, list[str]]:
    """Benchmark name -> argv, in the order of BENCHMARKS.md's summary table."""
    py = sys.executable
    bench = REPO / "benchmarks"
    sources, cube = work / "synth" / "world", work / "cube.zarr"  # bench_synth writes world/
    return {
        "synth": [py, str(bench / "bench_synth.py"), "--out", str(work / "synth")],
        "build": [py, str(bench / "bench_build.py"), "--sources", str(sources)]
        + ["--out", str(cube), "--sample", "30"],
        "regrid": [py, str(bench / "bench_regrid.py")],
        "model": [py, str(bench / "bench_model.py"), "--steps", "7", "--stride1-steps", "3"],
        "train": [py, str(bench / "bench_train.py"), "--cube", str(cube), "--epochs", "2"]
        + ["--precisions", "auto", "fp32", "--set", "training.limit_train_batches=8"]
        + ["--set", "training.limit_val_batches=4"],
        "predict": [py, str(bench / "bench_predict.py"), "--repeats", "5"],
        "demo": [py, str(bench / "bench_demo.py"), "--mode", "full", "--config", "demo"]
        + ["--output", str(work / "demo")],
        "demo_test": [py, str(bench / "bench_demo.py"), "--mode", "test"],
        # the model against its baselines: three training seeds on the demo world, then the
        # demo configuration on other worlds (each world is a whole demo run)
        "seeds": [py, str(bench / "bench_seeds.py"), "--cube", str(work / "demo" / "cube.zarr")]
        + ["--output", str(work / "seeds")],
        "worlds": [py, str(bench / "bench_worlds.py"), "--output", str(work / "worlds")],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/no2fusion_bench"))
    parser.add_argument("--list", action="store_true", help="print the commands and stop")
    parser.add_argument("--only", nargs="+", default=None, metavar="NAME")
    args = parser.parse_args()
    table = commands(args.work)
    unknown = set(args.only or ()) - set(table)
    if unknown:
        parser.error(f"unknown benchmark(s) {sorted(unknown)}; known: {', '.join(table)}")
    chosen = {name: argv for name, argv in table.items() if args.only is None or name in args.only}
    if args.list:
        for name, argv in chosen.items():
            print(f"{name}: {shlex.join(argv)}")
        return 0
    args.work.mkdir(parents=True, exist_ok=True)
    failed = []
    for name, argv in chosen.items():
        print(f"\n=== {name}: {shlex.join(argv)}", flush=True)
        started = time.perf_counter()
        code = subprocess.run(argv, cwd=REPO, check=False).returncode
        print(f"=== {name}: exit {code} after {time.perf_counter() - started:.0f} s", flush=True)
        if code:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
