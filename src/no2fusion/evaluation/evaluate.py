"""The whole evaluation of a trained run, as a short composition of the runners.

Sits at the end of ``evaluation/``: it loads the checkpoints (``runs.py``), cuts the test split
with ``data.NO2TileDataset`` exactly as training did (the checkpoint's split, data settings and
normalizers), predicts every test day with the one tiled predictor (``inference.py``, the path
``no2fusion predict`` takes), runs the baselines, ablation, robustness and attention runners,
scores everything with ``scoring.py`` and returns the typed ``metrics.json`` plus the arrays the
report needs (``EvaluationResult``); ``report/`` draws and writes them.

Scored cells: valid target cells of the test days (lead >= 1), or, for gap filling (lead 0),
the valid target cells hidden from the input (the reconstructed ones). A cell counts only where
the model and every baseline have a prediction, so all rows of the headline table share cells.
Every random choice (the day subset, shuffles, perturbations, LightGBM's sample) derives from
the checkpoint's ``seed``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from numpy.typing import NDArray

from no2fusion.config import Config, EvaluationConfig
from no2fusion.data.arrays import CubeArrays
from no2fusion.data.dataset import NO2TileDataset
from no2fusion.errors import ConfigError, NoDataError
from no2fusion.evaluation import ablation, robustness
from no2fusion.evaluation.attention import AttentionMap, attention_maps, pick_days
from no2fusion.evaluation.baselines import BaselineFields, SplitFields, run_baselines
from no2fusion.evaluation.bookkeeping import PhaseTimer, SeedStreams
from no2fusion.evaluation.breakdown import pollution_bin_edges
from no2fusion.evaluation.distribution import outside_training_range, warnings_for
from no2fusion.evaluation.inference import InferenceSettings, TiledPredictor, predict_fields
from no2fusion.evaluation.results import (
    SCHEMA_VERSION,
    AblationResult,
    Metrics,
    RobustnessResult,
    SplitInfo,
    Summary,
    TruthScores,
    Verdict,
)
from no2fusion.evaluation.runs import HistoryRow, ModelRun, load_model_run
from no2fusion.evaluation.scoring import (
    ScoringCells,
    best_rmse,
    headline_table,
    not_winning,
    rmse,
    score_model,
    truth_scores,
)
from no2fusion.files import atomic_path
from no2fusion.training.checkpoint import check_satellite_channels
from no2fusion.vocab import NO2_UNITS, UMOL_M2_TO_MOLEC_CM2

F64 = NDArray[np.float64]
Log = Callable[[str], None]
NEURAL_BASELINES = ("concat", "satellite_only")


@dataclass(frozen=True)
class EvaluationResult:
    """``metrics`` (the content of metrics.json) and the arrays the figures and NetCDF need:
    fields (days, lat, lon) in umol m-2 on the test days ``times``."""

    metrics: Metrics
    times: NDArray[np.datetime64]
    lat: F64
    lon: F64
    cell_area: F64
    prediction: F64
    target: F64
    scored: NDArray[np.bool_]
    input_field: F64
    baselines: dict[str, F64]
    histories: dict[str, tuple[HistoryRow, ...]]
    attention_maps: tuple[AttentionMap, ...]
    lead: int


def _test_set(arrays: CubeArrays, run: ModelRun, seed: int) -> NO2TileDataset:
    """The test split of ``run`` as its model saw it in training (its data settings and
    normalizers); refuses a model trained on other satellite channels."""
    dataset = NO2TileDataset(arrays, run.normalizers, run.split.test, run.config.data, False, seed)
    check_satellite_channels(run.meta, dataset)
    return dataset


def _neural_fields(
    runs: Mapping[str, ModelRun],
    main: ModelRun,
    arrays: CubeArrays,
    test: SplitFields,
    settings: InferenceSettings,
) -> dict[str, F64]:
    """Each neural baseline's test fields, through its own normalizers and the same inputs."""
    fields = {}
    for kind, run in runs.items():
        if run.config.data != main.config.data:
            raise ConfigError(f"the {kind} checkpoint was trained with other data settings")
        dataset = _test_set(arrays, run, main.config.seed)
        predictor = TiledPredictor(run.model, settings)
        fields[kind] = predict_fields(predictor, dataset, test.days)
    return fields


