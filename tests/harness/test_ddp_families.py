"""`trainer=ddp_cpu` (two processes) through the real CLI for the image, copy and creative families.

The propensity family's DDP run is in tests/test_training_modes.py.
"""

from __future__ import annotations

import json

import pytest

from adlab.data.synthetic import make_image_folder, make_titles
from tests.families.creatives.test_creatives import QUICK_EVAL as GAN_QUICK_EVAL
from tests.families.creatives.test_creatives import SMALL as GAN_SMALL
from tests.families.creatives.test_creatives import evaluator_ckpt, fashion_dir  # noqa: F401  (fixtures)
from tests.helpers import run_module

DDP = ["trainer=ddp_cpu", "trainer.max_epochs=1", "extras.print_config=false", "callbacks.progress_bar=null"]


def ddp_train(run_dir, overrides: list[str]) -> dict:
    """Run adlab-train with two CPU processes and return the metrics.json rank 0 wrote."""
    result = run_module("adlab.train", *overrides, *DDP, f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "world_size: 2" in result.stderr + result.stdout or "MEMBER: 2/2" in result.stderr + result.stdout
    return json.loads((run_dir / "metrics.json").read_text())


def test_imagery_ddp_cpu(tmp_path):
    folder = make_image_folder(tmp_path / "products")
    metrics = ddp_train(
        tmp_path / "run",
        ["experiment=imagery_folder", f"data.source.path={folder}", "data.source.image_size=16"],
    )
    assert 0 <= metrics["test/accuracy"] <= 1


def test_copywriting_ddp_cpu(tmp_path):
    titles = make_titles(tmp_path / "titles.csv")
    metrics = ddp_train(
        tmp_path / "run",
        [
            "experiment=copy_csv",
            f"data.source.path={titles}",
            "data.source.text=Title",
            "data.source.conditions=[Department Name,Rating]",
            "model.net.hidden_size=32",
            "model.net.embedding_dim=16",
            "model.samples_per_condition=2",
            "baselines.ngram.orders=[2,3]",
        ],
    )
    assert metrics["test/bpc"] > 0 and metrics["test/length_pass_rate"] == pytest.approx(1.0)


def test_creatives_ddp_cpu(tmp_path, fashion_dir, evaluator_ckpt):  # noqa: F811
    metrics = ddp_train(
        tmp_path / "run",
        [
            "experiment=creative_sngan",
            f"paths.data_dir={fashion_dir}",
            f"model.evaluator_ckpt={evaluator_ckpt}",
            "+trainer.limit_train_batches=2",
            # each optimizer step uses one network only: DDP must not wait for the other's gradients
            "trainer.strategy=ddp_find_unused_parameters_true",
            *GAN_SMALL,
            *GAN_QUICK_EVAL,
        ],
    )
    assert metrics["test/fid"] >= 0 and 0 <= metrics["test/cas"] <= 1
