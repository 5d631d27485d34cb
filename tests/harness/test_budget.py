"""Time budgets: `trainer.max_time` stops fitting within the budget, inside the first epoch if need be,
the selected checkpoint is tested as usual, the stop is reported once; bring-your-own presets carry one."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from adlab.errors import AdlabError
from adlab.harness.callbacks import time_budget
from adlab.harness.configs import config_dir
from adlab.train import train
from tests.helpers import compose_config

BUDGET_SECONDS = 2.0


def test_budget_formats_and_mistakes():
    assert time_budget(None) is None and time_budget("") is None
    assert time_budget("00:00:10:00") == 600
    assert time_budget("01:02:03:04.5") == 86400 + 2 * 3600 + 3 * 60 + 4.5
    assert time_budget(90) == 90 and time_budget("2.5") == 2.5
    assert time_budget({"minutes": 2, "seconds": 3}) == 123
    for wrong in ("ten minutes", "00:10", True, [1]):
        with pytest.raises(AdlabError, match="trainer.max_time=.*DD:HH:MM:SS"):
            time_budget(wrong)
    with pytest.raises(AdlabError, match="positive"):
        time_budget("00:00:00:00")


def test_max_time_stops_inside_the_first_epoch_and_tests_the_selected_checkpoint(
    train_config, tmp_path, caplog
):
    """One epoch at batch size 1 takes longer than the budget; Lightning's timer would finish it (min_epochs)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cfg = train_config(
            [
                "trainer.max_epochs=1000",
                "data.batch_size=1",
                # steps slow enough that one epoch (480 steps) takes several times the budget
                "model.members=8",
                "model.hidden_sizes=[256,256]",
                f"trainer.max_time={BUDGET_SECONDS}",
                "baselines=none",
            ]
        )
        with caplog.at_level(logging.WARNING, logger="adlab.harness.callbacks"):
            metrics = train(cfg)
    finally:
        torch.set_num_threads(threads)
    stops = [r.getMessage() for r in caplog.records if "trainer.max_time" in r.getMessage()]
    assert len(stops) == 1 and "in epoch 1 at batch" in stops[0], stops
    # within 5% of the budget, plus the fit's own start-up (building the trainer, the loaders)
    assert metrics["time/fit_seconds"] <= BUDGET_SECONDS * 1.05 + 1.0
    assert {"val/auroc", "test/auroc", "test/top20_hits"} <= set(metrics)
    run = Path(cfg.paths.output_dir)
    assert (run / "checkpoints" / "best.ckpt").is_file() and (run / "predictions.parquet").is_file()


# the bring-your-own-data presets: every family's `_csv` preset, and the image-folder one
BRING_YOUR_OWN = sorted(
    [p.stem for p in (config_dir() / "experiment").glob("*_csv.yaml")] + ["imagery_folder"]
)


@pytest.mark.parametrize("experiment", BRING_YOUR_OWN)
def test_bring_your_own_presets_carry_a_budget(experiment, tmp_path):
    cfg = compose_config("train", [f"experiment={experiment}"], tmp_path)
    # fitting stops after 8 minutes: the rest of a 10-minute first run reads the data, tests and runs baselines
    assert time_budget(cfg.trainer.max_time) == 8 * 60
