"""``no2fusion predict`` end to end: simulated L2 + ERA5 files, a tiny trained checkpoint."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

from no2fusion.cli import main
from no2fusion.config import Config, load_config
from no2fusion.data.arrays import CubeArrays
from no2fusion.data.batch import stack_samples
from no2fusion.data.dataset import NO2TileDataset
from no2fusion.data.tiles import Tile
from no2fusion.io.cube import open_cube
from no2fusion.training.checkpoint import load_checkpoint
from no2fusion.vocab import FEATURES

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Trained:
    config: Config
    sources: Path
    cube: Path
    checkpoint: Path
    day: dt.date  # a target day whose input day (day - 1) has observations


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """30 simulated days on the 16 x 16 test domain -> cube -> 2 tiny epochs of training."""
    from no2fusion.pipeline.build import build_cube
    from no2fusion.synth.world import generate_world
    from no2fusion.training.train import train_model

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("predict")
    config = load_config(
        REPO / "config" / "test.yaml", {"synth.days": 30, "training.limit_train_batches": 2}
    )
    generate_world(config, root / "sources", progress=False)
    build_cube(
        root / "sources", root / "cube.zarr", config.grid.to_grid(), config.pipeline, progress=False
    )
    result = train_model(config, root / "cube.zarr", root / "run", progress_bar=False)
    cube = open_cube(root / "cube.zarr")
    days = np.asarray(cube["time"].values).astype("datetime64[D]")
    coverage = np.isfinite(cube["no2"].values).mean(axis=(1, 2))
    day = next(
        d
        for d, c in zip(days[1:], coverage[:-1], strict=True)
        if 0.2 < c < 1.0 and d - np.timedelta64(1, "D") in days
    )
    return Trained(
        config, root / "sources", root / "cube.zarr", result.best_checkpoint, day.astype(dt.date)
    )


def _predict(trained: Trained, out: Path, *extra: str) -> int:
    """``no2fusion predict`` for the fixture's day (a later ``--date`` in ``extra`` wins)."""
    return main(
        [
            "predict",
            "--checkpoint",
            str(trained.checkpoint),
            "--date",
            trained.day.isoformat(),
            "--out",
            str(out),
            "--precision",
            "fp32",
            "--no-progress",
            *extra,
        ]
    )


def test_predict_from_cube_is_the_model_on_the_training_features_path(
    trained: Trained, tmp_path: Path
) -> None:
    out = tmp_path / "pred.nc"
    assert _predict(trained, out, "--cube", str(trained.cube)) == 0
    pred = xr.open_dataset(out)
    cube = open_cube(trained.cube)
    day = np.datetime64(trained.day, "D")
    field = pred["no2_pred"].values[0]
    assert field.shape == (16, 16) and np.isfinite(field).all()
    assert pred["no2_pred"].attrs["units"] == "umol m-2"
    assert pred["lat"].attrs["units"] == "degrees_north" and pred.attrs["Conventions"] == "CF-1.10"
    # input coverage and the input field are the cube's day d - 1 (lead 1)
    observed_in = cube["no2"].sel(time=day - np.timedelta64(1, "D")).values
    np.testing.assert_array_equal(pred["input_coverage"].values[0], np.isfinite(observed_in))
    np.testing.assert_array_equal(pred["input_no2"].values[0], observed_in)
    assert pred.attrs["input_coverage_fraction"] == pytest.approx(np.isfinite(observed_in).mean())
    assert pred.attrs["input_day"] == str(day - np.timedelta64(1, "D"))
    assert pred.attrs["checkpoint"] == str(trained.checkpoint)
    assert pred.attrs["lead_days"] == 1 and "source_files" in pred.attrs
    # the training world itself: inside the training range, same hemisphere, on the grid
    outside = json.loads(pred.attrs["outside_training_range"])
    assert set(outside) == set(FEATURES) and max(outside.values()) < 0.01
    assert pred.attrs["other_hemisphere_than_training"] == 0
    assert pred.attrs["climatology_coverage_fraction"] == 1.0
    # the window of composite_days days ending at the input day, as far as the cube holds it
    window = day - np.timedelta64(1, "D") - np.arange(trained.config.data.composite_days)
    held = np.isin(window, cube["time"].values.astype("datetime64[D]")).sum()
    assert pred.attrs["composite_days_in_cube"] == held > 0

    # one 16 x 16 tile covers the domain: the result is exactly the model on the dataset sample
    model, config, normalizers, _ = load_checkpoint(trained.checkpoint)
    arrays = CubeArrays(cube)
    dataset = NO2TileDataset(arrays, normalizers, np.array([day]), config.data, training=False)
    inputs = dataset.day_inputs(0)
    assert inputs.target_index == arrays.index_of(day)
    assert inputs.input_index == arrays.index_of(day - np.timedelta64(1, "D"))
    batch = stack_samples([dataset.tile_sample(inputs, Tile(0, 0, 16))])
    with torch.inference_mode():
        z = model(*batch.model_inputs())[0][0].numpy()
    expected = normalizers.no2.inverse_transform(z.astype(np.float64))
    np.testing.assert_allclose(field, expected, rtol=1e-5, atol=1e-3)


