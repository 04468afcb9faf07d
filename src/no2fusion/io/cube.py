"""Reading the datacube (Zarr), checked: schema, completeness and every chunk a read touches.

Sits in ``io/``: ``data/`` and ``evaluation/`` open cubes through ``open_cube`` and nothing else;
the schema is in ``cube_schema.py`` and writing in ``cube_write.py`` (their names are
re-exported here). ``no2fusion check CUBE`` runs ``check_cube``.

Integrity: a day flagged complete must have every chunk of its required variables (zarr reads
a missing chunk as the fill value, so a deleted features chunk would read as all-NaN
meteorology); ``open_cube`` refuses a cube where one is missing, and a chunk that cannot be
decoded raises ``CubeReadError`` when it is read. Both name the cube, the variable and the day
in one line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import xarray as xr

from no2fusion.errors import CubeDamagedError, CubeSchemaError
from no2fusion.io.cube_schema import (
    ALL_CHUNKS_ATTR,
    CUBE_DIMS,
    CUBE_VARIABLES,
    OPTIONAL_VARIABLES,
    TIME_ENCODING,
    check_cube_schema,
    open_store,
)
from no2fusion.io.cube_write import (
    CubeLayout,
    clear_day_complete,
    completed_days,
    create_cube,
    cube_layout_matches,
    update_cube_attrs,
    write_day,
    write_static,
)

__all__ = [
    "ALL_CHUNKS_ATTR",
    "CUBE_DIMS",
    "CUBE_VARIABLES",
    "OPTIONAL_VARIABLES",
    "TIME_ENCODING",
    "CubeCheck",
    "CubeLayout",
    "check_cube",
    "check_cube_schema",
    "clear_day_complete",
    "completed_days",
    "create_cube",
    "cube_layout_matches",
    "missing_chunks",
    "open_cube",
    "update_cube_attrs",
    "write_day",
    "write_static",
]


def open_cube(path: str | Path, complete_only: bool = True) -> xr.Dataset:
    """Open a cube lazily and check its schema.

    With ``complete_only`` (default) days whose ``day_complete`` flag is not set are dropped,
    so an interrupted build never yields half-written days, and a complete day that lacks a
    chunk is an error. Every later read of a per-day variable that meets a chunk it cannot
    decode raises ``CubeDamagedError`` (module docstring).

    Raises:
        CubeSchemaError: no cube, not a Zarr store, schema violated, no complete day.
        CubeDamagedError: a complete day lacks a chunk (names the variable and the day).
    """
    path = Path(path)
    cube = open_store(path)
    check_cube_schema(cube, path)
    if complete_only:
        complete = np.asarray(cube["day_complete"].values, dtype=bool)
        if not complete.any():
            raise CubeSchemaError("cube has no complete day", path)
        lost = missing_chunks(path, cube)
        if lost:
            name, index = lost[0]
            more = f" (and {len(lost) - 1} more)" if len(lost) > 1 else ""
            raise CubeDamagedError(
                f"variable '{name}' has no chunk for day {_day_names(cube)[index]}, which is "
                f"flagged complete{more}: a deleted or lost file; `no2fusion check {path}` "
                "lists all, and `no2fusion build` on the same sources rewrites those days",
                path,
            )
    cube = _checked(cube, path)
    if complete_only:
        cube = cube.isel(time=np.flatnonzero(complete))
    return cube


# ------------------------------------------------------------------------------------------------
# integrity
# ------------------------------------------------------------------------------------------------
# Per-day variables whose chunk every complete day of a built cube has: a written day is never
# entirely the fill value in them (zarr stores no chunk that is all fill value, so
# ``no2_truth``, NaN on a day the truth file lacks, is not among them). The build stamps its
# cubes with ``ALL_CHUNKS_ATTR``; other stores (older cubes, hand-made test cubes with days of
# all-NaN NO2) are held to ``features`` alone.
PER_DAY: tuple[str, ...] = tuple(
    name
    for name, (dims, _units) in CUBE_VARIABLES.items()
    if dims[0] == "time" and name != "day_complete"
)
ALWAYS_REQUIRED: tuple[str, ...] = ("features",)


def required_chunks(cube: xr.Dataset) -> tuple[str, ...]:
    """The per-day variables a complete day of ``cube`` must have a chunk of."""
    return PER_DAY if int(cube.attrs.get(ALL_CHUNKS_ATTR, 0)) else ALWAYS_REQUIRED


def _day_names(cube: xr.Dataset) -> list[str]:
    return [str(np.datetime_as_string(t, unit="D")) for t in cube["time"].values]


def missing_chunks(
    path: str | Path, cube: xr.Dataset | None = None, names: Sequence[str] | None = None
) -> list[tuple[str, int]]:
    """(variable, day index) of every chunk of ``names`` (default ``required_chunks``) that a
    day flagged complete lacks, ordered by day."""
    import zarr
    from zarr.core.sync import sync

    path = Path(path)
    cube = open_store(path) if cube is None else cube
    names = required_chunks(cube) if names is None else names
    complete = np.flatnonzero(np.asarray(cube["day_complete"].values, dtype=bool))
    store = zarr.storage.LocalStore(str(path), read_only=True)

    async def keys(prefix: str) -> set[str]:
        return {key async for key in store.list_prefix(prefix)}

    missing = []
    for name in names:
        array = zarr.open_array(store, path=name, mode="r")
        present = sync(keys(f"{name}/"))
        for index in complete:
            chunk = array.metadata.encode_chunk_key((int(index),) + (0,) * (array.ndim - 1))
            if f"{name}/{chunk}" not in present:
                missing.append((name, int(index)))
    return sorted(missing, key=lambda item: (item[1], item[0]))


class _CheckedReads:
    """Array-like over one lazily decoded per-day variable: a chunk that cannot be read or
    decoded raises ``CubeDamagedError`` naming the cube, variable and day (for dask)."""

    def __init__(self, variable: xr.Variable, path: Path, name: str, days: list[str]) -> None:
        self.variable = variable
        self.path, self.name, self.days = path, name, days
        self.shape = variable.shape
        self.dtype = variable.dtype
        self.ndim = variable.ndim

    def __getitem__(self, key: tuple[slice, ...]) -> np.ndarray:
        try:
            return np.asarray(self.variable[key].values)
        except Exception as error:  # zstd, zarr and OS errors of a damaged chunk
            first = key[0] if isinstance(key, tuple) else key
            start = (first.start or 0) if isinstance(first, slice) else int(first)
            day = self.days[start] if start < len(self.days) else f"index {start}"
            raise CubeDamagedError(
                f"variable '{self.name}' of day {day} cannot be read (damaged chunk: "
                f"{type(error).__name__}: {error}); `no2fusion check {self.path}` lists all",
                self.path,
            ) from None


def _checked(cube: xr.Dataset, path: Path) -> xr.Dataset:
    """``cube`` with every per-day variable read through ``_CheckedReads``."""
    import dask.array as da

    lazy = xr.open_zarr(path, chunks=None)  # lazily decoded (CF) variables, no dask
    days = _day_names(cube)
    replaced = {}
    for name, variable in cube.data_vars.items():
        if not variable.dims or variable.dims[0] != "time":
            continue
        reads = _CheckedReads(lazy[name].variable, path, str(name), days)
        data = da.from_array(
            reads,
            chunks=variable.data.chunks,
            name=False,
            asarray=True,
            meta=np.empty((0,) * variable.ndim, dtype=variable.dtype),
        )
        replaced[name] = variable.copy(data=data)
    return cube.assign(replaced)


# ------------------------------------------------------------------------------------------------
# no2fusion check CUBE
# ------------------------------------------------------------------------------------------------
@dataclass
class CubeCheck:
    """What ``check_cube`` found: ``problems`` (damage: exit 2) and ``notes`` (harmless)."""

    path: Path
    days: int = 0
    complete: int = 0
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def damaged(self) -> bool:
        return bool(self.problems)

    def lines(self) -> list[str]:
        verdict = f"DAMAGED ({len(self.problems)} problem(s))" if self.damaged else "intact"
        head = f"{self.path}: {self.days} days, {self.complete} complete; {verdict}"
        return [
            head,
            *(f"  problem: {p}" for p in self.problems),
            *(f"  note: {n}" for n in self.notes),
        ]


def _consistency(name: str, values: np.ndarray) -> str | None:
    """Why a complete day's decoded ``values`` of ``name`` cannot be a written day, or None."""
    if name == "overpass_time" and np.isnat(values).any():
        return "no overpass time"
    if name == "met_time" and np.isnat(values).any():
        return "hours without an ERA5 time"
    if name == "no2" and not np.isfinite(values).any():
        return "no valid NO2 cell"
    meteorology = name == "features" or name.startswith("met_")
    if meteorology and values.dtype.kind == "f" and not np.isfinite(values).all():
        return "NaN meteorology"
    return None


