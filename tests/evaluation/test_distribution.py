"""The out-of-distribution report: fractions outside the training range, the hemisphere check."""

from __future__ import annotations

import numpy as np

from no2fusion.data.arrays import CubeArrays, Normalizers
from no2fusion.evaluation.distribution import other_hemisphere, outside_training_range, warnings_for
from no2fusion.io.cube import open_cube
from no2fusion.pipeline.normalize import RobustNormalizer
from no2fusion.vocab import FEATURES


def _normalizers(features: RobustNormalizer, lat: np.ndarray) -> Normalizers:
    no2 = RobustNormalizer().fit(np.arange(10.0))
    return Normalizers(no2, features, np.zeros((lat.size, 2), np.float32), lat, np.zeros(2))


def test_fractions_outside_the_training_range_match_the_features_by_hand(make_cube) -> None:  # type: ignore[no-untyped-def]
    arrays = CubeArrays(open_cube(make_cube(days=60)))
    raw = arrays.raw_features(np.array([0]))  # features[t, h, i, j, f] = f + 0.01 t + 0.1 i
    narrow = RobustNormalizer((-0.5, 0.5)).fit(raw, axis=(0, 1, 2, 3))
    fractions = outside_training_range(arrays, [42], _normalizers(narrow, arrays.lat))
    i = np.arange(arrays.met_lat.size, dtype=np.float64)
    q25, q50, q75 = np.percentile(0.1 * i, [25, 50, 75])
    z = (0.01 * 42 + 0.1 * i - q50) / (q75 - q25)  # the same for every feature, hour and column
    expected = float(np.mean(np.abs(z) > 0.5))
    assert 0 < expected < 1
    for name in FEATURES:
        assert abs(fractions[name] - expected) < 1e-6
    assert len(warnings_for(fractions)) == len(FEATURES)
    wide = RobustNormalizer((-10.0, 10.0)).fit(raw, axis=(0, 1, 2, 3))
    inside = outside_training_range(arrays, [0, 1], _normalizers(wide, arrays.lat))
    assert set(inside.values()) == {0.0} and warnings_for(inside) == []


def test_other_hemisphere() -> None:
    north = _normalizers(RobustNormalizer(), np.array([47.0, 48.0]))
    assert not other_hemisphere(north, np.array([50.0, 51.0]))
    assert other_hemisphere(north, np.array([-35.0, -34.0]))
