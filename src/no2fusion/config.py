"""The whole run configuration as pydantic models; the only place that reads YAML.

Sits at the edge of the flow: ``cli.py`` / ``main.py`` call ``load_config`` and pass typed
sections (``SynthConfig``, ``PipelineConfig``, ...) to library functions, which never see a
dict or a file. Every model forbids unknown keys, so a typo fails with the key's dotted path.

Three configs ship inside the package (``no2fusion/configs/``, also ``config/`` in a checkout):
``default`` (the seed's values), ``demo`` (``make demo``) and ``test`` (tests, ``--mode test``).
``load_config`` takes a file or one of these names, so an installed package runs from any
folder; ``no2fusion config show NAME`` prints one to start from.
"""

from __future__ import annotations

import datetime as dt
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from no2fusion.errors import ConfigError
from no2fusion.files import atomic_path
from no2fusion.grid import BBox, Grid, create_target_grid


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------------------------
# grid
# --------------------------------------------------------------------------------------------
class BBoxConfig(_Strict):
    """Domain in degrees (lat_min < lat_max, lon_min < lon_max, no antimeridian wrap)."""

    lat_min: float
    lat_max: float
    lon_min: float
    lon_max: float

    def to_bbox(self) -> BBox:
        return BBox(self.lat_min, self.lat_max, self.lon_min, self.lon_max)


class GridConfig(_Strict):
    """Target grid: the domain and its cell size. Default: 64 x 64 cells of 0.1 deg."""

    bbox: BBoxConfig = BBoxConfig(lat_min=47.0, lat_max=53.4, lon_min=4.0, lon_max=10.4)
    resolution: float = Field(0.1, gt=0, le=5)

    @model_validator(mode="after")
    def _grid_is_buildable(self) -> GridConfig:
        self.to_grid()
        return self

    def to_grid(self) -> Grid:
        return create_target_grid(self.bbox.to_bbox(), self.resolution)


# --------------------------------------------------------------------------------------------
# synth: the simulated world (no2fusion.synth)
# --------------------------------------------------------------------------------------------
class ClimateConfig(_Strict):
    """Seasonal/diurnal climate of the simulated world."""

    t2m_mean_k: float = 283.0  # annual mean 2 m temperature
    t2m_seasonal_amplitude_k: float = 9.0  # half the summer-winter difference
    t2m_diurnal_amplitude_k: float = 4.0  # half the day-night difference
    blh_day_summer_m: float = 1600.0  # typical afternoon BLH in summer
    blh_day_winter_m: float = 600.0  # typical afternoon BLH in winter
    blh_night_m: float = 250.0  # typical nocturnal BLH
    mean_wind_ms: float = 5.0  # climatological 10 m wind speed
    prevailing_wind_dir_deg: float = 240.0  # direction the wind comes FROM (meteorological)
    synoptic_timescale_days: float = 3.0  # persistence of wind regimes
    cloud_fraction_mean: float = 0.55  # mean total cloud cover
    surface_pressure_pa: float = 101000.0  # mean surface pressure
    lifetime_noon_summer_h: float = Field(3.0, gt=0)  # NO2 lifetime at noon, summer solstice (OH)
    lifetime_night_h: float = Field(16.0, gt=0)  # NO2 lifetime without sunlight


class EmissionsConfig(_Strict):
    """Emission map: cities, roads, industrial point sources, background."""

    n_cities: int = Field(5, ge=0)
    n_industrial: int = Field(6, ge=0)
    n_roads: int = Field(6, ge=0)
    city_strength: float = Field(1.0, ge=0)  # relative to the default emission scale
    background: float = Field(0.03, ge=0)  # relative background emission per cell
    weekend_factor: float = Field(0.7, gt=0)  # Sat/Sun emissions relative to weekdays
    winter_factor: float = Field(1.25, gt=0)  # DJF emissions relative to the annual mean
    inflow_column_umol_m2: float = Field(15.0, ge=0)  # background column entering the domain
    free_troposphere_umol_m2: float = Field(8.0, ge=0)  # constant column above the transported one