def _verdicts(
    model_rmse: float,
    baseline_rmse: Mapping[str, float],
    ablated: AblationResult,
    robust: RobustnessResult,
    evaluation: EvaluationConfig,
) -> tuple[Verdict, ...]:
    """The seed's ablation criteria, the strong baselines and every judged robustness test."""
    shuffle = ablated.shuffle.get("samples")
    seed_criteria = ablation.verdicts(
        model_rmse,
        baseline_rmse,
        ablated.entropy_ratio,
        shuffle.rmse_change if shuffle is not None else None,
        evaluation.shuffle_threshold,
    )
    robustness_criteria = tuple(
        Verdict(
            criterion=f"robustness: {test.label} {test.setting_label}",
            passed=test.passed,
            statement=f"RMSE change {100 * test.rmse_change:+.1f} % (seed: {test.expectation})",
            value=test.rmse_change,
        )
        for test in robust.tests
        if test.passed is not None
    )
    return seed_criteria + robustness_criteria


def _scoring_cells(
    test: SplitFields,
    fields: Mapping[str, F64],
    classical: BaselineFields,
    arrays: CubeArrays,
    train_indices: NDArray[np.int64],
    quantiles: tuple[float, ...],
    lead: int,
) -> ScoringCells:
    """The identical cells of every row: valid (lead >= 1) or hidden (lead 0) target cells
    where every field in ``fields`` (the model's and each baseline's) is finite."""
    hidden = np.isfinite(test.target) & ~np.isfinite(test.observation)
    scored = hidden if lead == 0 else np.isfinite(test.target)
    for values in fields.values():
        scored = scored & np.isfinite(values)
    return ScoringCells(
        scored,
        test.target,
        arrays.cell_area,
        arrays.region,
        test.times,
        tuple(pollution_bin_edges(arrays.no2[train_indices], quantiles)),
        tuple(sorted(quantiles)),
        {"persistence": classical.persistence, "climatology": classical.climatology},
    )


def _split_info(test: SplitFields, main: ModelRun) -> SplitInfo:
    lead = main.config.data.lead
    return SplitInfo(
        lead=lead,
        scored_cells="hidden (reconstructed) target cells" if lead == 0 else "valid target cells",
        test_days=len(test.days),
        first_day=str(test.times[0]),
        last_day=str(test.times[-1]),
        train_days=int(main.split.train.size),
        val_days=int(main.split.val.size),
    )


def _perturbation_tests(
    predictor: TiledPredictor,
    test_set: NO2TileDataset,
    test: SplitFields,
    prediction: F64,
    cells: ScoringCells,
    classical: BaselineFields,
    train_indices: NDArray[np.int64],
    evaluation: EvaluationConfig,
    streams: SeedStreams,
    timer: PhaseTimer,
) -> tuple[AblationResult, RobustnessResult]:
    """Ablation and robustness on a seeded subset of test days, scored on their headline cells
    against the unperturbed RMSE of the same cells."""
    keep = np.zeros(len(test.days), dtype=bool)
    count = min(evaluation.robustness_samples, len(test.days))
    keep[streams.rng("day subset").choice(len(test.days), count, replace=False)] = True
    subset = [day for day, kept in zip(test.days, keep, strict=True) if kept]
    sub = cells.restricted(keep)
    reference = rmse(prediction[keep], sub.target, sub.scored, sub.cell_area)
    with timer("ablation: attention entropy and shuffle tests"):
        ablated = ablation.run_ablation(
            predictor,
            test_set,
            subset,
            sub,
            reference,
            evaluation.shuffle_threshold,
            streams.rng("shuffle"),
            attention_days=test.days,
        )
    with timer("robustness: dropout, noise, feature groups"):
        clim_rmse = None
        if "climatology" in evaluation.baselines:
            clim_rmse = rmse(classical.climatology[keep], sub.target, sub.scored, sub.cell_area)
        no2 = test_set.arrays.no2
        pool = robustness.gap_pool(
            no2, train_indices, evaluation.robustness_samples, streams.rng("gap pool")
        )
        robust = robustness.run_robustness(
            predictor,
            test_set,
            subset,
            sub,
            reference,
            pool,
            evaluation,
            streams.rng("robustness"),
            clim_rmse,
        )
    return ablated, robust


