"""The train/val/test harness end to end on tiny CoIL-shaped data."""

from __future__ import annotations

import json

import pytest
import torch

from adlab.eval import evaluate
from adlab.train import train


def test_train_writes_metrics_checkpoints_and_splits(train_config, tmp_path):
    cfg = train_config(["experiment=propensity_coil", "fit=plain", "trainer.max_epochs=3", "seed=3"])
    metrics = train(cfg)
    run = tmp_path / "run"
    written = json.loads((run / "metrics.json").read_text())
    assert (run / "checkpoints" / "best.ckpt").is_file()
    assert (run / "checkpoints" / "last.ckpt").is_file()
    for key in ("val/auroc", "test/auroc", "test/top20_hits", "test/top20_capture", "test/ece", "test/brier"):
        assert key in written, key
    assert "baseline/logreg/test/top20_hits" in written
    assert written["test/top20_hits"] == pytest.approx(metrics["test/top20_hits"])
    # official split: 300 test customers -> top 60
    assert 0 <= written["test/top20_hits"] <= 60
    splits = torch.from_numpy(__import__("numpy").load(run / "splits.npz")["test"])
    assert len(splits) == 300


def test_eval_reproduces_test_metrics(train_config, tmp_path):
    cfg = train_config(["experiment=propensity_coil", "fit=plain", "trainer.max_epochs=2"])
    trained = train(cfg)
    best = tmp_path / "run" / "checkpoints" / "best.ckpt"
    from tests.helpers import compose_config

    eval_cfg = compose_config("eval", [f"ckpt_path={best}", "extras.print_config=false"], tmp_path / "eval")
    evaluated = evaluate(eval_cfg)
    for key, value in trained.items():
        if key.startswith("test/"):
            assert evaluated[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["test/auroc"] == pytest.approx(
        trained["test/auroc"]
    )
