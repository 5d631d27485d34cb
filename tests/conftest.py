"""Shared test fixtures: offline environment, tiny data with real schemas, configs composed like the CLI."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.core.global_hydra import GlobalHydra  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from omegaconf import DictConfig, open_dict  # noqa: E402

from adlab.utils.configs import config_dir, register_resolvers  # noqa: E402

COIL_NUMERIC = [f"NUM{i:02d}" for i in range(83)]


def make_coil_like(folder: Path, train_rows: int = 600, test_rows: int = 300, seed: int = 0) -> Path:
    """A CoIL-2000-shaped table (2 nominal columns, 83 ordinal codes, CARAVAN 0/1, official split)."""
    rng = np.random.default_rng(seed)
    rows = train_rows + test_rows
    subtype = rng.choice([f"subtype {i}" for i in range(12)], rows)
    maintype = rng.choice([f"type {i}" for i in range(5)], rows)
    codes = rng.integers(0, 10, size=(rows, 83)).astype(float)
    logit = -2.6 + 0.35 * (codes[:, 0] - 4.5) + 0.25 * (codes[:, 1] - 4.5) + (subtype == "subtype 3") * 1.0
    target = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int)
    frame = pd.DataFrame(codes, columns=COIL_NUMERIC)
    frame.insert(0, "customer_id", np.arange(1, rows + 1))
    frame.insert(1, "split", np.where(np.arange(rows) < train_rows, "train", "test"))
    frame.insert(2, "MOSTYPE", subtype)
    frame.insert(3, "MOSHOOFD", maintype)
    frame["CARAVAN"] = target
    path = folder / "coil2000" / "coil2000.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(path, index=False)
    return path


@pytest.fixture(scope="session")
def coil_data_dir(tmp_path_factory) -> Path:
    """A data dir holding a tiny `coil2000/coil2000.parquet` with the real schema."""
    folder = tmp_path_factory.mktemp("data")
    make_coil_like(folder)
    return folder


def compose_config(config_name: str, overrides: list[str], output_dir: Path) -> DictConfig:
    """Compose a config as the CLI would, with Hydra's runtime fields set so interpolations resolve."""
    register_resolvers()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose(config_name=config_name, overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(output_dir)
        cfg.hydra.runtime.cwd = os.getcwd()
        cfg.hydra.job.num = 0
    HydraConfig().set_config(cfg)
    GlobalHydra.instance().clear()
    return cfg


TINY = ["trainer.max_epochs=2", "extras.print_config=false", "callbacks.progress_bar=null"]


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
