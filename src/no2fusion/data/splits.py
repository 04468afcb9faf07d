"""Blocked time split of the cube's days into train / validation / test.

Sits at the start of ``data/``: ``datamodule.py`` splits the cube's ``time`` coordinate here
before any normalizer is fit, so statistics come from training days only (DESIGN §5, §7).

NO2 fields are autocorrelated from day to day, so a random-day split leaks. Instead the
calendar (from the first to the last cube day) is cut into contiguous blocks of
``block_days``; whole blocks go to test, validation or train (seeded), and ``buffer_days``
calendar days are dropped at every boundary between blocks of different splits (from the train
side, else the validation side), so any two days of different splits are more than
``buffer_days`` apart. Every season (DJF, MAM, JJA, SON) that owns at least one block (by
majority of its days) is present in the test split.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from no2fusion.config import SplitConfig
from no2fusion.errors import NoDataError

SEASONS: tuple[str, ...] = ("DJF", "MAM", "JJA", "SON")
SPLIT_NAMES: tuple[str, ...] = ("train", "val", "test")
_TRAIN, _VAL, _TEST, _BUFFER = 0, 1, 2, -1


def season_of(days: NDArray[np.datetime64]) -> NDArray[np.str_]:
    """Meteorological season ("DJF", "MAM", "JJA", "SON") of each day, same shape."""
    months = days.astype("datetime64[M]").astype(np.int64) % 12  # 0 = January
    index = ((months + 1) % 12) // 3  # Dec/Jan/Feb -> 0, Mar-May -> 1, ...
    return np.asarray(SEASONS)[index]


@dataclass(frozen=True)
class Split:
    """Days of each split (datetime64[D], ascending) and the buffer days left out."""

    train: NDArray[np.datetime64]
    val: NDArray[np.datetime64]
    test: NDArray[np.datetime64]
    buffer: NDArray[np.datetime64]

    def days(self, name: str) -> NDArray[np.datetime64]:
        """The days of split ``name`` ("train", "val", "test" or "buffer")."""
        if name not in (*SPLIT_NAMES, "buffer"):
            raise ValueError(f"unknown split {name!r}; expected one of {SPLIT_NAMES}")
        return getattr(self, name)

    def hidden_from(self, name: str) -> NDArray[np.datetime64]:
        """Days whose observations must never be an input of split ``name``'s samples: for
        training the validation and test days, for validation the test days, for test none
        (a test day's past observations are what the model has at forecast time)."""
        hidden = {"train": (self.val, self.test), "val": (self.test,), "test": ()}[name]
        if not hidden:
            return np.zeros(0, dtype="datetime64[D]")
        return np.sort(np.concatenate(hidden)).astype("datetime64[D]")

    def to_dict(self) -> dict[str, list[str]]:
        """ISO dates per split: plain types, for checkpoints and JSON."""
        return {
            name: [str(day) for day in getattr(self, name)] for name in (*SPLIT_NAMES, "buffer")
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Split:
        def days(name: str) -> NDArray[np.datetime64]:
            return np.asarray(values.get(name, []), dtype="datetime64[D]")

        return cls(days("train"), days("val"), days("test"), days("buffer"))


def _block_seasons(
    block_of_day: NDArray[np.int64], days: NDArray[np.datetime64], n_blocks: int
) -> list[str]:
    """The majority season of each block's (calendar) days."""
    seasons = season_of(days)
    result = []
    for block in range(n_blocks):
        names, counts = np.unique(seasons[block_of_day == block], return_counts=True)
        result.append(str(names[np.argmax(counts)]))
    return result


def blocked_split(days: NDArray[Any], config: SplitConfig) -> Split:
    """Split ``days`` (any datetime64 array, e.g. the cube's ``time``) into blocked splits.

    Blocks are ``config.block_days`` calendar days long, counted from the first day. Test gets
    ``round(test_fraction * blocks)`` blocks (at least one, and at least one per season that
    owns a block), validation ``round(val_fraction * blocks)`` (at least one), train the rest.
    The choice of blocks is seeded by ``config.seed``. Raises ``NoDataError`` when the days are
    too few for three non-empty splits.
    """
    observed = np.unique(np.asarray(days).astype("datetime64[D]"))
    if observed.size == 0:
        raise NoDataError("cannot split: the cube has no day")
    calendar = np.arange(observed[0], observed[-1] + np.timedelta64(1, "D"), dtype="datetime64[D]")
    block_of_day = (np.arange(calendar.size) // config.block_days).astype(np.int64)
    n_blocks = int(block_of_day[-1]) + 1
    seasons = _block_seasons(block_of_day, calendar, n_blocks)
    required = sorted(set(seasons), key=SEASONS.index)
    n_test = max(round(config.test_fraction * n_blocks), 1, len(required))
    n_val = max(round(config.val_fraction * n_blocks), 1)
    need = n_test + n_val + 1
    if n_blocks < need:
        raise NoDataError(
            f"too few days for the blocked split: {calendar.size} calendar days make {n_blocks} "
            f"blocks of {config.block_days} days, but test ({n_test}, one per season "
            f"{'/'.join(required)}), validation ({n_val}) and train (1) need {need}; "
            "use more days or a smaller data.split.block_days"
        )

    rng = np.random.default_rng(config.seed)
    label = np.full(n_blocks, _TRAIN, dtype=np.int64)
    for season in required:  # one test block per season, drawn among that season's blocks
        candidates = [b for b in range(n_blocks) if seasons[b] == season and label[b] == _TRAIN]
        label[rng.choice(candidates)] = _TEST
    for code, count in ((_TEST, n_test - len(required)), (_VAL, n_val)):
        free = np.flatnonzero(label == _TRAIN)
        label[rng.choice(free, size=count, replace=False)] = code

    day_label = label[block_of_day]
    # Buffers: at each boundary between blocks of different splits, drop ``buffer_days`` days
    # from the side that can best spare them: train before val before test (test keeps its
    # whole blocks, so its seasons survive the buffers).
    for block in range(1, n_blocks):
        before, after = label[block - 1], label[block]
        if before == after or config.buffer_days == 0:
            continue
        start = block * config.block_days  # first calendar index of ``block``
        if before < after:  # _TRAIN < _VAL < _TEST: the earlier block gives the days
            lo, hi = max(start - config.buffer_days, 0), start
        else:
            lo, hi = start, min(start + config.buffer_days, calendar.size)
        day_label[lo:hi] = _BUFFER

    present = np.isin(calendar, observed)
    split = Split(
        train=calendar[(day_label == _TRAIN) & present],
        val=calendar[(day_label == _VAL) & present],
        test=calendar[(day_label == _TEST) & present],
        buffer=calendar[(day_label == _BUFFER) & present],
    )
    for name in SPLIT_NAMES:
        if split.days(name).size == 0:
            raise NoDataError(
                f"too few days for the blocked split: the {name} split is empty after "
                f"{config.buffer_days} buffer days; use more days or smaller buffers"
            )
    return split
