"""Shared test fixtures: offline environment, tiny data with real schemas, configs composed like the CLI."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from adlab.data.synthetic import write_coil_like  # noqa: E402
from tests.helpers import TINY, compose_config  # noqa: E402


@pytest.fixture(scope="session")
def coil_data_dir(tmp_path_factory) -> Path:
    """A data dir holding a tiny `coil2000/coil2000.parquet` with the real schema."""
    folder = tmp_path_factory.mktemp("data")
    write_coil_like(folder)
    return folder


@pytest.fixture
def train_config(tmp_path, coil_data_dir):
    """`train_config(overrides) -> cfg`: the train config on the tiny CoIL-like data, writing under tmp_path."""

    def make(overrides: list[str] | None = None, output_dir: Path | None = None) -> DictConfig:
        return compose_config(
            "train",
            [f"paths.data_dir={coil_data_dir}", f"paths.log_dir={tmp_path}", *TINY, *(overrides or [])],
            output_dir or tmp_path / "run",
        )

    return make


@pytest.fixture
def wandb_media(monkeypatch):
    """Record the keys of every image and table handed to W&B (the offline run still receives them)."""
    from lightning.pytorch.loggers import WandbLogger

    keys: list[str] = []
    log_image, log_table = WandbLogger.log_image, WandbLogger.log_table

    def image(self, key, images, *args, **kwargs):
        keys.append(key)
        return log_image(self, key, images, *args, **kwargs)

    def table(self, key, *args, **kwargs):
        keys.append(key)
        return log_table(self, key, *args, **kwargs)

    monkeypatch.setattr(WandbLogger, "log_image", image)
    monkeypatch.setattr(WandbLogger, "log_table", table)
    return keys
