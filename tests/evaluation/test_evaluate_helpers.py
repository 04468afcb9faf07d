"""Tile bookkeeping of the evaluation: tiles back onto the domain, overlaps averaged."""

from __future__ import annotations

import numpy as np

from no2fusion.evaluation.evaluate import Collected, _tiles_of, assemble


def _collected(days: list[int], rows: list[int], cols: list[int], size: int) -> Collected:
    n = len(days)
    return Collected(
        sat=np.zeros((n, 2, size, size), np.float32),
        aux=np.zeros((n, 24, 13), np.float32),
        target_mask=np.ones((n, size, size), bool),
        hidden_mask=np.zeros((n, size, size), bool),
        day_index=np.array(days),
        row=np.array(rows),
        col=np.array(cols),
    )


def test_assemble_places_and_averages_overlapping_tiles() -> None:
    # domain 2 x 3, tiles of 2 at columns 0 and 1 (overlap in column 1), two days
    collected = _collected([5, 5, 9], [0, 0, 0], [0, 1, 0], size=2)
    tiles = np.stack([np.full((2, 2), 1.0), np.full((2, 2), 3.0), np.full((2, 2), 7.0)])
    positions = {5: 0, 9: 1}
    field = assemble(tiles, collected, positions, (2, 3))
    assert field.shape == (2, 2, 3)
    assert field[0].tolist() == [[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]]
    assert np.isnan(field[1, :, 2]).all() and (field[1, :, :2] == 7.0).all()
    mask = assemble(
        np.stack([np.eye(2), np.zeros((2, 2)), np.zeros((2, 2))]),
        collected,
        positions,
        (2, 3),
        "max",
    )
    assert mask[0].tolist() == [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]
    back = _tiles_of(field, positions, collected)
    assert back.shape == (3, 2, 2) and back[1].tolist() == [[2.0, 3.0], [2.0, 3.0]]
