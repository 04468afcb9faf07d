"""The one tiled predictor: a trained model over a domain of any size, day by day.

Sits in ``evaluation/`` between ``runs.py`` (the trained model) and everything that needs
predictions: ``evaluate`` (headline scores, baselines' neural rows, ablation, robustness,
attention), ``predict`` (``no2fusion predict``) and, through them, the report. So the numbers
in ``metrics.json`` are the numbers ``no2fusion predict`` gives for the same checkpoint, day
and domain.

The inputs of every tile come from ``NO2TileDataset.tile_sample`` (the one place inputs are
built) as a ``data.batch.Batch``; ``DayInputs`` says what the model may see of one day. The
predictor never looks at the shapes behind the batch axis: it stacks the samples
(``stack_samples``) and calls ``model(*batch.model_inputs())``, so new input fields travel
through it unchanged. Windows of ``tile_size`` cells
overlap by ``overlap`` and are blended by ``tiling.BlendedField``. Tiles of consecutive days
share forward passes of ``batch_size`` tiles, and each day's field is yielded as soon as its
last tile is done, so at most about ``batch_size`` days are held at once. The model runs on the
run's device (CPU or CUDA) in its precision (bf16 autocast or fp32).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor, nn

from no2fusion.config import Config
from no2fusion.data.batch import MODEL_INPUTS, Batch, stack_samples
from no2fusion.data.dataset import DayInputs, NO2TileDataset
from no2fusion.data.tiles import Tile
from no2fusion.errors import ConfigError
from no2fusion.evaluation.results import InferenceInfo
from no2fusion.evaluation.tiling import BlendedField, default_overlap, overlapping_tiles
from no2fusion.models.precision import (
    Precision,
    RequestedPrecision,
    autocast_context,
    resolve_precision,
    to_channels_last,
)
from no2fusion.training.train import device_type

# a batch of normalized tile samples -> the same, perturbed (``Batch.with_inputs``; robustness
# and shuffle tests)
InputTransform = Callable[[Batch], Batch]
# tile -> the sample (one ``Batch`` without the batch axis) of that tile of one field
TileInputs = Callable[[Tile], Batch]
BLENDING = "separable raised-cosine window, weights normalized"


@dataclass(frozen=True)
class InferenceSettings:
    """How the model is run: window, overlap, tiles per forward pass, device, precision."""

    tile_size: int
    overlap: int
    batch_size: int = 16
    device: str = "cpu"
    precision: Precision = "fp32"
    channels_last: bool = False

    @classmethod
    def for_run(
        cls,
        config: Config,
        *,
        tile_size: int | None = None,
        overlap: int | None = None,
        batch_size: int | None = None,
        device: str | None = None,
        precision: RequestedPrecision | None = None,
        channels_last: bool = True,
    ) -> InferenceSettings:
        """The settings of a trained run (its tile size, batch size, ``training.precision``
        on the device its ``training.accelerator`` picks; conv weights channels-last, faster
        on CPU, ``benchmarks/bench_predict.py``), each overridable.

        Raises ``ConfigError`` when the tile size is not a multiple of the token stride.
        """
        size = tile_size or config.data.tile_size
        stride = config.model.token_stride
        if size % stride:
            raise ConfigError(
                f"tile size {size} is not a multiple of the model's token stride {stride}"
            )
        where = device or device_type(config.training)
        return cls(
            tile_size=size,
            overlap=default_overlap(size) if overlap is None else overlap,
            batch_size=batch_size or config.data.batch_size,
            device=where,
            precision=resolve_precision(precision or config.training.precision, where),
            channels_last=channels_last,
        )

    def info(self) -> InferenceInfo:
        """The settings as recorded in metrics.json."""
        return InferenceInfo(
            tile_size=self.tile_size,
            tile_overlap=self.overlap,
            tile_blending=BLENDING,
            batch_size=self.batch_size,
            device=self.device,
            precision=self.precision,
        )


@dataclass(frozen=True)
class FieldRequest:
    """One domain field to predict: its (n_lat, n_lon) shape and the inputs of each tile."""

    shape: tuple[int, int]
    inputs: TileInputs


@dataclass(frozen=True)
class DayPrediction:
    """One predicted day: what the model saw, and its field (lat, lon) float32 umol m-2."""

    day: DayInputs
    prediction: NDArray[np.float32]


@dataclass
class _OpenField:
    field: BlendedField
    remaining: int  # tiles not yet added


class TiledPredictor:
    """A network (``model(*batch.model_inputs(), return_attention=False) -> (pred,
    attention)``, or any callable returning ``pred`` (B, s, s) or a tuple led by it) run with
    ``settings``."""

    def __init__(self, model: nn.Module, settings: InferenceSettings) -> None:
        if settings.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {settings.batch_size}")
        self.settings = settings
        self.model = model
        if isinstance(model, nn.Module):
            model.eval().to(settings.device)
            if settings.channels_last:
                to_channels_last(model)

    @torch.inference_mode()
    def forward(self, batch: Batch, return_attention: bool = False) -> tuple[Tensor, Tensor | None]:
        """Normalized prediction (B, s, s) of a stacked ``batch`` and, when asked and the model
        has it, attention (B, layers, heads, tokens, T); both float32 on the CPU."""
        s = self.settings
        moved = batch.with_inputs(
            **{name: getattr(batch, name).to(s.device) for name in MODEL_INPUTS}
        )
        if s.channels_last and moved.sat.ndim == 4:  # (B, C, H, W) images only
            moved = moved.with_inputs(sat=moved.sat.contiguous(memory_format=torch.channels_last))
        with autocast_context(s.precision, s.device):
            output = (
                self.model(*moved.model_inputs(), return_attention=True)
                if return_attention
                else self.model(*moved.model_inputs())
            )
        pred, attention = (output[0], output[1]) if isinstance(output, tuple) else (output, None)
        weights = attention.float().cpu() if attention is not None else None
        return pred.float().cpu(), weights

    def blend(
        self, requests: Iterable[FieldRequest], transform: InputTransform | None = None
    ) -> Iterator[NDArray[np.float32]]:
        """The blended normalized field of each request, in order (see the module docstring).

        ``transform`` changes each stacked batch of normalized inputs before the forward pass.
        """
        size, overlap = self.settings.tile_size, self.settings.overlap
        open_fields: list[_OpenField] = []  # fields still waiting for tiles, in request order
        queue: list[tuple[_OpenField, Tile, TileInputs]] = []

        def run() -> None:
            batch = stack_samples([inputs(tile) for _, tile, inputs in queue])
            if transform is not None:
                batch = transform(batch)
            pred, _ = self.forward(batch)  # (B, s, s)
            for (target, tile, _), values in zip(queue, pred.numpy(), strict=True):
                target.field.add(tile, values)
                target.remaining -= 1
            queue.clear()

        def finished() -> Iterator[NDArray[np.float32]]:
            while open_fields and open_fields[0].remaining == 0:
                yield open_fields.pop(0).field.result()

        for request in requests:
            tiles = overlapping_tiles(request.shape, size, overlap)
            target = _OpenField(BlendedField(request.shape, size, overlap), len(tiles))
            open_fields.append(target)
            for tile in tiles:
                queue.append((target, tile, request.inputs))
                if len(queue) == self.settings.batch_size:
                    run()
                    yield from finished()
        if queue:
            run()
        yield from finished()

    def predict(
        self,
        dataset: NO2TileDataset,
        days: Iterable[DayInputs],
        transform: InputTransform | None = None,
    ) -> Iterator[DayPrediction]:
        """Each day's prediction in umol m-2 (the dataset's normalizers back-transform it)."""
        no2 = dataset.normalizers.no2
        pending: list[DayInputs] = []

        def requests() -> Iterator[FieldRequest]:
            for day in days:
                pending.append(day)
                yield FieldRequest(dataset.arrays.shape, partial(dataset.tile_sample, day))

        for field in self.blend(requests(), transform):
            physical = no2.inverse_transform(field.astype(np.float64)).astype(np.float32)
            yield DayPrediction(pending.pop(0), physical)


def predict_fields(
    predictor: TiledPredictor,
    dataset: NO2TileDataset,
    days: Iterable[DayInputs],
    transform: InputTransform | None = None,
) -> NDArray[np.float64]:
    """The predictions of ``days`` stacked: (days, lat, lon) umol m-2."""
    fields = [p.prediction for p in predictor.predict(dataset, days, transform)]
    if not fields:
        return np.zeros((0, *dataset.arrays.shape))
    return np.stack(fields).astype(np.float64)
