"""The typed content of ``metrics.json``: frozen dataclasses, written and read in one place.

Sits in ``evaluation/``: the runners (``baselines``, ``ablation``, ``robustness``,
``attention``) and ``scoring`` build these objects, ``evaluate.evaluate_run`` assembles them
into ``Metrics``, and ``report/`` (console summary, figures, HTML template) reads them by
attribute, never by string key. ``Metrics.to_json`` / ``Metrics.from_json`` convert with
pydantic (``TypeAdapter``), so a new field is one line in its dataclass: it is written, read
back and validated without further code. A file whose ``schema_version`` differs, or that lacks
a field, is a one-line ``InputFileError``.

Adding a field: declare it in its dataclass (``Real`` for a score that may be undefined), fill
it where the runner or ``evaluate.evaluate_run`` builds the object, and raise
``SCHEMA_VERSION`` (files written before it then fail with "re-run the evaluation" instead of
a missing key); the report template, console and figures read it by attribute, and
``tests/report/test_metrics_schema.py`` fails for any attribute they read that the schema
lacks. A whole new section of ``metrics.json`` is a new frozen dataclass and a field of
``Metrics``.

JSON conventions: strict JSON (an undefined score, NaN in memory, is ``null`` in the file and
NaN again when read); the headline scores sit under the key ``global`` (``global_`` here, a
Python keyword otherwise). Schema version 3 (version 1 was the untyped dict of the first
release; 2 adds ``inference`` and counts robustness/shuffle days as ``n_days``; 3 scores every
model against the truth beside the observation-noise floor, ``TruthScores``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import BeforeValidator, Field, TypeAdapter, ValidationError

from no2fusion.errors import InputFileError
from no2fusion.files import atomic_path

SCHEMA_VERSION = 3
T = TypeVar("T")


def _none_to_nan(value: Any) -> Any:
    return math.nan if value is None else value


# A float that may be undefined: NaN in memory, null in the file.
Real = Annotated[float, BeforeValidator(_none_to_nan)]


_ADAPTERS: dict[Any, TypeAdapter[Any]] = {}


def _adapter(cls: type[T]) -> TypeAdapter[T]:
    if cls not in _ADAPTERS:
        _ADAPTERS[cls] = TypeAdapter(cls)
    return _ADAPTERS[cls]


def parse(cls: type[T], data: Any) -> T:
    """``data`` (plain JSON types) validated into ``cls``; raises ``ValueError`` naming the first
    bad or missing key."""
    try:
        return _adapter(cls).validate_python(data)
    except ValidationError as error:
        first = error.errors()[0]
        key = ".".join(str(part) for part in first["loc"]) or "(root)"
        raise ValueError(f"{key}: {first['msg']}") from None


def dump(value: Any) -> Any:
    """Plain JSON types of a dataclass (or container of them): NaN -> None, aliases used."""
    adapter = _adapter(type(value))
    return json.loads(adapter.dump_json(value, by_alias=True))


# ------------------------------------------------------------------------------------ scores
@dataclass(frozen=True)
class Scores:
    """``metrics.compute_all`` on one set of cells (units umol m-2; twins in molec cm-2)."""

    n_valid: int
    units: str
    rmse: Real
    mae: Real
    bias: Real
    r2: Real
    spatial_correlation: Real
    rmse_molec_cm2: Real
    mae_molec_cm2: Real
    bias_molec_cm2: Real
    units_molec_cm2: str


@dataclass(frozen=True)
class HeadlineScores(Scores):
    """Scores of a whole test split, with skill against the two reference forecasts."""

    skill_vs_persistence: Real
    skill_vs_climatology: Real


@dataclass(frozen=True)
class SeasonScores(Scores):
    n_days: int


@dataclass(frozen=True)
class BinScores(Scores):
    """Scores of one pollution level: observed values in [lower, upper) (None = open end)."""

    lower: float | None
    upper: float | None


@dataclass(frozen=True)
class PollutionBreakdown:
    edges: tuple[float, ...]
    quantiles: tuple[float, ...]
    units: str
    bins: dict[str, BinScores]


@dataclass(frozen=True)
class Breakdowns:
    region: dict[str, Scores]
    season: dict[str, SeasonScores]
    pollution: PollutionBreakdown


@dataclass(frozen=True)
class ModelScores:
    """One model's (or baseline's) headline scores and breakdowns on the scored cells."""

    global_: Annotated[HeadlineScores, Field(alias="global")]
    breakdowns: Breakdowns


# ------------------------------------------------------------------------- run description
@dataclass(frozen=True)
class SplitInfo:
    lead: int
    scored_cells: str
    test_days: int
    first_day: str
    last_day: str
    train_days: int
    val_days: int


@dataclass(frozen=True)
class InferenceInfo:
    """How every model prediction was made (the settings ``no2fusion predict`` uses too)."""

    tile_size: int
    tile_overlap: int
    tile_blending: str
    batch_size: int
    device: str
    precision: str


# ----------------------------------------------------------------------------------- runners
@dataclass(frozen=True)
class ShuffleTest:
    description: str
    rmse: Real
    rmse_change: Real


@dataclass(frozen=True)
class AblationResult:
    """Attention entropy (mean entropy / ln T) on ``entropy_days`` test days (every test day;
    None in files written before it was recorded, which used the ``n_days`` subset) and the
    meteorology shuffle tests on ``n_days`` test days, scored on the headline cells of those
    days."""

    entropy_ratio: Real
    entropy_ratio_per_layer: tuple[float, ...]
    collapse_threshold: float
    collapsed: bool | None
    shuffle_threshold: float
    shuffle_reference_rmse: Real
    shuffle: dict[str, ShuffleTest]
    n_days: int
    entropy_days: int | None = None


@dataclass(frozen=True)
class RobustnessTest:
    """One perturbation: its RMSE on the reference cells, the change (fraction, +0.1 = +10 %)
    and the seed's expectation."""

    category: str  # dropout_random | dropout_cloud | noise | feature_group
    label: str
    setting: float | str
    setting_label: str
    rmse: Real
    rmse_change: Real
    achieved_rate: float | None
    expectation: str
    limit: float | None
    passed: bool | None
    better_than_climatology: bool | None