class SatelliteConfig(_Strict):
    """TROPOMI-like sampling: overpass, swath geometry, noise and QA."""

    overpass_local_solar_hour: float = 13.5
    ground_pixels: int = Field(450, ge=8)  # across-track pixels per scanline
    nadir_across_km: float = 3.5
    nadir_along_km: float = 5.5
    swath_width_km: float = 2600.0
    noise_relative: float = Field(0.15, ge=0)  # relative retrieval noise (1 sigma)
    noise_floor_umol_m2: float = Field(8.0, ge=0)  # absolute noise floor (1 sigma)
    cloud_qa_threshold: float = Field(0.35, ge=0, le=1)  # tcc above this -> qa_value < 0.75
    max_track_offset_fraction: float = Field(0.9, ge=0, le=1)  # nadir offset / half swath, max
    failed_retrieval_fraction: float = Field(0.02, ge=0, lt=1)  # pixels written as fill value
    # write only the ground pixels within this many degrees of the domain (None: the full swath
    # width, like the real product; a value makes files ~4x smaller and faster to write)
    crop_margin_deg: float | None = Field(None, ge=0)


class SynthConfig(_Strict):
    """The simulated world written in real formats (DESIGN §6)."""

    start_date: dt.date = dt.date(2021, 1, 1)
    days: int = Field(1000, ge=1)
    met_resolution: float = Field(0.25, gt=0)  # ERA5-like grid spacing, degrees
    met_margin_deg: float = Field(1.0, ge=0)  # ERA5 grid extends this far beyond the domain
    spinup_days: int = Field(3, ge=0)  # transport spin-up before the first written day
    write_hourly_truth: bool = False
    diffusivity_m2_s: float = Field(1000.0, ge=0)  # horizontal eddy diffusivity of the transport
    climate: ClimateConfig = ClimateConfig()
    emissions: EmissionsConfig = EmissionsConfig()
    satellite: SatelliteConfig = SatelliteConfig()
    workers: int = Field(2, ge=1)  # processes writing files


# --------------------------------------------------------------------------------------------
# pipeline: files -> cube
# --------------------------------------------------------------------------------------------
class AlignConfig(_Strict):
    """Temporal alignment of hourly meteorology to the overpass."""

    window_hours: float = Field(1.0, gt=0)
    method: Literal["nearest", "window"] = "nearest"
    steps: int = Field(24, ge=1)  # hourly steps ending at the overpass


class PipelineConfig(_Strict):
    """QA filter, regridding, alignment, normalization; the cube build."""

    qa_threshold: float = Field(0.75, ge=0, le=1)
    align: AlignConfig = AlignConfig()
    clip_range: tuple[float, float] = (-10.0, 10.0)
    scheduler: str | None = None  # dask scheduler address; None = local
    # ERA5 grid kept in the cube: the domain widened by this many degrees (0.5 keeps every
    # 0.25-degree ERA5 cell that overlaps the domain, plus one ring)
    met_margin_deg: float = Field(0.5, ge=0)
    workers: int = Field(2, ge=1)


# --------------------------------------------------------------------------------------------
# data: cube -> samples
# --------------------------------------------------------------------------------------------
class SplitConfig(_Strict):
    """Blocked time split: contiguous blocks with buffer days between splits."""

    block_days: int = Field(28, ge=1)
    buffer_days: int = Field(2, ge=0)
    val_fraction: float = Field(0.15, gt=0, lt=1)
    test_fraction: float = Field(0.15, gt=0, lt=1)
    seed: int = 0

    @model_validator(mode="after")
    def _fractions(self) -> SplitConfig:
        if self.val_fraction + self.test_fraction >= 0.9:
            raise ValueError("val_fraction + test_fraction must leave at least 10% for training")
        return self


class DataConfig(_Strict):
    """Samples: lead, tiles, splits, loaders."""

    lead: int = Field(1, ge=0, le=7)  # 1 = next-day forecast, 0 = gap filling
    tile_size: int = Field(64, ge=8)
    gap_fill_extra_mask: bool = True  # lead 0: hide extra cells with another day's cloud mask
    # trailing composite input: mean of the valid observations of the last N calendar days up
    # to and including the input day (1 = the input day alone)
    composite_days: int = Field(7, ge=1, le=60)
    # training tiles per day and epoch: None = every tile covering the domain (an epoch covers
    # the whole domain); a number draws that many random tiles per day instead
    tiles_per_day: int | None = Field(None, ge=1)
    # met cells around each tile in the sample's meteorology block (back-trajectories leave the
    # tile; the block's edge values stand in beyond it)
    met_margin_cells: int = Field(2, ge=0, le=16)
    split: SplitConfig = SplitConfig()
    batch_size: int = Field(16, ge=1)
    num_workers: int = Field(0, ge=0)
    cache_in_memory: bool = True
    cache_max_gb: float = Field(3.0, ge=0)  # cache the cube's features only below this size


