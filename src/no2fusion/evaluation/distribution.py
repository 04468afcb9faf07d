"""Out-of-distribution report: how much of a model's input lies outside what it was trained on.

Sits in ``evaluation/`` beside ``predict.py`` and ``evaluate.py``, which both call it. A
meteorological input is *outside the training range* when its normalized value (the training
median and IQR of that feature, ``Normalizers.features``) lies beyond the normalizer's clip
range: the model then sees it clipped, a value it never saw in training. The seasonal features
(day of year, sin/cos) never leave their range, yet mean the opposite season in the other
hemisphere: ``other_hemisphere`` says when a domain and the training grid lie on different
sides of the equator (the simulated and the real climates alike follow the northern calendar
in those features; such a model must not be used there).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from no2fusion.data.arrays import CubeArrays, Normalizers
from no2fusion.vocab import FEATURES

# a feature is reported when more than this fraction of its inputs lies outside
WARN_FRACTION = 0.01


def outside_training_range(
    arrays: CubeArrays, days: Sequence[int] | NDArray[np.int64], normalizers: Normalizers
) -> dict[str, float]:
    """Per feature, the fraction of the finite hourly met values of the day indices ``days``
    (every hour and met cell) whose normalized value lies outside the clip range."""
    low, high = normalizers.features.clip_range
    outside = np.zeros(len(FEATURES))
    finite = np.zeros(len(FEATURES))
    for day in np.asarray(days, dtype=np.int64):  # one day at a time: bounded memory
        raw = arrays.raw_features(np.array([day]))[0]  # (T, met_lat, met_lon, F)
        z = normalizers.features.transform(raw, clip=False)
        valid = np.isfinite(z)
        outside += ((z < low) | (z > high)).sum(axis=(0, 1, 2))
        finite += valid.sum(axis=(0, 1, 2))
    return {
        name: float(outside[k] / finite[k]) if finite[k] else 0.0 for k, name in enumerate(FEATURES)
    }


def warnings_for(fractions: dict[str, float], threshold: float = WARN_FRACTION) -> list[str]:
    """One line per feature above ``threshold``, the worst first."""
    worst = sorted(fractions.items(), key=lambda item: -item[1])
    return [
        f"{100 * fraction:.1f} % of the {name} inputs lie outside the training range "
        "(the model sees them clipped)"
        for name, fraction in worst
        if fraction > threshold
    ]


def other_hemisphere(normalizers: Normalizers, lat: NDArray[np.float64]) -> bool:
    """True when the cells at latitudes ``lat`` and the training grid lie mostly on different
    sides of the equator."""
    trained = float(np.median(normalizers.climatology_lat))
    here = float(np.median(lat))
    return (trained >= 0) != (here >= 0)
