"""Prediction on data the model has never seen: one day, any domain size, CF NetCDF out.

Sits in ``evaluation/`` (after ``training/``, whose ``load_checkpoint`` supplies the model, its
config and its normalizers); ``no2fusion predict`` (``commands/predict.py``) is the CLI. The
inputs go through exactly the path training and evaluation use: the cube (built by
``pipeline.build`` from L2 + ERA5 files with the same QA/regrid/align/features stages), then
``data.NO2TileDataset.tile_sample`` for each tile, and the one tiled predictor of
``evaluation.inference`` (overlapping tiles blended with a raised cosine, the checkpoint's NO2
normalizer back to umol m-2).

Day semantics follow the checkpoint's ``data.lead``: the prediction for target day ``d`` uses the
satellite field of day ``d - lead``, its trailing composite over the ``data.composite_days`` days
ending there (the days the cube or sources hold; absent days count as unobserved), the training
climatology, and the 24 hourly meteorological steps ending at the day-``d`` overpass, so the cube
must hold days ``d - lead`` and ``d`` (for ``--sources``, TROPOMI files of day ``d`` too: their
overpass time anchors the meteorology window, and ERA5 must cover the 24 h before it). On cells
outside the training grid the climatology is unknown: the model sees the training median there,
and ``climatology_coverage_fraction`` says how many cells were on the grid.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr
from numpy.typing import NDArray

from no2fusion import __version__
from no2fusion.config import Config
from no2fusion.data.arrays import CubeArrays, Normalizers
from no2fusion.data.dataset import NO2TileDataset
from no2fusion.errors import NoDataError
from no2fusion.evaluation.distribution import other_hemisphere, outside_training_range
from no2fusion.evaluation.inference import BLENDING, InferenceSettings, TiledPredictor
from no2fusion.files import atomic_path
from no2fusion.grid import BBox
from no2fusion.training.checkpoint import check_satellite_channels
from no2fusion.vocab import NO2_UNITS, UMOL_M2_TO_MOLEC_CM2

CF_NO2_STANDARD_NAME = "troposphere_mole_content_of_nitrogen_dioxide"


def crop_cube(cube: xr.Dataset, bbox: BBox, path: str | Path = "cube") -> xr.Dataset:
    """The cells of ``cube`` whose centres lie inside ``bbox`` (degrees).

    Raises ``NoDataError`` when ``bbox`` holds no cell of the cube.
    """
    lat = np.asarray(cube["lat"].values)
    lon = np.asarray(cube["lon"].values)
    rows = np.flatnonzero((lat >= bbox.lat_min) & (lat <= bbox.lat_max))
    cols = np.flatnonzero((lon >= bbox.lon_min) & (lon <= bbox.lon_max))
    if rows.size == 0 or cols.size == 0:
        raise NoDataError(
            f"bbox lat {bbox.lat_min:g}..{bbox.lat_max:g}, lon {bbox.lon_min:g}..{bbox.lon_max:g} "
            f"holds no cell of the cube (lat {lat[0]:g}..{lat[-1]:g}, lon {lon[0]:g}..{lon[-1]:g})",
            path,
        )
    return cube.isel(lat=slice(rows[0], rows[-1] + 1), lon=slice(cols[0], cols[-1] + 1))


def _days_of(cube: xr.Dataset) -> NDArray[np.datetime64]:
    return np.asarray(cube["time"].values).astype("datetime64[D]")


def prediction_days(
    day: dt.date, lead: int, composite_days: int
) -> tuple[list[dt.date], list[dt.date]]:
    """The days a prediction for ``day`` reads: (required: the input day ``day - lead`` and the
    target day, whose overpass anchors the meteorology window; the trailing-composite window:
    the ``composite_days`` days ending at the input day, used where present)."""
    input_day = day - dt.timedelta(days=lead)
    required = sorted({input_day, day})
    window = [input_day - dt.timedelta(days=k) for k in range(composite_days - 1, -1, -1)]
    return required, window


def select_days(
    cube: xr.Dataset, day: dt.date, lead: int, composite_days: int = 1, path: str | Path = "cube"
) -> xr.Dataset:
    """The days a prediction for ``day`` needs (``prediction_days``): the input and target days,
    and those of the composite window that the cube holds.

    Raises ``NoDataError`` naming the missing required day and the days the cube holds.
    """
    days = _days_of(cube)
    target = np.datetime64(day, "D")
    required, window = prediction_days(day, lead, composite_days)
    needed = [np.datetime64(d, "D") for d in required]
    for wanted in sorted(needed, key=lambda d: d != target):  # name the target day first
        if wanted not in days:
            role = "target" if wanted == target else f"input (target - lead {lead})"
            span = (
                f"{days.min()}..{days.max()} ({days.size} complete days)" if days.size else "none"
            )
            raise NoDataError(f"the {role} day {wanted} is not in the cube; it holds {span}", path)
    wanted_days = needed + [np.datetime64(d, "D") for d in window]
    return cube.isel(time=np.flatnonzero(np.isin(days, wanted_days)))


def predict_day(
    model: torch.nn.Module,
    config: Config,
    normalizers: Normalizers,
    cube: xr.Dataset,
    day: dt.date,
    settings: InferenceSettings | None = None,
    cube_path: str | Path = "cube",
    meta: Mapping[str, Any] | None = None,
) -> xr.Dataset:
    """Predict NO2 for ``day`` over the whole (already cropped) cube domain.

    Args:
        model: a trained network (``load_checkpoint``).
        config: the checkpoint's resolved config (``data.lead``, ``data.tile_size``, ...).
        normalizers: the checkpoint's fitted normalizers.
        cube: an opened cube (``io.cube.open_cube``), complete days only, any domain size at
            least one tile in each direction.
        day: target day.
        settings: tile size (a multiple of the token stride), overlap, tiles per forward pass,
            device and precision; default ``InferenceSettings.for_run(config)``, what the
            evaluation of the run uses.
        meta: the checkpoint's metadata (``load_checkpoint``); when given, the satellite channels
            the model was trained on are checked against the ones built here.

    Returns:
        Dataset (time=1, lat, lon) with ``no2_pred`` / ``input_no2`` / ``no2_observed`` in
        umol m-2, ``input_coverage`` (1 = observed input cell), cell bounds and provenance
        attributes (see ``prediction_dataset``).
    """
    lead = config.data.lead
    settings = settings or InferenceSettings.for_run(config)
    composite_days = config.data.composite_days
    sub = select_days(cube, day, lead, composite_days, cube_path)
    arrays = CubeArrays(sub, cache=True, path=cube_path)
    data_config = config.data.model_copy(update={"tile_size": settings.tile_size})
    target = np.datetime64(day, "D")
    dataset = NO2TileDataset(arrays, normalizers, np.array([target]), data_config, training=False)
    if meta is not None:
        check_satellite_channels(meta, dataset)
    inputs = dataset.day_inputs(0)  # what the model sees: the input day as observed
    (predicted,) = TiledPredictor(model, settings).predict(dataset, [inputs])
    outside = outside_training_range(arrays, [inputs.met_index], normalizers)
    attrs = {
        "target_day": str(target),
        "input_day": str(target - np.timedelta64(lead, "D")),
        "lead_days": lead,
        "model_kind": config.model.kind,
        "tile_size": settings.tile_size,
        "tile_overlap": settings.overlap,
        "tile_blending": BLENDING,
        "precision": settings.precision,
        "device": settings.device,
        "cube": str(cube_path),
        "qa_threshold": cube.attrs.get("qa_threshold", config.pipeline.qa_threshold),
        "source_files": cube.attrs.get("source_files", "[]"),
        "composite_days": composite_days,
        "composite_days_in_cube": int(
            np.isin(
                np.asarray(arrays.times, dtype="datetime64[D]"),
                [np.datetime64(d, "D") for d in prediction_days(day, lead, composite_days)[1]],
            ).sum()
        ),
        # the fraction of cells on the training grid, where the training climatology is known
        # (elsewhere the model sees the training median: a warning in no2fusion predict)
        "climatology_coverage_fraction": dataset.climatology_coverage,
        # per feature, the fraction of the day's met inputs outside the training range
        # (evaluation.distribution); no2fusion predict warns above 1 %
        "outside_training_range": json.dumps(outside),
        "other_hemisphere_than_training": int(other_hemisphere(normalizers, arrays.lat)),
    }
    return prediction_dataset(
        predicted.prediction,
        arrays.no2[inputs.input_index],
        arrays.no2[inputs.target_index],
        arrays.lat_edges,
        arrays.lon_edges,
        target,
        attrs,
    )


def prediction_dataset(
    no2_pred: NDArray[np.float32],
    input_no2: NDArray[np.float32],
    observed: NDArray[np.float32],
    lat_edges: NDArray[np.float64],
    lon_edges: NDArray[np.float64],
    day: np.datetime64,
    attrs: dict[str, Any],
) -> xr.Dataset:
    """CF-1.10 dataset of one predicted day: fields (lat, lon) in umol m-2 on a time axis of 1."""
    coverage = np.isfinite(input_no2)
    lat = 0.5 * (lat_edges[:-1] + lat_edges[1:])
    lon = 0.5 * (lon_edges[:-1] + lon_edges[1:])
    field = ("time", "lat", "lon")
    no2_attrs = {
        "units": NO2_UNITS,
        "standard_name": CF_NO2_STANDARD_NAME,
        "molec_cm2_per_unit": UMOL_M2_TO_MOLEC_CM2,
    }
    ds = xr.Dataset(
        {
            "no2_pred": (
                field,
                no2_pred[None],
                {
                    **no2_attrs,
                    "long_name": "predicted tropospheric NO2 vertical column",
                },
            ),
            "input_no2": (
                field,
                input_no2[None].astype(np.float32),
                {
                    **no2_attrs,
                    "long_name": "QA-filtered observed NO2 column of the input day (model input)",
                },
            ),
            "no2_observed": (
                field,
                observed[None].astype(np.float32),
                {
                    **no2_attrs,
                    "long_name": "QA-filtered observed NO2 column of the target day",
                    "comment": "for comparison; not a model input when lead >= 1",
                },
            ),
            "input_coverage": (
                field,
                coverage[None].astype(np.int8),
                {
                    "units": "1",
                    "long_name": "input day cell holds a valid observation",
                    "flag_values": np.array([0, 1], dtype=np.int8),
                    "flag_meanings": "no_valid_input observed",
                },
            ),
            "lat_bounds": (("lat", "bounds"), np.stack([lat_edges[:-1], lat_edges[1:]], 1)),
            "lon_bounds": (("lon", "bounds"), np.stack([lon_edges[:-1], lon_edges[1:]], 1)),
        },
        coords={
            "time": (
                "time",
                np.array([day]).astype("datetime64[ns]"),
                {
                    "standard_name": "time",
                    "long_name": "target day (00:00 UTC)",
                },
            ),
            "lat": (
                "lat",
                lat,
                {
                    "units": "degrees_north",
                    "standard_name": "latitude",
                    "bounds": "lat_bounds",
                },
            ),
            "lon": (
                "lon",
                lon,
                {
                    "units": "degrees_east",
                    "standard_name": "longitude",
                    "bounds": "lon_bounds",
                },
            ),
        },
    )
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    ds.attrs = {
        "Conventions": "CF-1.10",
        "title": "no2fusion NO2 prediction",
        "institution": "generated with no2fusion",
        "source": f"no2fusion {__version__} cross-modal attention model",
        "no2fusion_version": __version__,
        "torch_version": str(torch.__version__),
        "date_created": now,
        "input_coverage_fraction": float(coverage.mean()),
        **{
            key: value if isinstance(value, str | int | float) else str(value)
            for key, value in attrs.items()
        },
    }
    return ds


def write_prediction(ds: xr.Dataset, path: str | Path) -> Path:
    """Write ``ds`` as NetCDF-4 via a temporary file and an atomic rename (an existing file is
    replaced only by a complete one)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    encoding: dict[str, dict[str, Any]] = {
        name: {"zlib": True, "complevel": 4}
        for name in ("no2_pred", "input_no2", "no2_observed", "input_coverage")
    }
    encoding["time"] = {"units": "days since 1970-01-01", "dtype": "float64"}
    with atomic_path(path) as tmp:
        ds.to_netcdf(tmp, engine="netcdf4", format="NETCDF4", encoding=encoding)
    return path