# --------------------------------------------------------------------------------------------
# model
# --------------------------------------------------------------------------------------------
class ModelConfig(_Strict):
    """Cross-modal predictor and its neural baselines (``kind``)."""

    kind: Literal["cross_modal", "concat", "satellite_only"] = "cross_modal"
    embed_dim: int = Field(256, ge=8)
    cnn_channels: tuple[int, ...] = (32, 64, 128, 256)
    auxiliary_layers: int = Field(4, ge=1)
    auxiliary_heads: int = Field(8, ge=1)
    num_attention_layers: int = Field(2, ge=1)
    num_attention_heads: int = Field(8, ge=1)
    dropout: float = Field(0.1, ge=0, lt=1)
    head_hidden_dim: int = Field(128, ge=1)
    token_stride: int = Field(4, ge=1)
    qk_norm: bool = True
    # transport: back-trajectories through the hourly wind carry a learned source field to each
    # cell, weighted by the attention over hours (cross_modal) or uniformly (concat)
    transport: bool = True
    decoder_channels: int = Field(32, ge=4)
    # the prediction is this satellite input channel plus the network's correction: with
    # "climatology" every cell starts from its training mean (single-cell sources included);
    # checkpoints written before this option existed load as "none"
    residual: Literal["none", "climatology", "composite"] = "climatology"
    # residual_gain: the base's local excess over its 5 x 5 mean (a point source, a city core)
    # is scaled by exp(g), g a second output of the head in (-2, 2): a one-cell source follows
    # the day's ventilation multiplicatively, which an additive correction learns from its few
    # cells only slowly. No effect with residual "none"; checkpoints from before it load as false
    residual_gain: bool = True

    @model_validator(mode="after")
    def _heads_divide(self) -> ModelConfig:
        for name in ("auxiliary_heads", "num_attention_heads"):
            if self.embed_dim % getattr(self, name):
                raise ValueError(f"embed_dim {self.embed_dim} is not divisible by {name}")
        return self


# --------------------------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------------------------
class TrainingConfig(_Strict):
    """Warm-start regime (seed) and the Lightning execution settings."""

    warmup_epochs: int = Field(10, ge=0)
    finetune_epochs: int = Field(40, ge=0)
    warmup_lr: float = Field(1e-3, gt=0)
    finetune_lr: float = Field(1e-4, gt=0)
    encoder_lr_factor: float = Field(0.1, gt=0, le=1)  # encoders' LR multiplier in phase 2
    # constant: each phase at its LR (the seed); cosine: phase 1 decays warmup_lr -> finetune_lr,
    # phase 2 finetune_lr -> finetune_lr / 10, per batch (better at a budget of few epochs)
    lr_schedule: Literal["constant", "cosine"] = "constant"
    weight_decay: float = Field(1e-4, ge=0)
    loss: Literal["huber", "weighted_mae"] = "huber"
    huber_delta: float = Field(1.0, gt=0)
    early_stopping_patience: int = Field(8, ge=1)
    gradient_clip: float = Field(1.0, ge=0)
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    accelerator: Literal["auto", "cpu", "gpu"] = "auto"
    devices: int | Literal["auto"] = 1
    num_nodes: int = Field(1, ge=1)
    strategy: str = "auto"
    compile: bool = False
    limit_train_batches: int | None = None  # cap batches per epoch (tests, quick runs)
    limit_val_batches: int | None = None  # cap validation batches per epoch (tests, quick runs)
    deterministic: bool = True  # deterministic torch algorithms: same seed -> same losses

    @field_validator("warmup_lr", "finetune_lr", mode="before")
    @classmethod
    def _yaml_float(cls, value: Any) -> Any:
        # PyYAML reads "1e-3" (no dot) as a string; accept it as the number it means.
        return float(value) if isinstance(value, str) else value