def test_evaluation_and_predict_give_identical_predictions(
    trained: Trained, tmp_path: Path
) -> None:
    """The numbers in metrics.json are the numbers `no2fusion predict` gives: the same
    checkpoint, day and domain through the one tiled predictor give the same field. Bit for bit
    when the forward passes hold the same tiles; evaluation batches tiles of several days
    (data.batch_size), and CPU kernels round float32 sums per batch shape, so there they agree
    to float32 rounding."""
    from no2fusion.config import EvaluationConfig
    from no2fusion.evaluation.baselines import SplitFields
    from no2fusion.evaluation.evaluate import evaluate_run
    from no2fusion.evaluation.inference import InferenceSettings, TiledPredictor, predict_fields
    from no2fusion.evaluation.runs import load_model_run

    evaluation = EvaluationConfig(
        baselines=("persistence", "climatology"),
        dropout_rates=(0.5,),
        noise_levels=(0.1,),
        robustness_samples=2,
        attention_days=1,
    )
    config = trained.config.model_copy(update={"evaluation": evaluation})
    result = evaluate_run({"cross_modal": trained.checkpoint}, trained.cube, config, lambda _: None)
    assert result.metrics.inference.tile_size == 16 and result.metrics.inference.device == "cpu"
    assert result.metrics.inference.batch_size == trained.config.data.batch_size > 1
    # the evaluation's own path, one tile per forward pass like a one-day predict
    run = load_model_run(trained.checkpoint)
    arrays = CubeArrays(open_cube(trained.cube))
    test_set = NO2TileDataset(
        arrays, run.normalizers, run.split.test, run.config.data, False, run.config.seed
    )
    test = SplitFields.of(test_set, test_set.evaluation_days())
    one_by_one = TiledPredictor(run.model, InferenceSettings.for_run(run.config, batch_size=1))
    alone = predict_fields(one_by_one, test_set, test.days)
    np.testing.assert_array_equal(test.times, result.times)
    days = result.times.astype("datetime64[D]")
    for k in (0, len(days) - 1):  # first and last test day, evaluated in different batches
        out = tmp_path / f"day{k}.nc"
        assert _predict(trained, out, "--cube", str(trained.cube), "--date", str(days[k])) == 0
        pred = xr.open_dataset(out)
        np.testing.assert_array_equal(pred["no2_pred"].values[0], alone[k])
        np.testing.assert_allclose(pred["no2_pred"].values[0], result.prediction[k], rtol=2e-6)
        np.testing.assert_array_equal(pred["input_no2"].values[0], result.input_field[k])
        assert pred.attrs["tile_overlap"] == result.metrics.inference.tile_overlap


