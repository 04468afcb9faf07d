"""The tiled predictor: exact where the model is, smooth where tiles disagree, and the same
field whether a day is predicted alone or batched with other days."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import Tensor

from no2fusion.config import ModelConfig
from no2fusion.data.batch import Batch
from no2fusion.data.tiles import Tile
from no2fusion.errors import ConfigError
from no2fusion.evaluation.inference import FieldRequest, InferenceSettings, TiledPredictor
from no2fusion.evaluation.tiling import blend_window, overlapping_tiles, tile_origins
from no2fusion.models import build_model


def sample(sat: Tensor, aux: Tensor) -> Batch:
    """A tile sample (no batch axis) holding only these model inputs; the rest is empty."""
    empty = torch.zeros(sat.shape[-2:])
    unknown = torch.tensor(-1)
    absent = torch.zeros(0)  # no wind, met affine or calendar: the seed's form
    return Batch(
        sat=sat,
        aux=aux,
        wind=absent,
        met_affine=absent,
        calendar=absent,
        target=empty,
        target_mask=empty.bool(),
        hidden_mask=empty.bool(),
        weight=empty,
        day_index=unknown,
        row=unknown,
        col=unknown,
    )


def tiled(
    model: object,
    shape: tuple[int, int],
    inputs: object,
    *,
    tile_size: int,
    overlap: int,
    batch_size: int = 16,
) -> np.ndarray:
    """One field through ``TiledPredictor.blend``."""
    predictor = TiledPredictor(model, InferenceSettings(tile_size, overlap, batch_size))  # type: ignore[arg-type]
    (field,) = predictor.blend([FieldRequest(shape, inputs)])  # type: ignore[arg-type]
    return field


def predict_field(
    model: object, sat: Tensor, aux: Tensor, *, tile_size: int, overlap: int, batch_size: int = 16
) -> np.ndarray:
    """Tiled prediction over a satellite field (C, H, W) with one shared aux."""

    def inputs(tile: Tile) -> Batch:
        return sample(sat[:, tile.rows, tile.cols], aux)

    shape = (int(sat.shape[1]), int(sat.shape[2]))
    return tiled(model, shape, inputs, tile_size=tile_size, overlap=overlap, batch_size=batch_size)


def test_tile_origins_stride_and_flush_last_tile() -> None:
    assert tile_origins(100, 32, 8) == [0, 24, 48, 68]  # stride 24, last flush with the end
    assert tile_origins(96, 32, 8) == [0, 24, 48, 64]
    assert tile_origins(32, 32, 8) == [0]
    assert tile_origins(64, 32, 0) == [0, 32]
    with pytest.raises(ConfigError, match="larger than the domain"):
        tile_origins(20, 32, 8)
    with pytest.raises(ConfigError, match="overlap"):
        tile_origins(100, 32, 17)


def test_blend_window_ramps_are_complementary_and_positive() -> None:
    size, overlap = 20, 6
    w = blend_window(size, overlap)
    assert np.all(w > 0) and w.max() == 1.0
    np.testing.assert_allclose(w, w[::-1])
    np.testing.assert_array_equal(w[overlap : size - overlap], 1.0)
    # the falling ramp of one tile plus the rising ramp of the next (offset size - overlap) = 1
    np.testing.assert_allclose(w[size - overlap :] + w[:overlap], 1.0, atol=1e-15)
    np.testing.assert_array_equal(blend_window(8, 0), 1.0)


def test_a_local_function_is_reproduced_exactly_with_uneven_tiles() -> None:
    """Weights are normalized: tiling the identity gives the identity, seams and borders too."""
    sat = torch.randn(2, 50, 70, generator=torch.Generator().manual_seed(0))
    aux = torch.zeros(24, 13)
    calls: list[int] = []

    def identity(s: Tensor, a: Tensor, *absent: Tensor) -> Tensor:
        calls.append(s.shape[0])
        return s[:, 0]  # (B, C, h, w) -> (B, h, w)

    out = predict_field(identity, sat, aux, tile_size=16, overlap=6, batch_size=5)
    np.testing.assert_allclose(out, sat[0].numpy(), rtol=0, atol=1e-6)
    n_tiles = len(tile_origins(50, 16, 6)) * len(tile_origins(70, 16, 6))
    assert sum(calls) == n_tiles and max(calls) == 5


def test_seams_between_disagreeing_tiles_are_smooth_ramps() -> None:
    """Each tile predicts a constant (its column origin): the blend must rise monotonically
    with steps no larger than the raised cosine allows, where hard tiling jumps."""
    shape, size = (16, 40), 16

    def inputs(tile: Tile) -> Batch:
        return sample(torch.zeros(1, size, size), torch.full((1, 1), float(tile.col)))

    def constant(s: Tensor, a: Tensor, *absent: Tensor) -> Tensor:
        return a[:, 0, 0][:, None, None].expand(-1, size, size)

    smooth = tiled(constant, shape, inputs, tile_size=size, overlap=8)
    hard = tiled(constant, shape, inputs, tile_size=size, overlap=0)
    row = smooth[5].astype(np.float64)
    steps = np.diff(row)
    jump = 8.0  # neighbouring tile origins differ by the stride, 8 cells
    assert np.all(steps >= -1e-6)  # monotone
    assert steps.max() <= jump * math.sin(math.pi / 16) + 1e-5  # raised-cosine bound ~1.56
    assert row[0] == 0.0 and row[-1] == 24.0  # the borders are the border tiles' values
    np.testing.assert_allclose(smooth, smooth[:1].repeat(16, axis=0))  # constant along rows
    assert np.abs(np.diff(hard[5])).max() >= 8.0  # hard tiles jump by a whole tile step


def test_fields_batched_across_days_are_the_fields_predicted_alone() -> None:
    """Tiles of several requests (days) share forward passes; each field comes back whole, in
    order, and equal to the field predicted on its own."""
    generator = torch.Generator().manual_seed(2)
    fields = [torch.randn(1, 20, 30, generator=generator) for _ in range(3)]
    calls: list[int] = []

    def doubled(s: Tensor, a: Tensor, *absent: Tensor) -> Tensor:
        calls.append(s.shape[0])
        return 2.0 * s[:, 0] + a[:, :1, None]

    def request(k: int) -> FieldRequest:
        def inputs(tile: Tile) -> Batch:
            return sample(fields[k][:, tile.rows, tile.cols], torch.full((1,), float(k)))

        return FieldRequest((20, 30), inputs)

    predictor = TiledPredictor(doubled, InferenceSettings(16, 4, batch_size=5))  # type: ignore[arg-type]
    together = list(predictor.blend(request(k) for k in range(3)))
    per_field = len(overlapping_tiles((20, 30), 16, 4))  # 2 x 3 tiles
    assert per_field == 6 and calls == [5, 5, 5, 3]  # batches span two fields
    for k, field in enumerate(together):
        alone = next(iter(predictor.blend([request(k)])))
        np.testing.assert_array_equal(field, alone)
        np.testing.assert_allclose(field, 2.0 * fields[k][0].numpy() + k, atol=1e-5)
    with pytest.raises(ConfigError, match="batch_size"):
        TiledPredictor(doubled, InferenceSettings(16, 4, batch_size=0))  # type: ignore[arg-type]


def test_inputs_of_any_shape_pass_through_the_predictor_and_its_transforms() -> None:
    """Nothing behind the batch axis is fixed: 5 satellite channels and a met block
    (T, F, mh, mw) per tile reach the model stacked as they are, and a transform (what the
    robustness tests use) changes the batch before the forward pass."""
    generator = torch.Generator().manual_seed(3)
    sat = torch.randn(5, 24, 24, generator=generator)
    met = torch.randn(24, 13, 3, 4, generator=generator)  # (T, F, mh, mw)
    shapes: list[tuple[tuple[int, ...], tuple[int, ...]]] = []

    def model(s: Tensor, a: Tensor, *absent: Tensor) -> Tensor:
        shapes.append((tuple(s.shape), tuple(a.shape)))
        return s[:, 4] + a[:, -1, 0].mean(dim=(1, 2))[:, None, None]

    def inputs(tile: Tile) -> Batch:
        return sample(sat[:, tile.rows, tile.cols], met)

    def zero_first_feature(batch: Batch) -> Batch:
        return batch.with_inputs(aux=batch.aux.index_fill(2, torch.tensor([0]), 0.0))

    predictor = TiledPredictor(model, InferenceSettings(16, 4, batch_size=2))  # type: ignore[arg-type]
    (field,) = predictor.blend([FieldRequest((24, 24), inputs)])
    assert shapes[0] == ((2, 5, 16, 16), (2, 24, 13, 3, 4))
    expected = sat[4].numpy() + met[-1, 0].mean().item()
    np.testing.assert_allclose(field, expected, atol=1e-5)
    (zeroed,) = predictor.blend([FieldRequest((24, 24), inputs)], zero_first_feature)
    np.testing.assert_allclose(zeroed, sat[4].numpy(), atol=1e-5)
    with pytest.raises(ValueError, match="not model inputs"):
        sample(sat, met).with_inputs(target=torch.zeros(1))


@pytest.fixture(scope="module")
def small_model() -> torch.nn.Module:
    """A real cross-modal model with random weights and a short receptive field (two CNN
    stages), so that cells far from every tile edge exist."""
    torch.manual_seed(0)
    config = ModelConfig(
        embed_dim=16,
        cnn_channels=(8, 16),
        auxiliary_layers=1,
        auxiliary_heads=2,
        num_attention_layers=1,
        num_attention_heads=2,
        dropout=0.0,
        head_hidden_dim=16,
        token_stride=4,
        residual="none",
    )
    return build_model(config, satellite_in_channels=2).eval()


def _far_from_inner_edges(shape: tuple[int, int], tiles: list[Tile], margin: int) -> np.ndarray:
    """Cells at least ``margin`` from every edge of every covering tile that is not the domain
    border (where the untiled model sees the same zero padding)."""
    ok = np.ones(shape, dtype=bool)
    rows, cols = np.arange(shape[0])[:, None], np.arange(shape[1])[None, :]
    far = 10**6
    for t in tiles:
        inside = (
            (rows >= t.row) & (rows < t.row + t.size) & (cols >= t.col) & (cols < t.col + t.size)
        )
        top = rows - t.row if t.row > 0 else np.full_like(rows, far)
        bottom = t.row + t.size - 1 - rows if t.row + t.size < shape[0] else np.full_like(rows, far)
        left = cols - t.col if t.col > 0 else np.full_like(cols, far)
        right = t.col + t.size - 1 - cols if t.col + t.size < shape[1] else np.full_like(cols, far)
        distance = np.minimum(np.minimum(top, bottom), np.minimum(left, right))
        ok &= ~inside | (distance >= margin)
    return ok


def test_tiled_matches_untiled_away_from_tile_edges_and_seams_are_smooth(
    small_model: torch.nn.Module,
) -> None:
    torch.set_num_threads(1)
    generator = torch.Generator().manual_seed(1)
    shape = (96, 160)
    sat = torch.randn(2, *shape, generator=generator)
    sat[1] = (sat[1] > 0).float()  # a validity-mask-like channel
    aux = torch.randn(24, 13, generator=generator)
    with torch.inference_mode():
        full = small_model(sat[None], aux[None])[0][0].numpy()  # (H, W), untiled
    # measure the receptive field: how far one poked input cell reaches
    poked = sat.clone()
    poked[0, 48, 80] += 10.0
    with torch.inference_mode():
        changed = np.abs(small_model(poked[None], aux[None])[0][0].numpy() - full) > 0
    rows, cols = np.nonzero(changed)
    reach = int(max(np.abs(rows - 48).max(), np.abs(cols - 80).max()))
    assert reach < 32, f"receptive field {reach} too large for this test's 64-cell tiles"

    # overlap 24 (>= the reach): origins 0/32 and 0/40/80/96, multiples of the token stride
    size, overlap = 64, 24
    tiles = overlapping_tiles(shape, size, overlap)
    assert all(t.row % 4 == 0 and t.col % 4 == 0 for t in tiles)
    tiled = predict_field(small_model, sat, aux, tile_size=size, overlap=overlap)
    far = _far_from_inner_edges(shape, tiles, margin=reach + 1)
    assert far.sum() > 0.2 * far.size
    np.testing.assert_allclose(tiled[far], full[far], rtol=0, atol=2e-5)

    # the same tiles stitched with hard cuts (each cell from the tile whose centre is nearest)
    cut = np.zeros(shape)
    nearest = np.full(shape, np.inf)
    r, c = np.mgrid[0 : shape[0], 0 : shape[1]]
    with torch.inference_mode():
        for t in tiles:
            pred = small_model(sat[None, :, t.rows, t.cols], aux[None])[0][0].numpy()
            inside = (r >= t.row) & (r < t.row + size) & (c >= t.col) & (c < t.col + size)
            centre = np.maximum(np.abs(r - t.row - size / 2), np.abs(c - t.col - size / 2))
            take = inside & (centre < nearest)
            cut[take] = pred[r[take] - t.row, c[take] - t.col]
            nearest[take] = centre[take]

    def excess_step(field: np.ndarray) -> float:
        """Largest change of an adjacent-cell difference against the untiled field."""
        return max(
            float(np.abs(np.diff(field, axis=a) - np.diff(full, axis=a)).max()) for a in (0, 1)
        )

    assert excess_step(tiled) < 0.4 * excess_step(cut)  # measured ~0.2
    assert np.abs(tiled - full).max() < 0.5 * np.abs(cut - full).max()