# --------------------------------------------------------------------------------------------
# evaluation
# --------------------------------------------------------------------------------------------
class EvaluationConfig(_Strict):
    """Baselines, breakdowns, ablation and robustness settings."""

    pollution_quantiles: tuple[float, ...] = (0.5, 0.75, 0.9, 0.97)
    dropout_rates: tuple[float, ...] = (0.1, 0.3, 0.5)
    noise_levels: tuple[float, ...] = (0.05, 0.1)
    baselines: tuple[
        Literal["persistence", "climatology", "lightgbm", "concat", "satellite_only"], ...
    ] = (
        "persistence",
        "climatology",
        "lightgbm",
        "concat",
        "satellite_only",
    )
    attention_days: int = Field(3, ge=1)  # test days drawn in attention_maps.png
    lightgbm_rounds: int = Field(300, ge=1)
    lightgbm_max_samples: int = Field(400_000, ge=1000)
    # what the trees learn: the value, or its departure from the per-cell training climatology
    lightgbm_target: Literal["value", "anomaly"] = "value"
    # LightGBM threads (0 = all cores). 1 by default: OpenMP spin-waiting made 2 threads 4x
    # slower than 1 on a shared 2-core machine (benchmarks in docs/bench_demo.md).
    lightgbm_threads: int = Field(1, ge=0)
    robustness_samples: int = Field(64, ge=1)  # test days for the shuffle and robustness tests
    shuffle_threshold: float = Field(0.01, ge=0)  # RMSE rise above which a shuffle "hurts"


# --------------------------------------------------------------------------------------------
# root
# --------------------------------------------------------------------------------------------
class Config(_Strict):
    """A whole run."""

    seed: int = Field(42, ge=0)
    grid: GridConfig = GridConfig()
    synth: SynthConfig = SynthConfig()
    pipeline: PipelineConfig = PipelineConfig()
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    training: TrainingConfig = TrainingConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    # data.tile_size against the domain is checked where tiles are cut (data/tiles.py, the
    # train/run/predict commands), not here: a build of a small domain does not use it.


def _format_validation_error(error: ValidationError, source: str) -> str:
    first = error.errors()[0]
    key = ".".join(str(part) for part in first["loc"]) or "(root)"
    if first["type"] == "extra_forbidden":
        problem = "unknown key"
    else:
        problem = first["msg"].removeprefix("Value error, ")
    more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
    return f"{source}: {key}: {problem}{more}"


def config_from_dict(values: dict[str, Any], source: str = "config") -> Config:
    """Validate a plain mapping; raise ``ConfigError`` naming the first bad key."""
    try:
        return Config.model_validate(values)
    except ValidationError as error:
        raise ConfigError(_format_validation_error(error, source)) from None
    except ConfigError as error:  # raised by BBox/grid checks inside validators
        raise ConfigError(f"{source}: {error}") from None


SHIPPED_CONFIGS: tuple[str, ...] = ("default", "demo", "test")


def shipped_config(name: str) -> Path:
    """The path of a config shipped with the package (``default``, ``demo``, ``test``).

    Raises ``ConfigError`` listing the names for any other ``name``.
    """
    if name not in SHIPPED_CONFIGS:
        raise ConfigError(
            f"no shipped config named {name!r}; shipped: {', '.join(SHIPPED_CONFIGS)}"
        )
    return Path(str(resources.files("no2fusion") / "configs" / f"{name}.yaml"))


def config_path(path_or_name: str | Path) -> Path:
    """``path_or_name`` when it is a file, else the shipped config of that name."""
    path = Path(path_or_name)
    if not path.exists() and str(path_or_name) in SHIPPED_CONFIGS:
        return shipped_config(str(path_or_name))
    return path


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> Config:
    """Read a YAML config (``yaml.safe_load``), apply dotted ``overrides``, validate.

    ``path`` is a file or the name of a shipped config (``default``, ``demo``, ``test``).
    ``overrides`` maps dotted keys to values, e.g. ``{"training.warmup_epochs": 1}``.
    """
    path = config_path(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise ConfigError(f"cannot read config: {error.strerror}", path) from None
    try:
        values = yaml.safe_load(text) or {}
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"not valid YAML{where}", path) from None
    if not isinstance(values, dict):
        raise ConfigError("config must be a mapping of sections", path)
    for dotted, value in (overrides or {}).items():
        node = values
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return config_from_dict(values, str(path))


def dump_config(config: Config, path: str | Path) -> None:
    """Write the resolved config as YAML (every key, defaults included), atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
