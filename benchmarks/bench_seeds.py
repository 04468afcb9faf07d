"""The seed's verdicts with error bars: three training seeds on one world, mean +- sd.

Trains cross_modal, concat and satellite_only with training seeds 0, 1, 2 (``--seeds``) on one
cube (by default the demo world of a finished ``make demo``: ``outputs/cube.zarr``), with the
demo config (the world and the split stay fixed: ``data.split.seed`` is not the training seed),
evaluates each seed's three models together (``evaluate_run``: identical test cells, LightGBM
seeded by the same seed) and prints, per seed and as mean +- sd over seeds:

- cross_modal RMSE (observations) and against the truth;
- its margin over concat (the seed's "> 5 %" criterion), satellite-only (> 0) and LightGBM;
- its attention entropy ratio (the seed's "<= 0.9" criterion, over every test day);
- its urban and industrial R2 (goal >= 0.5), and per seed where a baseline beats it.

Usage::

    .venv/bin/python benchmarks/bench_seeds.py --cube outputs/cube.zarr --output /tmp/seeds
    .venv/bin/python benchmarks/bench_seeds.py --cube outputs/cube.zarr --output /tmp/seeds \\
        --seeds 1 2 --extra 42=outputs/metrics.json   # make demo's run is training seed 42
    .venv/bin/python benchmarks/bench_seeds.py --cube outputs/cube.zarr --output /tmp/lead0 \\
        --seeds 42 --set data.lead=0      # gap filling (lead 0), scored on the hidden cells
    .venv/bin/python benchmarks/bench_seeds.py ... --table-only   # re-read finished seeds
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from no2fusion.commands.base import parse_overrides  # noqa: E402
from no2fusion.config import load_config  # noqa: E402
from no2fusion.evaluation.evaluate import evaluate_run  # noqa: E402
from no2fusion.evaluation.results import Metrics  # noqa: E402
from no2fusion.training.train import train_model  # noqa: E402

KINDS = ("cross_modal", "concat", "satellite_only")


def run_seed(
    seed: int,
    cube: Path,
    output: Path,
    config_name: str,
    overrides: dict[str, object],
    kinds: tuple[str, ...] = KINDS,
) -> Metrics:
    """Train the models (``kinds``, cross_modal first) with training seed ``seed`` and evaluate
    them together."""
    out = output / f"seed{seed}"
    checkpoints: dict[str, Path] = {}
    for kind in kinds:
        config = load_config(config_name, {**overrides, "seed": seed, "model.kind": kind})
        started = time.perf_counter()
        result = train_model(config, cube, out / kind, progress_bar=False)
        print(f"seed {seed} {kind}: {result.epochs} epochs, {time.perf_counter() - started:.0f} s")
        checkpoints[kind] = result.best_checkpoint
    config = load_config(config_name, {**overrides, "seed": seed})
    result = evaluate_run(checkpoints, cube, config, lambda line: None)  # type: ignore[arg-type]
    (out / "metrics.json").write_text(json.dumps(result.metrics.to_json(), indent=1))
    return result.metrics


def margins(metrics: Metrics) -> dict[str, float]:
    """The numbers compared across seeds (margins: positive = cross_modal better)."""
    rmse = float(metrics.global_.rmse)
    out = {"rmse": rmse}
    if metrics.truth is not None:
        out["rmse_truth"] = float(metrics.truth.model.rmse)
    for name in ("concat", "satellite_only", "lightgbm"):
        if name in metrics.baselines:
            other = float(metrics.baselines[name].global_.rmse)
            out[f"vs_{name}_pct"] = 100 * (other - rmse) / other
    out["entropy_ratio"] = float(metrics.ablation.entropy_ratio)
    region = metrics.breakdowns.region
    for name in ("urban", "industrial"):  # the ">= 0.5" criterion, per seed
        if name in region:
            out[f"{name}_r2"] = float(region[name].r2)
    return out


def _digits(key: str) -> int:
    """Decimals shown: the entropy ratio sits near its 0.9 threshold, so three."""
    return 3 if key == "entropy_ratio" else 2


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cube", type=Path, default=REPO / "outputs" / "cube.zarr")
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--config", default="demo")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--table-only", action="store_true")
    parser.add_argument(
        "--kinds",
        nargs="+",
        choices=KINDS,
        default=list(KINDS),
        help="models to train (cross_modal is always trained)",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config override for every model, e.g. data.lead=0 (gap filling)",
    )
    parser.add_argument(
        "--extra",
        action="append",
        default=[],
        metavar="SEED=METRICS_JSON",
        help="a finished run of the same config with another training seed (e.g. make demo's)",
    )
    args = parser.parse_args()
    overrides = parse_overrides(args.overrides)
    rows: dict[int, dict[str, float]] = {}
    losses: dict[int, list[str]] = {}  # per seed: where a baseline beats cross_modal
    for item in args.extra:
        seed, path = item.split("=", 1)
        extra = Metrics.read(path)
        rows[int(seed)], losses[int(seed)] = margins(extra), list(extra.summary.not_winning)
    for seed in args.seeds:
        path = args.output / f"seed{seed}" / "metrics.json"
        if args.table_only:
            if not path.is_file():
                continue
            metrics = Metrics.read(path)
        else:
            kinds = ("cross_modal", *(k for k in args.kinds if k != "cross_modal"))
            metrics = run_seed(seed, args.cube, args.output, args.config, overrides, kinds)
        rows[seed], losses[seed] = margins(metrics), list(metrics.summary.not_winning)
    keys = sorted({key for row in rows.values() for key in row})
    print("| seed | " + " | ".join(keys) + " |")
    print("|---" * (len(keys) + 1) + "|")
    for seed, row in rows.items():
        values = [f"{row.get(k, float('nan')):.{_digits(k)}f}" for k in keys]
        print(f"| {seed} | " + " | ".join(values) + " |")
    if len(rows) > 1:
        cells = []
        for key in keys:
            values = [row[key] for row in rows.values() if key in row]
            mean, sd, n = statistics.mean(values), statistics.stdev(values), _digits(key)
            cells.append(f"{mean:.{n}f} ± {sd:.{n}f}")
        print("| mean ± sd | " + " | ".join(cells) + " |")
    for seed, lines in losses.items():
        print(f"seed {seed}: baselines win in: {'; '.join(lines) or 'nowhere'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
