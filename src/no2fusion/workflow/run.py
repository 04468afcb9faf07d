"""The whole pipeline into one run directory (DESIGN §5), as ``no2fusion run`` does it::

    DIR/config.yaml                  the resolved config
    DIR/sources/{tropomi,era5,truth} the simulated world in the real formats   (full, test)
    DIR/cube.zarr                    the analysis-ready datacube               (full, test)
    DIR/checkpoints/<kind>/          one training run per model kind: checkpoints/best.ckpt,
                                     last.ckpt, logs/, training_history.json
    DIR/metrics.json, predictions.nc, *.png, report.html

Sits in ``workflow/``, the last layer. ``run_pipeline``: simulate -> build -> train
cross_modal, concat, satellite_only, reusing every stage that completed before with the same
config sections (``stages.py``; an interrupted training continues from its ``last.ckpt``).
``evaluate_and_report``: evaluation (baselines, breakdowns, ablation, robustness, attention),
figures, report and the console summary. ``find_checkpoints`` locates a run's trained models
for ``--mode eval``. Everything is logged through ``log`` (print by default).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

from no2fusion.config import Config, dump_config
from no2fusion.data.arrays import CubeArrays
from no2fusion.errors import ConfigError
from no2fusion.evaluation.evaluate import evaluate_run, write_predictions
from no2fusion.evaluation.results import Metrics
from no2fusion.pipeline.build import build_cube
from no2fusion.report.console import summary_lines
from no2fusion.report.figures import write_figures
from no2fusion.report.html import write_report
from no2fusion.synth.world import generate_world
from no2fusion.training.train import train_model
from no2fusion.workflow.stages import Steps, stage_inputs

Log = Callable[[str], None]
MODEL_KINDS = ("cross_modal", "concat", "satellite_only")


def _log(line: str) -> None:
    print(line, flush=True)


def best_checkpoint(run_dir: Path, kind: str) -> Path:
    """Where ``run_pipeline`` puts the best checkpoint of model ``kind``."""
    return run_dir / "checkpoints" / kind / "checkpoints" / "best.ckpt"


def find_checkpoints(run_dir: Path) -> dict[str, Path]:
    """The trained models of a run directory (kind -> best checkpoint).

    Raises ``ConfigError`` when the cross-modal model is missing.
    """
    found = {kind: best_checkpoint(run_dir, kind) for kind in MODEL_KINDS}
    checkpoints = {kind: path for kind, path in found.items() if path.is_file()}
    if "cross_modal" not in checkpoints:
        raise ConfigError(
            f"{run_dir}: no checkpoints/cross_modal/checkpoints/best.ckpt to evaluate "
            "(run --mode full first, or pass --checkpoint and --cube)"
        )
    return checkpoints


def history_lines(
    history: dict[str, list[float]], warmup_epochs: int, finetune_epochs: int
) -> list[str]:
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
    lines = []
    for title, phase_epochs, offset, planned in phases:
        if not phase_epochs:
            continue
        stopped = ", stopped early" if len(phase_epochs) < planned else ""
        lines.append(f"{title} ({planned} epochs{stopped})")
        step = max(1, math.ceil(len(phase_epochs) / 4))
        for i, epoch in enumerate(phase_epochs):
            if (i + 1) % step and i != len(phase_epochs) - 1:
                continue
            k = epochs.index(epoch)
            lines.append(
                f"  Epoch {epoch - offset + 1}/{planned} - Train Loss: {train[k]:.6f}"
                f" - Val Loss: {val[k]:.6f}"
            )
    return lines


def _train(steps: Steps, config: Config, arrays: CubeArrays, kind: str, progress: bool) -> Path:
    """Train one model kind on the cube of ``arrays`` (or reuse it); returns its best
    checkpoint."""
    out = steps.run_dir / "checkpoints" / kind
    best = best_checkpoint(steps.run_dir, kind)
    kind_config = config.model_copy(
        update={"model": config.model.model_copy(update={"kind": kind})}
    )
    inputs = stage_inputs(kind_config, "train")
    if steps.done(f"train_{kind}", inputs) and best.is_file():
        steps.log(f"  {kind}: reusing {best}")
        return best
    resume = (out / "checkpoints" / "last.ckpt").is_file()
    steps.log(f"  {kind}: {'resuming' if resume else 'training'} -> {out}")
    result = steps.timed(
        f"train_{kind}",
        lambda: train_model(
            kind_config, arrays.path, out, resume=resume, progress_bar=progress, arrays=arrays
        ),
    )
    training = config.training
    for line in history_lines(result.history, training.warmup_epochs, training.finetune_epochs):
        steps.log(line)
    steps.mark(
        f"train_{kind}", inputs, {"best": str(result.best_checkpoint), "epochs": result.epochs}
    )
    return Path(result.best_checkpoint)


def run_pipeline(
    steps: Steps, config: Config, progress: bool = True
) -> tuple[CubeArrays, dict[str, Path]]:
    """simulate -> build -> train the cross-modal model and the neural baselines listed in
    ``evaluation.baselines``; returns (the cube's arrays, kind -> best checkpoint). The
    trainings share one ``CubeArrays`` (one read of the cube, one feature cache)."""
    run_dir = steps.run_dir
    dump_config(config, run_dir / "config.yaml")
    sources = run_dir / "sources"
    cube = run_dir / "cube.zarr"

    steps.header("Simulating the world (TROPOMI L2 + ERA5 files in the real formats)")
    grid = config.grid.to_grid()
    steps.log(f"  Days: {config.synth.days} from {config.synth.start_date}")
    steps.log(f"  Grid size: {grid.shape[0]}x{grid.shape[1]} cells of {config.grid.resolution} deg")
    if steps.done("synth", stage_inputs(config, "synth")):
        steps.log(f"  reusing {sources}")
    else:
        summary = steps.timed("synth", lambda: generate_world(config, sources, progress=progress))
        steps.log("  " + summary.describe().replace("\n", "\n  "))
        info = {"days": summary.days, "files": len(summary.tropomi_files)}
        steps.mark("synth", stage_inputs(config, "synth"), info)

    steps.header(
        "Building the datacube (QA filter, exact area-weighted regrid, alignment, features)"
    )
    if steps.done("build", stage_inputs(config, "build")) and cube.exists():
        steps.log(f"  reusing {cube}")
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
        steps.log(f"  cube: {cube}")
        for line in report.lines():
            steps.log(f"  {line}")
        steps.mark("build", stage_inputs(config, "build"), {"cube": str(cube)})

    arrays = CubeArrays.open(cube, config.data)
    checkpoints: dict[str, Path] = {}
    wanted = ["cross_modal"] + [k for k in MODEL_KINDS[1:] if k in config.evaluation.baselines]
    for kind in wanted:
        steps.header(
            "Training the cross-modal model with the warm-start regime"
            if kind == "cross_modal"
            else f"Training the {kind} baseline with the same regime"
        )
        checkpoints[kind] = _train(steps, config, arrays, kind, progress)
    return arrays, checkpoints


def evaluate_and_report(
    steps: Steps,
    config: Config,
    cube: Path,
    checkpoints: dict[str, Path],
    arrays: CubeArrays | None = None,
) -> Metrics:
    """Evaluate (on ``arrays`` when the run already opened the cube), write metrics.json /
    predictions.nc / figures / report.html into the run directory, log the summary; returns
    the metrics."""
    run_dir = steps.run_dir
    steps.header("Evaluation: metrics, baselines, breakdowns, ablation, robustness")
    result = steps.timed(
        "evaluate", lambda: evaluate_run(checkpoints, cube, config, steps.log, arrays)
    )
    write_predictions(result, run_dir / "predictions.nc")
    steps.header("Figures and report")
    figures = steps.timed("figures", lambda: write_figures(result, run_dir))
    metrics = result.metrics.with_timings(steps.timings)
    config_path = run_dir / "config.yaml"
    if not config_path.is_file():
        dump_config(config, config_path)
    metrics_path = metrics.write(run_dir / "metrics.json")
    write_report(run_dir / "report.html", metrics, figures, config_path.read_text())
    steps.log(
        f"  wrote {metrics_path}, predictions.nc, {len(figures)} figures, report.html in {run_dir}"
    )
    for line in summary_lines(metrics):
        steps.log(line)
    return metrics


def run_workflow(
    mode: str,
    run_dir: Path,
    config: Config,
    *,
    checkpoint: Path | None = None,
    cube: Path | None = None,
    progress: bool = True,
    log: Log = _log,
) -> Metrics:
    """``full``/``test``: ``run_pipeline`` then ``evaluate_and_report``; ``eval``: evaluate the
    run directory's checkpoints (or ``checkpoint`` on ``cube``) again."""
    run_dir.mkdir(parents=True, exist_ok=True)
    steps = Steps(run_dir, log)
    arrays: CubeArrays | None = None
    if mode != "eval":
        arrays, checkpoints = run_pipeline(steps, config, progress)
        cube = arrays.path
    elif checkpoint is not None:
        if cube is None:
            raise ConfigError("--mode eval with --checkpoint also needs --cube")
        checkpoints = {"cross_modal": checkpoint}
    else:
        checkpoints = find_checkpoints(run_dir)
        cube = cube or run_dir / "cube.zarr"
    return evaluate_and_report(steps, config, cube, checkpoints, arrays)
