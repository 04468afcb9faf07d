"""The typed sample: what ``NO2TileDataset`` gives and what training and evaluation take.

Sits in ``data/`` beside ``dataset.py`` (which fills it) and before ``models/``: the
LightningModule trains on ``Batch`` objects and the tiled predictor of ``evaluation/`` feeds
``Batch.sat`` / ``Batch.aux`` to the model. Only the leading batch dimension is fixed here; the
shapes behind it are the dataset's business (``NO2TileDataset.satellite_channel_names`` names
the channels of ``sat``, ``NO2TileDataset.aux_axes`` the axes of ``aux``), so new input channels
or meteorology per token change the dataset, not this class.

The network is called in one way everywhere (training, evaluation, ``no2fusion predict``, the
attention maps): ``model(*batch.model_inputs())``, the fields named in ``MODEL_INPUTS`` in the
order of the network's ``forward`` arguments. A new input tensor (a calendar vector, a met block
around the tile, ...) is a new field here, filled by ``NO2TileDataset.tile_sample`` and listed in
``MODEL_INPUTS``; the tiled predictor, the Lightning module and the perturbation tests pass it on
without change.

One sample (``dataset[i]``) is a ``Batch`` without the leading dimension; ``stack_samples``
(the DataLoader's ``collate_fn``) stacks samples into a batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields, replace

import torch
from torch import Tensor

# The fields the network takes, in the order of its ``forward`` arguments.
MODEL_INPUTS: tuple[str, ...] = ("sat", "aux", "wind", "met_affine", "calendar")


@dataclass
class Batch:
    """Model inputs, target and bookkeeping of B samples (not frozen: Lightning moves the
    tensors to the device by rebuilding the fields).

    Fields (shapes with the leading B; a single sample has the same without it):
        sat: (B, C, H, W) float32 satellite-derived channels, NaN-free.
        aux: (B, ...) float32 normalized meteorology: (B, T=24, F=13, mh, mw) on the met block
            around the tile from ``NO2TileDataset``, or the seed's (B, T, F) tile means.
        wind: (B, T, 2, mh, mw) float32 10 m wind in target cells per hour on the met block
            (rows north, columns east); (B, 0) when absent (the seed's form).
        met_affine: (B, 4) float32 met-block index = a + b * tile cell index, (a_i, b_i, a_j,
            b_j); (B, 0) when absent.
        calendar: (B, 7) float32 one-hot weekday of the target day; (B, 0) when absent.
        target: (B, H, W) float32 normalized NO2 of the target day, 0 where invalid.
        target_mask: (B, H, W) bool, cells with a valid target (losses and metrics use these).
        hidden_mask: (B, H, W) bool, valid target cells the input did not show.
        weight: (B, H, W) float32 cell area / mean cell area of the tile.
        day_index: (B,) int64 target day (index into ``CubeArrays.times``; -1 = unknown).
        row, col: (B,) int64 tile origin on the target grid (-1 = unknown).
    """

    sat: Tensor
    aux: Tensor
    wind: Tensor
    met_affine: Tensor
    calendar: Tensor
    target: Tensor
    target_mask: Tensor
    hidden_mask: Tensor
    weight: Tensor
    day_index: Tensor
    row: Tensor
    col: Tensor

    @property
    def size(self) -> int:
        """B, the number of samples."""
        return int(self.sat.shape[0])

    def model_inputs(self) -> tuple[Tensor, ...]:
        """The network's positional inputs: ``model(*batch.model_inputs())``."""
        return tuple(getattr(self, name) for name in MODEL_INPUTS)

    def with_inputs(self, **inputs: Tensor) -> Batch:
        """A copy with some model inputs replaced (perturbation tests, device moves); the
        target and bookkeeping fields are shared. Raises ``ValueError`` for a name that is not
        in ``MODEL_INPUTS``."""
        unknown = set(inputs) - set(MODEL_INPUTS)
        if unknown:
            raise ValueError(f"not model inputs: {sorted(unknown)} (MODEL_INPUTS: {MODEL_INPUTS})")
        return replace(self, **inputs)

    @classmethod
    def from_inputs(
        cls, sat: Tensor, aux: Tensor, target: Tensor, mask: Tensor | None = None
    ) -> Batch:
        """A batch from bare tensors (the seed's ``(sat, aux, target[, mask])`` loaders):
        ``mask`` defaults to the finite target cells, NaN targets become 0, weights are 1."""
        valid = torch.isfinite(target) if mask is None else mask.to(torch.bool)
        valid = valid & torch.isfinite(target)
        unknown = torch.full((int(sat.shape[0]),), -1, dtype=torch.int64)
        absent = torch.zeros((int(sat.shape[0]), 0), dtype=sat.dtype)
        return cls(
            sat=sat,
            aux=aux,
            wind=absent,
            met_affine=absent.clone(),
            calendar=absent.clone(),
            target=torch.where(valid, target, torch.zeros_like(target)),
            target_mask=valid,
            hidden_mask=torch.zeros_like(valid),
            weight=torch.ones_like(target),
            day_index=unknown,
            row=unknown.clone(),
            col=unknown.clone(),
        )


def stack_samples(samples: Sequence[Batch]) -> Batch:
    """Stack single samples into one ``Batch`` (the ``collate_fn`` of the data loaders)."""
    if not samples:
        raise ValueError("cannot stack an empty list of samples")
    stacked = {
        field.name: torch.stack([getattr(sample, field.name) for sample in samples])
        for field in fields(Batch)
    }
    return Batch(**stacked)