def _truth_scores(
    cube: xr.Dataset, test: SplitFields, predictions: Mapping[str, F64], cells: ScoringCells
) -> TruthScores | None:
    """``scoring.truth_scores`` on the test days' simulated truth (None without ``no2_truth``)."""
    if "no2_truth" not in cube.variables:
        return None
    days = [day.target_index for day in test.days]
    truth = np.asarray(cube["no2_truth"].isel(time=days).values, dtype=np.float64)
    return truth_scores(truth, test.target, predictions, cells)


def evaluate_run(
    checkpoints: Mapping[str, str | Path],
    cube_path: str | Path,
    config: Config,
    log: Log = print,
    arrays: CubeArrays | None = None,
) -> EvaluationResult:
    """Evaluate the cross-modal model of ``checkpoints["cross_modal"]`` and every baseline.

    Args:
        checkpoints: model kind -> checkpoint path; ``cross_modal`` is required, ``concat`` and
            ``satellite_only`` are scored as neural baselines when present (and listed in
            ``config.evaluation.baselines``).
        cube_path: the Zarr cube the models were trained on.
        config: the run config; its ``evaluation`` section and the memory settings of its
            ``data`` section (``cache_in_memory``, ``cache_max_gb``: this machine's budget) are
            used; data, model, training settings and the seed come from the checkpoint, so the
            test split is cut exactly as in training.
        arrays: the cube's arrays when already opened (``CubeArrays.open``; a run shares the
            ones its trainings used, and their feature cache).
    """
    started, timer, evaluation = time.perf_counter(), PhaseTimer(log), config.evaluation
    main = load_model_run(checkpoints["cross_modal"])
    data, streams = main.config.data, SeedStreams(main.config.seed)
    # the memory budget is this machine's (config.data), not the training machine's
    arrays = arrays or CubeArrays.open(cube_path, config.data)
    cube = arrays.dataset
    settings = InferenceSettings.for_run(main.config)
    test_set = _test_set(arrays, main, streams.seed)
    test = SplitFields.of(test_set, test_set.evaluation_days())
    if not test.days:
        raise NoDataError("the test split has no sample with a valid target cell", cube_path)

    with timer("test split and model predictions"):
        predictor = TiledPredictor(main.model, settings)
        prediction = predict_fields(predictor, test_set, test.days)
    outside = outside_training_range(arrays, [day.met_index for day in test.days], main.normalizers)
    for line in warnings_for(outside):
        log(f"  warning: {line}")
    neural: dict[str, ModelRun] = {
        kind: load_model_run(checkpoints[kind])
        for kind in NEURAL_BASELINES
        if kind in evaluation.baselines and kind in checkpoints
    }
    train_indices = arrays.indices_of(main.split.train)
    with timer("baselines: " + ", ".join(evaluation.baselines)):
        train_set = NO2TileDataset(
            arrays,
            main.normalizers,
            main.split.train,
            data,
            False,
            streams.seed,
            main.split.hidden_from("train"),
        )
        classical = run_baselines(
            train_set, test_set, test, train_indices, evaluation.baselines, evaluation, streams.seed
        )
        fields = {**classical.fields, **_neural_fields(neural, main, arrays, test, settings)}
    cells = _scoring_cells(
        test,
        {main.kind: prediction, **fields},
        classical,
        arrays,
        train_indices,
        evaluation.pollution_quantiles,
        data.lead,
    )
    model_scores = score_model(prediction, cells)
    baseline_scores = {name: score_model(values, cells) for name, values in fields.items()}
    ablated, robust = _perturbation_tests(
        predictor,
        test_set,
        test,
        prediction,
        cells,
        classical,
        train_indices,
        evaluation,
        streams,
        timer,
    )
    with timer("attention maps of chosen test days"):
        counts = np.isfinite(test.target).reshape(len(test.days), -1).sum(axis=1)
        chosen = [test.days[i] for i in pick_days(counts, evaluation.attention_days)]
        maps = attention_maps(predictor, test_set, chosen, cube, main.config.model.token_stride)

    table = headline_table({main.kind: model_scores, **baseline_scores})
    baseline_rmse = {name: s.global_.rmse for name, s in baseline_scores.items()}
    metrics = Metrics(
        schema_version=SCHEMA_VERSION,
        model=main.kind,
        units=NO2_UNITS,
        unit_factor_molec_cm2=UMOL_M2_TO_MOLEC_CM2,
        global_=model_scores.global_,
        split=_split_info(test, main),
        inference=settings.info(),
        breakdowns=model_scores.breakdowns,
        baselines=baseline_scores,
        ablation=ablated,
        robustness=robust,
        truth=_truth_scores(cube, test, {main.kind: prediction, **fields}, cells),
        summary=Summary(
            table,
            best_rmse(table),
            not_winning(model_scores, baseline_scores),
            _verdicts(model_scores.global_.rmse, baseline_rmse, ablated, robust, evaluation),
        ),
        checkpoints={k: str(v) for k, v in checkpoints.items()},
        evaluation_seconds=time.perf_counter() - started,
        evaluation_phases_seconds=dict(timer.seconds),
        outside_training_range=outside,
    )
    return EvaluationResult(
        metrics=metrics,
        times=test.times,
        lat=np.asarray(cube["lat"].values, dtype=np.float64),
        lon=np.asarray(cube["lon"].values, dtype=np.float64),
        cell_area=arrays.cell_area,
        prediction=prediction,
        target=test.target,
        scored=cells.scored,
        input_field=test.observation,
        baselines=fields,
        histories={kind: run.history() for kind, run in [(main.kind, main), *neural.items()]},
        attention_maps=maps,
        lead=data.lead,
    )


