"""End to end: ``no2fusion run --mode test`` (= ``python main.py --mode test``) writes every
output, the headline RMSE is recomputable from predictions.nc, and ``--mode eval`` reproduces it."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from no2fusion.cli import main

FIGURES = (
    "training_curves.png",
    "predictions_vs_actual.png",
    "spatial_comparison.png",
    "attention_maps.png",
    "breakdown_region_season.png",
    "breakdown_pollution.png",
    "robustness_curves.png",
    "baseline_comparison.png",
)


def _not_strict_json(constant: str) -> None:
    raise AssertionError(f"metrics.json is not strict JSON: it contains {constant}")


def _rmse_from_netcdf(path: Path, variable: str) -> float:
    import xarray as xr

    with xr.open_dataset(path) as ds:
        pred = ds[variable].values.astype(np.float64)
        target = ds["target"].values.astype(np.float64)
        mask = ds["valid_mask"].values.astype(bool)
        area = np.broadcast_to(ds["cell_area"].values, pred.shape)
    error = (pred - target)[mask]
    return math.sqrt(float((area[mask] * error**2).sum() / area[mask].sum()))


def test_every_output_is_written(run_dir: Path) -> None:
    for name in ("config.yaml", "metrics.json", "predictions.nc", "report.html", *FIGURES):
        assert (run_dir / name).is_file(), name
    for kind in ("cross_modal", "concat", "satellite_only"):
        assert (run_dir / "checkpoints" / kind / "checkpoints" / "best.ckpt").is_file(), kind
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for key in (
        "rmse",
        "mae",
        "r2",
        "bias",
        "spatial_correlation",
        "n_valid",
        "skill_vs_persistence",
        "skill_vs_climatology",
        "units",
        "rmse_molec_cm2",
    ):
        assert key in metrics["global"], key
    assert metrics["global"]["n_valid"] > 0 and metrics["global"]["units"] == "umol m-2"
    assert set(metrics["baselines"]) == {
        "persistence",
        "climatology",
        "lightgbm",
        "concat",
        "satellite_only",
    }
    assert all(
        b["global"]["n_valid"] == metrics["global"]["n_valid"]
        for b in metrics["baselines"].values()
    )
    assert set(metrics["breakdowns"]) == {"region", "season", "pollution"}
    assert 0 < metrics["ablation"]["entropy_ratio"] <= 1
    import xarray as xr

    with xr.open_dataset(run_dir / "predictions.nc") as predictions:
        test_days = predictions.sizes["time"]
    # the entropy is taken over every test day, the shuffle tests over the seeded subset
    assert metrics["ablation"]["entropy_days"] == test_days
    assert metrics["ablation"]["n_days"] <= test_days
    categories = {t["category"] for t in metrics["robustness"]["tests"]}
    assert categories == {"dropout_random", "dropout_cloud", "noise", "feature_group"}
    html = (run_dir / "report.html").read_text()
    assert (
        'id="headline-table"' in html
        and "Verdicts" in html
        and html.count("data:image/png;base64,") == 8
    )


def test_headline_rmse_is_recomputable_from_predictions_nc(run_dir: Path) -> None:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    nc = run_dir / "predictions.nc"
    assert _rmse_from_netcdf(nc, "prediction") == pytest.approx(metrics["global"]["rmse"], rel=1e-4)
    assert _rmse_from_netcdf(nc, "baseline_persistence") == pytest.approx(
        metrics["baselines"]["persistence"]["global"]["rmse"], rel=1e-4
    )


def test_eval_mode_reproduces_the_metrics(
    run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = json.loads((run_dir / "metrics.json").read_text())
    assert main(["run", "--mode", "eval", "--output", str(run_dir), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    for line in (
        "EVALUATION METRICS SUMMARY",
        "GLOBAL METRICS:",
        "REGIONAL BREAKDOWN:",
        "EXECUTION COMPLETE",
    ):
        assert line in printed
    after = json.loads((run_dir / "metrics.json").read_text())
    assert after["global"]["rmse"] == pytest.approx(before["global"]["rmse"], rel=1e-6)
    assert after["baselines"]["lightgbm"]["global"]["rmse"] == pytest.approx(
        before["baselines"]["lightgbm"]["global"]["rmse"], rel=1e-6
    )


def test_eval_mode_without_a_run_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "--mode", "eval", "--output", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "best.ckpt" in err[0]


def test_rerun_with_another_config_is_refused(
    run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = (run_dir / "metrics.json").stat().st_mtime_ns
    args = ["run", "--mode", "test", "--config", "test", "--output", str(run_dir)]  # shipped
    assert main([*args, "--set", "synth.days=59", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "different config" in err[0] and "synth" in err[0]
    assert (run_dir / "metrics.json").stat().st_mtime_ns == before  # nothing touched


def test_main_py_console_has_the_seed_shape_without_library_chatter(tmp_path: Path) -> None:
    """`python main.py --mode test` as a user runs it: step headers and the metrics summary,
    one summary line for skipped days, and no Lightning hardware lines or install tips."""
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [
            sys.executable,
            str(repo / "main.py"),
            "--mode",
            "test",
            "--output",
            str(tmp_path / "run"),
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=repo,
    )
    printed = done.stdout + done.stderr
    assert done.returncode == 0, printed[-2000:]
    for line in ("Step 1:", "Phase 1: Warmup", "EVALUATION METRICS SUMMARY", "REGIONAL BREAKDOWN:"):
        assert line in printed
    for chatter in ("GPU available", "Tip:", "LeafSpec", "skipped day "):
        assert chatter not in printed, chatter


def test_a_run_reads_the_cube_once_for_its_trainings_and_evaluation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The trainings of a run and its evaluation share one ``CubeArrays`` and one feature
    cache (each used to open the cube and rebuild the cache: ~25 s per model on the demo)."""
    from no2fusion.data.arrays import CubeArrays

    opened: list[CubeArrays] = []
    caches: set[int] = set()
    original_init, original_cached = CubeArrays.__init__, CubeArrays._cached

    def counting_init(self: CubeArrays, *args: object, **kwargs: object) -> None:
        original_init(self, *args, **kwargs)  # type: ignore[arg-type]
        opened.append(self)

    def recording(self: CubeArrays, normalizer: object) -> object:
        cache = original_cached(self, normalizer)  # type: ignore[arg-type]
        if cache is not None:
            caches.add(id(cache))
        return cache

    monkeypatch.setattr(CubeArrays, "__init__", counting_init)
    monkeypatch.setattr(CubeArrays, "_cached", recording)
    args = ["run", "--mode", "test", "--config", "test", "--output", str(tmp_path / "run")]
    baselines = "evaluation.baselines=[persistence, climatology, concat]"
    assert main([*args, "--set", baselines, "--no-progress"]) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert "concat" in metrics["baselines"]  # two trainings and the evaluation ran
    assert len(opened) == 1
    assert len(caches) == 1
