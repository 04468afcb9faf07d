"""Checkpoints: atomic writes, safe loading, and the loader evaluation and prediction use.

Sits in ``training/``; ``evaluation/`` and ``report/`` get a trained model only through
``load_checkpoint``. A checkpoint is Lightning's dict (model ``state_dict``, optimizer states,
loop and callback states, for ``--resume``) plus ``checkpoint["no2fusion"]`` holding plain types
only: the resolved config (``Config.model_dump(mode="json")``), both normalizers' statistics,
the split days (ISO dates), the satellite channel count and names, package/torch/lightning
versions, the epoch history and the torch RNG state. Everything loads with
``torch.load(weights_only=True)``, so opening a checkpoint never executes pickled code.

Writes go through ``files.atomic_path`` (a temporary file in the same folder, fsynced, then
``os.replace``): a crash mid-write leaves the previous ``best.ckpt`` / ``last.ckpt`` untouched.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from torch import nn

from no2fusion.config import Config, config_from_dict
from no2fusion.data.arrays import Normalizers
from no2fusion.data.dataset import NO2TileDataset
from no2fusion.data.splits import Split
from no2fusion.errors import InputFileError
from no2fusion.files import atomic_path
from no2fusion.models import build_model

META_KEY = "no2fusion"
BEST_NAME = "best"
LAST_NAME = "last"


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` through ``files.atomic_path``, fsynced before the rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        torch.save(obj, handle)
        handle.flush()
        os.fsync(handle.fileno())


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoint I/O whose saves are atomic (temp file + ``os.replace``)."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO does not take storage_options")
        atomic_torch_save(checkpoint, path)


def versions() -> dict[str, str]:
    """Versions of the packages that shape a checkpoint."""
    import lightning

    from no2fusion import __version__

    return {
        "no2fusion": str(__version__),
        "torch": str(torch.__version__),  # a TorchVersion, which weights_only refuses
        "lightning": str(lightning.__version__),
    }


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The raw checkpoint dict, loaded with ``weights_only=True`` on the CPU.

    Raises ``InputFileError`` for a missing, truncated or foreign file.
    """
    path = Path(path)
    if not path.is_file():
        raise InputFileError("no such checkpoint", path)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated zip, pickle refused by weights_only, ...
        reason = str(error).splitlines()[0][:200] if str(error) else type(error).__name__
        raise InputFileError(f"not a readable checkpoint ({reason})", path) from None
    if (
        not isinstance(checkpoint, dict)
        or META_KEY not in checkpoint
        or "state_dict" not in checkpoint
    ):
        raise InputFileError("not a no2fusion checkpoint (no model state or run metadata)", path)
    return checkpoint


def read_meta(path: str | Path) -> dict[str, Any]:
    """``checkpoint["no2fusion"]`` (config, normalizers, split, versions, history)."""
    return dict(read_checkpoint(path)[META_KEY])


def model_state_dict(checkpoint: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The wrapped network's weights: the LightningModule's ``model.`` prefix removed."""
    prefix = "model."
    return {
        k[len(prefix) :]: v for k, v in checkpoint["state_dict"].items() if k.startswith(prefix)
    }


# what a model option meant before it existed (checkpoints store the whole resolved config, so
# an option missing from one was not there when it was trained)
PRE_OPTION_DEFAULTS = {
    # a network predicting the value itself: the current default (a correction of the
    # climatology channel) would add a channel the weights never learnt
    "residual": "none",
    # one output map: the gain's second map has no weights in such a checkpoint
    "residual_gain": False,
}


def _with_pre_option_defaults(stored_config: dict[str, Any]) -> dict[str, Any]:
    """The stored config with ``PRE_OPTION_DEFAULTS`` for the model options it predates."""
    model = stored_config.get("model")
    if not isinstance(model, dict):
        return stored_config
    return {**stored_config, "model": {**PRE_OPTION_DEFAULTS, **model}}


def load_checkpoint(path: str | Path) -> tuple[nn.Module, Config, Normalizers, dict[str, Any]]:
    """Rebuild a trained model from a checkpoint written by ``train_model``.

    Returns ``(model, config, normalizers, meta)``: the model in eval mode on the CPU (inputs
    and outputs in normalized units); the resolved run ``Config``; the fitted ``Normalizers``
    (``normalizers.no2.inverse_transform`` maps predictions to umol m-2); and ``meta`` with
    ``split`` (a ``data.splits.Split``), ``satellite_in_channels``, ``satellite_channel_names``
    (absent in older checkpoints), ``versions``, ``history``, ``epoch``, ``global_step`` and
    ``path`` (the checkpoint file).
    """
    path = Path(path)
    checkpoint = read_checkpoint(path)
    stored = checkpoint[META_KEY]
    try:
        config = config_from_dict(
            _with_pre_option_defaults(stored["config"]), source=f"{path} (stored config)"
        )
        normalizers = Normalizers.from_dict(stored["normalizers"])
        channels = int(stored["satellite_in_channels"])
        split = Split.from_dict(stored["split"])
    except KeyError as missing:
        raise InputFileError(f"checkpoint metadata lacks {missing}", path) from None
    names = stored.get("satellite_channel_names")
    try:
        model = build_model(
            config.model, channels, channel_names=tuple(names) if names is not None else None
        )
    except ValueError as error:
        raise InputFileError(str(error), path) from None
    try:
        model.load_state_dict(model_state_dict(checkpoint))
    except RuntimeError as error:
        first = str(error).splitlines()[0]
        raise InputFileError(
            f"weights do not fit the stored model config ({first})", path
        ) from None
    model.eval()
    meta = {
        **{k: v for k, v in stored.items() if k not in ("config", "normalizers", "split")},
        "split": split,
        "epoch": int(checkpoint.get("epoch", -1)),
        "global_step": int(checkpoint.get("global_step", -1)),
        "path": str(path),
    }
    return model, config, normalizers, meta


def check_satellite_channels(meta: Mapping[str, Any], dataset: NO2TileDataset) -> None:
    """Refuse to feed a trained model other satellite channels than it was trained on.

    ``meta`` is ``load_checkpoint``'s; ``dataset`` builds the inputs it is to be given.
    Raises ``InputFileError`` naming both channel lists (or counts, for an older checkpoint
    without names): a checkpoint from before a change of the inputs needs retraining.
    """
    trained = meta.get("satellite_channel_names")
    built = dataset.satellite_channel_names
    if trained is not None and tuple(trained) != built:
        raise InputFileError(
            f"the model was trained on satellite channels {', '.join(trained)}; this code and "
            f"config build {', '.join(built)} (retrain the model)",
            meta.get("path", "checkpoint"),
        )
    count = meta.get("satellite_in_channels")
    if count is not None and int(count) != len(built):
        raise InputFileError(
            f"the model was trained on {int(count)} satellite channels; this code and config "
            f"build {len(built)} ({', '.join(built)}; retrain the model)",
            meta.get("path", "checkpoint"),
        )
