"""``no2fusion run --mode full|test|eval --config CFG --output DIR`` (``python main.py ...``).

Sits at the CLI edge and wires every stage into one run directory (DESIGN §5)::

    DIR/config.yaml                  the resolved config
    DIR/sources/{tropomi,era5,truth} the simulated world in the real formats   (full, test)
    DIR/cube.zarr                    the analysis-ready datacube               (full, test)
    DIR/checkpoints/<kind>/          one training run per model kind: checkpoints/best.ckpt,
                                     last.ckpt, logs/, training_history.json
    DIR/metrics.json, predictions.nc, *.png, report.html

``full``: simulate -> build -> train cross_modal, concat, satellite_only -> evaluate (baselines,
breakdowns, ablation, robustness, attention) -> figures -> report. ``test``: the same on
``config/test.yaml`` unless ``--config`` is given (into ``outputs/test`` unless ``--output``
is given). ``eval``: re-evaluate an existing run directory (its ``config.yaml``, cube and
checkpoints) or ``--checkpoint`` + ``--cube``.

Re-running reuses every stage that completed before with the same config sections (a marker in
``DIR/.stages/`` is written only after a stage finishes); a stage made with a different config
is an error, never silently mixed or deleted; an interrupted training continues from its
``last.ckpt``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from no2fusion.cli import Command, _add_config_argument, _parse_overrides

RULE = "=" * 70
SUBRULE = "-" * 50
MODEL_KINDS = ("cross_modal", "concat", "satellite_only")
DEFAULT_CONFIGS = {"full": Path("config/default.yaml"), "test": Path("config/test.yaml")}


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--mode",
        choices=("full", "test", "eval"),
        default="full",
        help="full: the whole demo; test: the same on a tiny config; eval: re-evaluate a run",
    )
    _add_config_argument(parser)
    parser.set_defaults(config=None)  # resolved per mode (test -> config/test.yaml)
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help="run directory (default: outputs; outputs/test for --mode test)",
    )
    parser.add_argument(
        "--checkpoint", type=Path, default=None, help="eval: a cross_modal checkpoint"
    )
    parser.add_argument("--cube", type=Path, default=None, help="eval: the cube of --checkpoint")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _banner() -> None:
    print(RULE)
    print("  CROSS-MODAL ATTENTION FRAMEWORK FOR NO\u2082 PREDICTION")
    print("  Sentinel-5P TROPOMI + Meteorological Data Fusion")
    print(RULE)


class Steps:
    """Numbered step headers and stage markers (``.stages/<name>.json``) of a run directory."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.number = 0
        self.timings: dict[str, float] = {}

    def header(self, title: str) -> None:
        self.number += 1
        print(f"\nStep {self.number}: {title}")
        print(SUBRULE, flush=True)

    def marker(self, name: str) -> Path:
        return self.run_dir / ".stages" / f"{name}.json"

    def done(self, name: str, inputs: dict[str, Any]) -> bool:
        """True when stage ``name`` completed before with the same ``inputs`` (config sections).

        Raises ``ConfigError`` when it completed with different inputs: reusing it would mix two
        configs in one run directory, and deleting it silently could destroy a long run.
        """
        from no2fusion.errors import ConfigError

        path = self.marker(name)
        if not path.is_file():
            return False
        stored = json.loads(path.read_text()).get("inputs")
        if stored != json.loads(json.dumps(inputs, default=str)):
            raise ConfigError(
                f"stage '{name}' in this run directory was made with a different config; "
                "use a new --output (or delete the directory)",
                self.run_dir,
            )
        return True

    def mark(self, name: str, inputs: dict[str, Any], info: dict[str, Any]) -> None:
        """Record that stage ``name`` completed with ``inputs`` (written last, atomically)."""
        path = self.marker(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        partial.write_text(json.dumps({"inputs": inputs, **info}, indent=1, default=str))
        partial.replace(path)

    def timed(self, name: str, action: Callable[[], Any]) -> Any:
        started = time.perf_counter()
        result = action()
        self.timings[name] = time.perf_counter() - started
        return result


# Config sections each stage depends on: a stage is reused only when they are unchanged.
STAGE_SECTIONS = {
    "synth": ("seed", "grid", "synth"),
    "build": ("seed", "grid", "synth", "pipeline"),
    "train": ("seed", "grid", "synth", "pipeline", "data", "model", "training"),
}


def stage_inputs(config: Any, stage: str) -> dict[str, Any]:
    """The plain-typed config sections stage ``stage`` depends on."""
    dumped = config.model_dump(mode="json")
    inputs = {section: dumped[section] for section in STAGE_SECTIONS[stage]}
    for section in inputs.values():  # how many processes do the work never changes the result
        if isinstance(section, dict):
            section.pop("workers", None)
            section.pop("scheduler", None)
    return inputs


def _print_history(
    history: dict[str, list[float]], warmup_epochs: int, finetune_epochs: int
) -> None:
    """The seed's phase/epoch lines from a training history (every ~quarter of each phase)."""
    epochs = [int(e) for e in history.get("epoch", [])]
    train = history.get("train_loss", [])
    val = history.get("val_loss", [])
    phases = (
        ("Phase 1: Warmup", [e for e in epochs if e < warmup_epochs], 0, warmup_epochs),
        (
            "Phase 2: Fine-tuning",
            [e for e in epochs if e >= warmup_epochs],
            warmup_epochs,
            finetune_epochs,
        ),
    )
    for title, phase_epochs, offset, planned in phases:
        if not phase_epochs:
            continue
        print(
            f"{title} ({planned} epochs{', stopped early' if len(phase_epochs) < planned else ''})"
        )
        step = max(1, math.ceil(len(phase_epochs) / 4))
        for i, epoch in enumerate(phase_epochs):
            if (i + 1) % step and i != len(phase_epochs) - 1:
                continue
            k = epochs.index(epoch)
            print(
                f"  Epoch {epoch - offset + 1}/{planned} - Train Loss: {train[k]:.6f}"
                f" - Val Loss: {val[k]:.6f}"
            )


def _train(steps: Steps, config: Any, cube: Path, kind: str, progress: bool) -> Path:
    """Train one model kind (or reuse it); returns its best checkpoint."""
    from no2fusion.training.train import train_model

    out = steps.run_dir / "checkpoints" / kind
    best = out / "checkpoints" / "best.ckpt"
    kind_config = config.model_copy(
        update={"model": config.model.model_copy(update={"kind": kind})}
    )
    inputs = stage_inputs(kind_config, "train")
    if steps.done(f"train_{kind}", inputs) and best.is_file():
        print(f"  {kind}: reusing {best}")
        return best
    resume = (out / "checkpoints" / "last.ckpt").is_file()
    print(f"  {kind}: {'resuming' if resume else 'training'} -> {out}", flush=True)
    result = steps.timed(
        f"train_{kind}",
        lambda: train_model(kind_config, cube, out, resume=resume, progress_bar=progress),
    )
    _print_history(result.history, config.training.warmup_epochs, config.training.finetune_epochs)
    steps.mark(
        f"train_{kind}", inputs, {"best": str(result.best_checkpoint), "epochs": result.epochs}
    )
    return Path(result.best_checkpoint)


def print_summary(metrics: dict[str, Any]) -> None:
    """The seed's "EVALUATION METRICS SUMMARY" block, plus the baselines and verdicts."""
    g = metrics["global"]
    print(f"\n{RULE}\nEVALUATION METRICS SUMMARY  (units: {metrics['units']}, test split)\n{RULE}")
    print("\nGLOBAL METRICS:")
    print("-" * 40)
    print(f"  RMSE: {g['rmse']:.4f}  ({g['rmse_molec_cm2']:.3e} molec cm-2)")
    print(f"  MAE:  {g['mae']:.4f}")
    print(f"  R\u00b2:   {g['r2']:.4f}")
    print(f"  Bias: {g['bias']:.4f}")
    print(f"  Spatial Correlation: {g['spatial_correlation']:.4f}")
    print(f"  Skill vs persistence: {g.get('skill_vs_persistence', math.nan):.4f}")
    print(f"  Skill vs climatology: {g.get('skill_vs_climatology', math.nan):.4f}")
    print(f"  Valid cells: {g['n_valid']:,}")
    print("\nREGIONAL BREAKDOWN:")
    print("-" * 40)
    print(f"{'Region':<16}{'RMSE':<13}{'MAE':<13}{'R²':<10}{'n valid':>10}")
    for region, s in metrics["breakdowns"]["region"].items():
        if s["n_valid"]:
            print(
                f"{region:<16}{s['rmse']:<13.6f}{s['mae']:<13.6f}{s['r2']:<10.4f}{s['n_valid']:>10,}"
            )
    print("\nBASELINES (identical test cells):")
    print("-" * 40)
    print(f"{'Model':<16}{'RMSE':<13}{'MAE':<13}{'R²':<10}{'corr':<10}")
    for row in metrics["summary"]["table"]:
        print(
            f"{row['name']:<16}{row['rmse']:<13.6f}{row['mae']:<13.6f}{row['r2']:<10.4f}"
            f"{row['spatial_correlation']:<10.4f}"
        )
    print("\nVERDICTS:")
    print("-" * 40)
    for verdict in metrics["summary"]["verdicts"]:
        state = {True: "PASS", False: "FAIL", None: "N/A "}[verdict["passed"]]
        print(f"  [{state}] {verdict['criterion']}: {verdict['statement']}")


def evaluate_and_report(
    steps: Steps, config: Any, cube: Path, checkpoints: dict[str, Path]
) -> dict[str, Any]:
    """Evaluate, write metrics.json / predictions.nc / figures / report.html; print the summary."""
    from no2fusion.config import dump_config
    from no2fusion.evaluation.evaluate import evaluate_run, write_predictions
    from no2fusion.report.figures import write_figures
    from no2fusion.report.html import write_report

    run_dir = steps.run_dir
    steps.header("Evaluation: metrics, baselines, breakdowns, ablation, robustness")
    result = steps.timed(
        "evaluate",
        lambda: evaluate_run(checkpoints, cube, config, log=lambda line: print(line, flush=True)),
    )
    metrics = result.metrics
    write_predictions(result, run_dir / "predictions.nc")
    steps.header("Figures and report")
    figures = steps.timed("figures", lambda: write_figures(result, run_dir))
    metrics["timings_seconds"] = dict(steps.timings)
    config_path = run_dir / "config.yaml"
    if not config_path.is_file():
        dump_config(config, config_path)
    metrics_path = run_dir / "metrics.json"
    partial = metrics_path.with_name("metrics.json.partial")
    partial.write_text(
        json.dumps(_json_safe(metrics), indent=1, default=_json_default, allow_nan=False)
    )
    partial.replace(metrics_path)
    write_report(run_dir / "report.html", metrics, figures, config_path.read_text())
    print(
        f"  wrote {metrics_path}, predictions.nc, {len(figures)} figures, report.html in {run_dir}"
    )
    print_summary(metrics)
    return metrics


def _json_safe(value: Any) -> Any:
    """A copy with NaN/inf floats as None, so metrics.json is strict JSON (null)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    return value


def _json_default(value: Any) -> Any:
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def _resolve_config(args: argparse.Namespace, run_dir: Path) -> Any:
    from no2fusion.config import load_config

    overrides = _parse_overrides(args.overrides)
    if args.config is not None:
        return load_config(args.config, overrides)
    if args.mode == "eval" and (run_dir / "config.yaml").is_file():
        return load_config(run_dir / "config.yaml", overrides)
    default = DEFAULT_CONFIGS.get(args.mode, DEFAULT_CONFIGS["full"])
    if not default.is_file():  # not run from the repository root: use the checkout's config/
        default = Path(__file__).resolve().parents[3] / default
    return load_config(default, overrides)


def _pipeline(args: argparse.Namespace, steps: Steps, config: Any) -> tuple[Path, dict[str, Path]]:
    """simulate -> build -> train the three models; returns (cube, checkpoints)."""
    from no2fusion.config import dump_config
    from no2fusion.pipeline.build import build_cube
    from no2fusion.synth.world import generate_world

    run_dir = steps.run_dir
    progress = not args.no_progress
    dump_config(config, run_dir / "config.yaml")
    sources = run_dir / "sources"
    cube = run_dir / "cube.zarr"

    steps.header("Simulating the world (TROPOMI L2 + ERA5 files in the real formats)")
    grid = config.grid.to_grid()
    print(f"  Days: {config.synth.days} from {config.synth.start_date}")
    print(f"  Grid size: {grid.shape[0]}x{grid.shape[1]} cells of {config.grid.resolution} deg")
    if steps.done("synth", stage_inputs(config, "synth")):
        print(f"  reusing {sources}")
    else:
        summary = steps.timed("synth", lambda: generate_world(config, sources, progress=progress))
        print("  " + summary.describe().replace("\n", "\n  "))
        steps.mark(
            "synth",
            stage_inputs(config, "synth"),
            {"days": summary.days, "files": len(summary.tropomi_files)},
        )

    steps.header(
        "Building the datacube (QA filter, exact area-weighted regrid, alignment, features)"
    )
    if steps.done("build", stage_inputs(config, "build")) and cube.exists():
        print(f"  reusing {cube}")
    else:
        report = steps.timed(
            "build",
            lambda: build_cube(
                sources,
                cube,
                grid,
                config.pipeline,
                scheduler=config.pipeline.scheduler,
                progress=progress,
            ),
        )
        print(f"  cube: {cube}")
        described = getattr(report, "describe", None)
        if callable(described):
            print("  " + str(described()).replace("\n", "\n  "))
        steps.mark("build", stage_inputs(config, "build"), {"cube": str(cube)})

    checkpoints: dict[str, Path] = {}
    wanted = ["cross_modal"] + [k for k in MODEL_KINDS[1:] if k in config.evaluation.baselines]
    for kind in wanted:
        title = (
            "Training the cross-modal model with the warm-start regime"
            if kind == "cross_modal"
            else f"Training the {kind} baseline with the same regime"
        )
        steps.header(title)
        checkpoints[kind] = _train(steps, config, cube, kind, progress)
    return cube, checkpoints


def _run(args: argparse.Namespace) -> int:
    from no2fusion.errors import ConfigError

    default_dir = Path("outputs/test" if args.mode == "test" else "outputs")
    run_dir = Path(args.output) if args.output is not None else default_dir
    started = time.perf_counter()
    _banner()
    config = _resolve_config(args, run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    steps = Steps(run_dir)
    if args.mode == "eval":
        if args.checkpoint is not None:
            if args.cube is None:
                raise ConfigError("--mode eval with --checkpoint also needs --cube")
            checkpoints = {"cross_modal": args.checkpoint}
            cube = args.cube
        else:
            cube = args.cube or run_dir / "cube.zarr"
            checkpoints = {
                kind: run_dir / "checkpoints" / kind / "checkpoints" / "best.ckpt"
                for kind in MODEL_KINDS
                if (run_dir / "checkpoints" / kind / "checkpoints" / "best.ckpt").is_file()
            }
            if "cross_modal" not in checkpoints:
                raise ConfigError(
                    f"{run_dir}: no checkpoints/cross_modal/checkpoints/best.ckpt to evaluate "
                    "(run --mode full first, or pass --checkpoint and --cube)"
                )
    else:
        cube, checkpoints = _pipeline(args, steps, config)
    evaluate_and_report(steps, config, cube, checkpoints)
    elapsed = time.perf_counter() - started
    print(f"\n{RULE}\n  EXECUTION COMPLETE  ({elapsed:.0f} s; outputs in {run_dir})\n{RULE}")
    return 0


COMMAND = Command(
    name="run",
    help="the whole pipeline into one run directory: --mode full | test | eval (main.py)",
    add_arguments=_add_arguments,
    run=_run,
)