def write_predictions(result: EvaluationResult, path: str | Path) -> Path:
    """Write the test-split fields as CF NetCDF (atomically): ``prediction``, ``target`` and
    ``valid_mask`` (the scored cells) on (time, lat, lon) in umol m-2, plus ``input`` (the
    model's satellite input), each baseline as ``baseline_<name>`` and ``cell_area`` (m2), so
    every score in metrics.json can be recomputed from this file alone."""
    dims = ("time", "lat", "lon")

    def no2(values: F64, long_name: str) -> tuple[Any, ...]:
        return (dims, values.astype(np.float32), {"units": NO2_UNITS, "long_name": long_name})

    variables: dict[str, Any] = {
        "prediction": no2(result.prediction, "predicted tropospheric NO2 column"),
        "target": no2(result.target, "observed (QA-filtered L3) NO2 column"),
        "valid_mask": (
            dims,
            result.scored.astype(np.int8),
            {
                "long_name": "cell scored in metrics.json",
                "flag_values": np.array([0, 1], dtype=np.int8),
                "flag_meanings": "not_scored scored",
            },
        ),
        "input": no2(result.input_field, "satellite input (day d - lead)"),
        "cell_area": (
            ("lat", "lon"),
            result.cell_area,
            {"units": "m2", "long_name": "cell area on the sphere"},
        ),
    }
    for name, values in result.baselines.items():
        variables[f"baseline_{name}"] = no2(values, f"{name} baseline")
    dataset = xr.Dataset(
        variables,
        coords={
            "time": (
                "time",
                result.times.astype("datetime64[ns]"),
                {"long_name": "target day (overpass)"},
            ),
            "lat": ("lat", result.lat, {"units": "degrees_north", "standard_name": "latitude"}),
            "lon": ("lon", result.lon, {"units": "degrees_east", "standard_name": "longitude"}),
        },
        attrs={
            "Conventions": "CF-1.10",
            "title": "no2fusion test-split predictions",
            "lead_days": result.lead,
            "rmse": float(result.metrics.global_.rmse),
        },
    )
    encoding = {name: {"zlib": True, "complevel": 4} for name in variables}
    path = Path(path)
    with atomic_path(path) as tmp:
        dataset.to_netcdf(tmp, encoding=encoding)
    return path