def check_cube(path: str | Path, progress: bool = False) -> CubeCheck:
    """Verify a cube: schema, every chunk of every complete day present and decodable, and
    ``day_complete`` consistent with the data (a complete day has an overpass time, a valid NO2
    cell and finite meteorology). Reads the whole cube once.

    Raises ``CubeSchemaError`` only when the store cannot be opened at all; everything else is
    reported in the returned ``CubeCheck``.
    """
    from tqdm import tqdm

    path = Path(path)
    report = CubeCheck(path)
    cube = open_store(path)
    try:
        check_cube_schema(cube, path)
    except CubeSchemaError as error:
        report.problems.append(f"schema: {error.message}")
        return report
    days = _day_names(cube)
    flags = np.asarray(cube["day_complete"].values, dtype=bool)
    report.days, report.complete = len(days), int(flags.sum())
    if not flags.any():
        report.problems.append("no day is flagged complete")
    lost = set(missing_chunks(path, cube))
    for name, index in sorted(lost, key=lambda item: (item[1], item[0])):
        report.problems.append(f"day {days[index]}: variable '{name}': chunk missing")
    checked = _checked(cube, path)
    names = [str(n) for n, v in checked.data_vars.items() if v.dims and v.dims[0] == "time"]
    for index in tqdm(np.flatnonzero(flags), desc="checking days", disable=not progress):
        for name in names:
            if (name, int(index)) in lost:
                continue
            try:
                values = np.asarray(checked[name].isel(time=int(index)).values)
            except CubeDamagedError:
                report.problems.append(
                    f"day {days[index]}: variable '{name}': chunk cannot be decoded"
                )
                continue
            wrong = _consistency(name, values)
            if wrong is not None:
                report.problems.append(
                    f"day {days[index]}: flagged complete but variable '{name}' has {wrong}"
                )
    half = [days[i] for i in np.flatnonzero(~flags)]
    if half:
        shown = ", ".join(half[:5]) + (" ..." if len(half) > 5 else "")
        report.notes.append(
            f"{len(half)} day(s) not complete (no usable pixel, or an interrupted build that a "
            f"rerun completes): {shown}"
        )
    return report