@dataclass(frozen=True)
class RobustnessResult:
    reference_rmse: Real
    climatology_rmse: float | None
    n_days: int
    tests: tuple[RobustnessTest, ...]


@dataclass(frozen=True)
class TruthRow:
    """One model (or baseline) against the noise-free truth on the scored cells.

    ``explained_predictable_variance``: 1 - MSE(prediction, truth) / Var(truth), area-weighted
    (the R² against the truth): the share of the predictable (noise-free) variance the model
    explains. ``rmse_over_floor``: ``rmse`` / the observation-noise floor."""

    name: str
    rmse: Real
    mae: Real
    bias: Real
    explained_predictable_variance: Real
    rmse_over_floor: Real


@dataclass(frozen=True)
class TruthScores:
    """How much predictable signal is left (synthetic cubes, which carry ``no2_truth``).

    ``noise_floor_rmse``: the RMSE of the observations against the truth on the same cells (what
    a perfect forecast of the truth would score against the observations); ``model``: the model's
    full scores against the truth; ``rows``: every model and baseline; ``truth_by_region``: the
    truth scored as a prediction of the observations per region class (empty in older metrics
    files). Where the observations are the truth plus zero-mean noise its R2 bounds what a model
    reaches there; where the observation operator smooths or biases them (pixel sampling and
    regridding smooth a single-cell source) it does not, and a model trained on observations
    can beat it."""

    noise_floor_rmse: Real
    truth_std: Real
    model: Scores
    rows: tuple[TruthRow, ...]
    truth_by_region: dict[str, Scores] = field(default_factory=dict)


@dataclass(frozen=True)
class Verdict:
    criterion: str
    passed: bool | None
    statement: str
    value: float | None


@dataclass(frozen=True)
class TableRow:
    """One row of the headline table (the model or a baseline)."""

    name: str
    rmse: Real
    mae: Real
    bias: Real
    r2: Real
    spatial_correlation: Real
    skill_vs_persistence: Real
    skill_vs_climatology: Real
    n_valid: int


@dataclass(frozen=True)
class Summary:
    table: tuple[TableRow, ...]
    best_rmse: str | None
    not_winning: tuple[str, ...]
    verdicts: tuple[Verdict, ...]


# ------------------------------------------------------------------------------- metrics.json
@dataclass(frozen=True)
class Metrics:
    """The whole ``metrics.json`` (the fields in file order)."""

    schema_version: int
    model: str
    units: str
    unit_factor_molec_cm2: float
    global_: Annotated[HeadlineScores, Field(alias="global")]
    split: SplitInfo
    inference: InferenceInfo
    breakdowns: Breakdowns
    baselines: dict[str, ModelScores]
    ablation: AblationResult
    robustness: RobustnessResult
    truth: TruthScores | None
    summary: Summary
    checkpoints: dict[str, str]
    evaluation_seconds: float
    evaluation_phases_seconds: dict[str, float]
    timings_seconds: dict[str, float] = field(default_factory=dict)
    # per feature, the fraction of the test days' met inputs outside the training range
    # (evaluation.distribution)
    outside_training_range: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """Plain JSON types (NaN -> None)."""
        out: dict[str, Any] = dump(self)
        return out

    @classmethod
    def from_json(cls, data: Any, source: str | Path = "metrics.json") -> Metrics:
        """Validate plain JSON types; ``InputFileError`` for another schema version or a
        missing / mistyped field (naming it)."""
        version = data.get("schema_version") if isinstance(data, dict) else None
        if version != SCHEMA_VERSION:
            raise InputFileError(
                f"metrics schema_version {version}, this no2fusion reads {SCHEMA_VERSION} "
                "(re-run the evaluation: no2fusion run --mode eval)",
                source,
            )
        try:
            return parse(cls, data)
        except ValueError as error:
            raise InputFileError(f"not a valid metrics file ({error})", source) from None

    def write(self, path: str | Path) -> Path:
        """Write strict JSON atomically; returns the path."""
        path = Path(path)
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(self.to_json(), indent=1, allow_nan=False))
        return path

    @classmethod
    def read(cls, path: str | Path) -> Metrics:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise InputFileError(f"cannot read metrics ({error})", path) from None
        return cls.from_json(data, path)

    def with_timings(self, timings: dict[str, float]) -> Metrics:
        """A copy with ``timings_seconds`` (the run's stage timings) set."""
        return replace(self, timings_seconds=dict(timings))

    def model_scores(self) -> dict[str, ModelScores]:
        """The model and every baseline, model first: name -> scores."""
        return {self.model: ModelScores(self.global_, self.breakdowns), **self.baselines}
