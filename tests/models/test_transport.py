"""Transport: sampling is exact on linear fields, back-trajectories follow the wind, a source's
plume lies downwind; the met block is read where each token is."""

from __future__ import annotations

from typing import Any

import torch

from no2fusion.models import CrossModalNO2Predictor
from no2fusion.models.transport import Transport, back_trajectories, sample_at


def test_sample_at_is_exact_on_a_linear_field_and_clamps_at_the_edge() -> None:
    rows = torch.arange(5, dtype=torch.float32)[:, None].expand(5, 7)
    cols = torch.arange(7, dtype=torch.float32)[None, :].expand(5, 7)
    field = (2.0 * rows - 0.5 * cols + 3.0)[None, None]  # (1, 1, 5, 7)
    at_rows = torch.tensor([[0.25, 1.5, 3.9]])
    at_cols = torch.tensor([[6.0, 2.75, 0.1]])
    sampled = sample_at(field, at_rows, at_cols)[0, 0]
    torch.testing.assert_close(sampled, 2.0 * at_rows[0] - 0.5 * at_cols[0] + 3.0)
    beyond = sample_at(field, torch.tensor([[-3.0]]), torch.tensor([[10.0]]))[0, 0]
    torch.testing.assert_close(beyond, torch.tensor([2.0 * 0 - 0.5 * 6 + 3.0]))


def test_back_trajectories_in_a_uniform_wind_are_straight_lines() -> None:
    steps, height, width, margin = 6, 4, 5, 2
    wind = torch.zeros(1, steps, 2, height + 2 * margin, width + 2 * margin)
    wind[:, :, 0] = 0.5  # half a cell north per hour
    wind[:, :, 1] = 1.25  # east
    affine = torch.tensor([[float(margin), 1.0, float(margin), 1.0]])
    rows, cols = back_trajectories(wind, affine, height, width)
    assert rows.shape == cols.shape == (1, steps, height, width)
    hours_before = torch.arange(steps - 1, -1, -1, dtype=torch.float32)[:, None, None]
    cell_rows = torch.arange(height, dtype=torch.float32)[None, :, None]
    cell_cols = torch.arange(width, dtype=torch.float32)[None, None, :]
    torch.testing.assert_close(rows[0], (cell_rows - 0.5 * hours_before).expand(-1, -1, width))
    torch.testing.assert_close(cols[0], (cell_cols - 1.25 * hours_before).expand(-1, height, -1))


def test_a_point_source_makes_a_plume_downwind_only() -> None:
    steps, size = 6, 12
    transport = Transport(feature_channels=1, heads=1)
    with torch.no_grad():
        transport.source.weight.fill_(1.0)
        transport.source.bias.zero_()
    features = torch.full((1, 1, size, size), -20.0)  # softplus(-20) ~ 2e-9: no source
    features[0, 0, 6, 3] = 20.0  # one source
    wind = torch.zeros(1, steps, 2, size + 4, size + 4)
    wind[:, :, 1] = 1.0  # one cell east per hour
    rows, cols = back_trajectories(wind, torch.tensor([[2.0, 1.0, 2.0, 1.0]]), size, size)
    weights = torch.full((1, 1, steps, 3, 3), 1.0 / steps)  # every hour counts the same
    gain = torch.ones(1, 1, 3, 3)
    plume = transport(features, rows, cols, weights, gain)[0, 0]  # (H, W)
    # Air reaching (6, 3 + k) was over the source k hours ago: 1/steps of its strength each.
    torch.testing.assert_close(plume[6, 3 : 3 + steps], torch.full((steps,), 20.0 / steps))
    assert plume[6, :3].abs().max() < 1e-6  # upwind: nothing
    assert plume[6, 3 + steps :].abs().max() < 1e-6  # older than the window
    assert plume[[0, 1, 2, 3, 9, 10, 11]].abs().max() < 1e-6  # other rows


def test_each_cell_takes_the_hour_weights_of_its_own_token() -> None:
    """Tokens of 4 x 4 cells that each count one age of air: the plume of a point source in an
    east wind appears only where a cell's age matches its token's chosen hour."""
    steps, size = 6, 12
    transport = Transport(feature_channels=1, heads=1)
    with torch.no_grad():
        transport.source.weight.fill_(1.0)
        transport.source.bias.zero_()
    features = torch.full((1, 1, size, size), -20.0)
    features[0, 0, 6, 3] = 20.0
    wind = torch.zeros(1, steps, 2, size + 4, size + 4)
    wind[:, :, 1] = 1.0  # one cell east per hour: cell (6, 3 + k) sees air k hours old
    rows, cols = back_trajectories(wind, torch.tensor([[2.0, 1.0, 2.0, 1.0]]), size, size)
    weights = torch.zeros(1, 1, steps, 3, 3)
    for token_col, age in enumerate((0, 2, 5)):  # token columns: cells 0-3, 4-7, 8-11
        weights[0, 0, steps - 1 - age, :, token_col] = 1.0
    plume = transport(features, rows, cols, weights, torch.ones(1, 1, 3, 3))[0, 0]
    expected = torch.zeros(size)
    expected[[3, 5, 8]] = 20.0  # ages 0, 2, 5 in tokens 0, 1, 2
    torch.testing.assert_close(plume[6], expected, atol=1e-6, rtol=1e-6)


def test_cross_modal_reads_the_meteorology_where_each_token_is(
    tiny: dict, model_inputs: Any
) -> None:
    """Target: feature 5 at hour 20 of the met cells under each token (constant per token's
    4 x 4 cells). Only the met block holds it, per token: the tile mean cannot."""
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(1)
    model = CrossModalNO2Predictor(
        2, 13, token_stride=4, transport=False, **{**tiny, "num_attention_layers": 1}
    )
    # The fit has a plateau until attention finds hour 20 (~450 steps at lr 1e-3, ~150 at 5e-3).
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)

    def batch(size: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        inputs = model_inputs(batch=size, height=8, width=8, seed=int(torch.randint(1 << 30, ())))
        inputs["sat"] = torch.ones_like(inputs["sat"])
        per_token = torch.randn(size, 2, 2, generator=generator)
        cells = per_token.repeat_interleave(4, dim=1).repeat_interleave(4, dim=2)  # (B, 8, 8)
        block = inputs["aux"]
        padded = torch.nn.functional.pad(cells[:, None], (2, 3, 2, 3), mode="replicate")
        block[:, 20, 5] = padded[:, 0]  # (B, mh, mw): the met cells under each token
        return inputs, cells

    for _ in range(300):
        inputs, target = batch(8)
        pred, _ = model(**inputs)
        loss = (pred - target).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    inputs, target = batch(64)
    with torch.no_grad():
        pred, _ = model(**inputs)
        tile_mean, _ = model(inputs["sat"], inputs["aux"].mean(dim=(3, 4)))
    variance = target.var()
    assert (pred - target).square().mean() / variance < 0.3
    assert (tile_mean - target).square().mean() / variance > 0.7