def test_evaluation_under_a_tiny_memory_budget_gives_the_same_numbers(
    trained: Trained, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``data.cache_max_gb: 0`` (a cube larger than the budget): nothing of the features is
    cached, every sample reads its met block from the store, and the scores are the same."""
    from no2fusion.config import EvaluationConfig
    from no2fusion.evaluation.evaluate import evaluate_run

    evaluation = EvaluationConfig(
        baselines=("persistence", "climatology", "lightgbm"),
        dropout_rates=(0.5,),
        noise_levels=(0.1,),
        robustness_samples=2,
        attention_days=1,
    )
    cache_built: list[bool] = []
    original = CubeArrays._cached

    def recording(self: CubeArrays, normalizer: object) -> object:
        cache = original(self, normalizer)  # type: ignore[arg-type]
        cache_built.append(cache is not None)
        return cache

    monkeypatch.setattr(CubeArrays, "_cached", recording)
    results, caches = {}, {}
    for budget in (4.0, 0.0):
        cache_built.clear()
        data = trained.config.data.model_copy(update={"cache_max_gb": budget})
        config = trained.config.model_copy(update={"evaluation": evaluation, "data": data})
        results[budget] = evaluate_run(
            {"cross_modal": trained.checkpoint}, trained.cube, config, lambda _: None
        )
        caches[budget] = set(cache_built)
    assert caches == {4.0: {True}, 0.0: {False}}
    cached, streamed = results[4.0].metrics, results[0.0].metrics
    assert streamed.global_ == cached.global_
    assert streamed.baselines["lightgbm"].global_ == cached.baselines["lightgbm"].global_
    np.testing.assert_array_equal(results[0.0].prediction, results[4.0].prediction)


def test_predict_from_sources_builds_the_same_inputs(trained: Trained, tmp_path: Path) -> None:
    from_cube, from_files = tmp_path / "cube.nc", tmp_path / "files.nc"
    assert _predict(trained, from_cube, "--cube", str(trained.cube)) == 0
    assert _predict(trained, from_files, "--sources", str(trained.sources)) == 0
    a, b = xr.open_dataset(from_cube), xr.open_dataset(from_files)
    np.testing.assert_array_equal(a["input_no2"].values, b["input_no2"].values)
    np.testing.assert_allclose(a["no2_pred"].values, b["no2_pred"].values, rtol=1e-5, atol=1e-3)
    assert b.attrs["cube"].startswith("temporary cube built from")


def test_tiled_prediction_on_a_cropped_domain(trained: Trained, tmp_path: Path) -> None:
    """A 12 x 12 sub-domain in 8 x 8 tiles overlapping by 2 (several tiles, uneven last)."""
    out = tmp_path / "crop.nc"
    code = _predict(
        trained,
        out,
        "--cube",
        str(trained.cube),
        "--bbox",
        "6.2",
        "50.2",
        "7.4",
        "51.4",
        "--tile-size",
        "8",
        "--overlap",
        "2",
    )
    assert code == 0
    pred = xr.open_dataset(out)
    assert pred["no2_pred"].shape == (1, 12, 12)
    assert np.isfinite(pred["no2_pred"].values).all()
    np.testing.assert_allclose(pred["lat"].values[[0, -1]], [50.25, 51.35])
    np.testing.assert_allclose(pred["lon_bounds"].values[0], [6.2, 6.3])
    assert pred.attrs["tile_size"] == 8 and pred.attrs["tile_overlap"] == 2


def test_user_errors_exit_2_and_leave_an_existing_output(
    trained: Trained, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "pred.nc"
    out.write_bytes(b"previous result")
    absent = [
        "predict",
        "--checkpoint",
        str(trained.checkpoint),
        "--cube",
        str(trained.cube),
        "--date",
        "2030-01-02",
        "--out",
        str(out),
    ]
    assert main(absent) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "2030-01-02" in err and "not in the cube" in err
    broken = tmp_path / "broken.ckpt"
    broken.write_bytes(b"not a checkpoint")
    assert main(["predict", "--checkpoint", str(broken), *absent[3:]]) == 2
    assert "not a readable checkpoint" in capsys.readouterr().err
    assert (
        main(
            [*absent[:5], "--date", trained.day.isoformat(), "--out", str(out), "--tile-size", "6"]
        )
        == 2
    )
    assert "token stride" in capsys.readouterr().err
    # a checkpoint trained on other satellite channels (an older input layout) is refused
    other = tmp_path / "other_channels.ckpt"
    raw = torch.load(trained.checkpoint, map_location="cpu", weights_only=True)
    raw["no2fusion"]["satellite_channel_names"] = ["no2", "coverage"]
    raw["no2fusion"]["config"]["model"]["residual"] = "none"  # that layout has no climatology
    torch.save(raw, other)
    assert (
        main(
            ["predict", "--checkpoint", str(other), *absent[3:5], "--date"]
            + [trained.day.isoformat(), "--out", str(out)]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "trained on satellite channels no2, coverage" in err
    assert out.read_bytes() == b"previous result"


def test_a_domain_smaller_than_the_tile_suggests_tile_size(
    trained: Trained, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    small = ["--bbox", "6.2", "50.2", "7.2", "51.2"]  # 10 x 10 cells, the tile is 16
    out = tmp_path / "pred.nc"
    for source in (["--sources", str(trained.sources)], ["--cube", str(trained.cube)]):
        assert _predict(trained, out, *source, *small) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1, err
        assert "(10 x 10 cells) is smaller than the model's tile of 16 cells" in err
        assert (
            "give --tile-size 8 (at most 10 cells, a multiple of the model's token stride 4)" in err
        )
        assert "no2fusion-predict-" not in err
    assert _predict(trained, out, "--cube", str(trained.cube), *small, "--tile-size", "8") == 0


def test_lead_1_needs_era5_for_the_input_day_and_errors_name_the_users_paths(
    trained: Trained, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """ERA5 that starts after the input day's overpass: the target day's window is covered,
    the input day's is not."""
    import shutil

    sources = tmp_path / "sources"
    shutil.copytree(trained.sources, sources)
    start = np.datetime64(trained.day, "h") - np.timedelta64(14, "h")  # day before, 10:00 UTC
    for path in sorted((sources / "era5").glob("*.nc")):
        with xr.open_dataset(path) as ds:
            kept = ds.sel(valid_time=slice(start, None)).load()
        path.unlink()
        if kept.sizes["valid_time"]:
            kept.to_netcdf(path)
    out = tmp_path / "pred.nc"
    assert _predict(trained, out, "--sources", str(sources)) == 2
    err = capsys.readouterr().err
    line = err.strip().splitlines()[-1]
    input_day = trained.day - dt.timedelta(days=1)
    assert line.startswith("no2fusion predict: error: ")
    assert f"the input day {input_day} cannot be used: ERA5 does not cover its overpass" in line
    assert f"needs L2 and ERA5 for {input_day}, {trained.day}" in line
    assert "no2fusion-predict-" not in err and str(sources) in err  # the user's paths only
    assert not out.exists()