def sources_for_days(
    sources: Path, required: list[dt.date], optional: list[dt.date], workdir: Path
) -> Path:
    """A sources folder under ``workdir`` linking only the L2 files of the ``required`` days and
    of those ``optional`` days that have files (and every ERA5 file, and the truth file if any):
    what ``pipeline.build.build_cube`` needs for one prediction, without building the whole
    period (``prediction_days`` gives both lists).

    Raises ``NoDataError`` naming the required days without TROPOMI files.
    """
    from no2fusion.pipeline.build import find_sources, group_by_day

    found = find_sources(sources)
    by_day, _problems = group_by_day(found.tropomi)
    have = {key.astype("datetime64[D]"): files for key, files in by_day.items()}
    needed = {np.datetime64(day, "D") for day in required}
    missing = sorted(str(day) for day in needed if day not in have)
    if missing:
        raise NoDataError(
            f"no TROPOMI L2 file for day(s) {', '.join(missing)} (a prediction needs the input "
            "day and the target day, whose overpass anchors the meteorology window)",
            sources / "tropomi",
        )
    wanted = needed | {
        np.datetime64(day, "D") for day in optional if np.datetime64(day, "D") in have
    }
    linked = workdir / "sources"
    for sub in ("tropomi", "era5"):
        (linked / sub).mkdir(parents=True, exist_ok=True)
    for day in sorted(wanted):
        for file in have[day]:
            (linked / "tropomi" / file.name).symlink_to(file.resolve())
    for file in found.era5:
        (linked / "era5" / file.name).symlink_to(file.resolve())
    if found.truth is not None:  # simulated world: region classes and truth come along
        (linked / "truth").mkdir(exist_ok=True)
        (linked / "truth" / found.truth.name).symlink_to(found.truth.resolve())
    return linked
