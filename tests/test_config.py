"""Config loading: defaults are the seed's, unknown keys and bad values fail naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from no2fusion.config import Config, dump_config, load_config
from no2fusion.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def test_default_config_has_the_seed_values() -> None:
    config = load_config(REPO / "config" / "default.yaml")
    assert config.grid.to_grid().shape == (64, 64)
    assert config.pipeline.qa_threshold == 0.75
    assert config.training.warmup_epochs == 10 and config.training.finetune_epochs == 40
    assert config.training.warmup_lr == 1e-3 and config.training.finetune_lr == 1e-4
    assert config.data.batch_size == 16
    assert config.model.embed_dim == 256 and config.model.num_attention_heads == 8
    assert config.synth.days == 1000


def test_test_config_is_tiny() -> None:
    config = load_config(REPO / "config" / "test.yaml")
    assert config.grid.to_grid().shape == (16, 16)
    assert config.synth.days <= 60


def test_unknown_key_is_named(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("training:\n  warmup_epoch: 3\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: training.warmup_epoch: unknown key"):
        load_config(path)


def test_bad_value_is_named(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("pipeline:\n  qa_threshold: 1.5\n")
    with pytest.raises(ConfigError, match=r"pipeline.qa_threshold"):
        load_config(path)


def test_inverted_bbox_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("grid:\n  bbox: {lat_min: 55, lat_max: 50, lon_min: 0, lon_max: 5}\n")
    with pytest.raises(ConfigError, match="lat_min"):
        load_config(path)


def test_tile_larger_than_domain_is_left_to_the_commands_that_tile() -> None:
    """A build of a domain smaller than the tile does not use the tile (issue 12); train, run
    and predict check it (tests/test_cli_errors.py)."""
    config = load_config(REPO / "config" / "test.yaml", {"data.tile_size": 32})
    assert config.data.tile_size == 32 and min(config.grid.to_grid().shape) == 16


def test_not_yaml_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)


def test_overrides_and_round_trip(tmp_path: Path) -> None:
    config = load_config(REPO / "config" / "test.yaml", {"training.warmup_epochs": 3})
    assert config.training.warmup_epochs == 3
    dump_config(config, tmp_path / "resolved.yaml")
    assert load_config(tmp_path / "resolved.yaml") == config


def test_defaults_validate() -> None:
    Config()
