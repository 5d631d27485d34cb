"""The marketing report of a propensity run: plots, decile table, calibration fitted on val, baselines."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from adlab.eval import evaluate
from adlab.families.propensity.crossfit import CrossFit
from adlab.families.propensity.report import score_split
from adlab.harness.build import build_datamodule
from adlab.harness.checkpoints import load_module
from adlab.metrics.calibration import fit_calibrator, log_loss, reliability_bins
from adlab.metrics.ranking import decile_table
from adlab.train import train
from tests.helpers import TINY, compose_config


def test_calibrators_fitted_on_scores_repair_overconfidence():
    generator = np.random.default_rng(0)
    true_logits = generator.normal(-2.0, 1.0, 20000)
    targets = generator.binomial(1, 1 / (1 + np.exp(-true_logits)))
    overconfident = 3.0 * true_logits  # a scorer that ranks right but is 3x too sure
    raw = log_loss(1 / (1 + np.exp(-overconfident)), targets)
    temperature = fit_calibrator("temperature", overconfident, targets)
    assert temperature.temperature == pytest.approx(3.0, rel=0.1)
    assert log_loss(temperature(overconfident), targets) < raw - 0.05
    isotonic = fit_calibrator("isotonic", overconfident, targets)
    calibrated = isotonic(np.sort(overconfident))
    assert np.all(np.diff(calibrated) >= 0)
    assert log_loss(isotonic(overconfident), targets) < raw - 0.05
    rows = reliability_bins(temperature(overconfident), targets)
    assert sum(row["count"] for row in rows) == len(targets)
    assert max(abs(row["predicted"] - row["observed"]) for row in rows) < 0.03


@dataclass
class CoilRun:
    """One run of the flagship preset (cross-fitted, 2 members) on the tiny CoIL-like data, logged to an
    offline W&B run whose media keys are recorded."""

    config: Any
    metrics: dict[str, Any]
    directory: Path
    wandb_media: list[str]

    def deciles(self) -> list[dict[str, str]]:
        with open(self.directory / "decile_table.csv", newline="") as stream:
            return list(csv.DictReader(stream))


@pytest.fixture(scope="module")
def coil_run(coil_data_dir, tmp_path_factory) -> CoilRun:
    from lightning.pytorch.loggers import WandbLogger

    directory = tmp_path_factory.mktemp("coil")
    overrides = [
        f"paths.data_dir={coil_data_dir}",
        f"paths.log_dir={directory}",
        *TINY,
        "experiment=propensity_coil",
        "model.members=2",
        "seed=2",
        "logger=wandb",
    ]
    cfg = compose_config("train", overrides, directory / "run")
    media: list[str] = []
    log_image, log_table = WandbLogger.log_image, WandbLogger.log_table

    def image(self, key, images, *args, **kwargs):
        media.append(key)
        return log_image(self, key, images, *args, **kwargs)

    def table(self, key, *args, **kwargs):
        media.append(key)
        return log_table(self, key, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(WandbLogger, "log_image", image)
        patch.setattr(WandbLogger, "log_table", table)
        metrics = train(cfg)
    return CoilRun(cfg, metrics, directory / "run", media)


@pytest.mark.slow
def test_the_run_writes_the_gains_and_calibration_plots(coil_run):
    for plot in ("gains_lift", "calibration"):
        assert (coil_run.directory / "plots" / f"{plot}.png").stat().st_size > 5000, plot


@pytest.mark.slow
def test_the_decile_table_covers_the_test_customers_and_its_top_two_deciles_are_top20_hits(coil_run):
    deciles = coil_run.deciles()
    assert [int(row["decile"]) for row in deciles] == list(range(1, 11))
    assert sum(int(row["customers"]) for row in deciles) == 300  # the tiny official test split
    assert float(deciles[-1]["cumulative_capture"]) == pytest.approx(1.0)
    written = json.loads((coil_run.directory / "metrics.json").read_text())
    assert int(deciles[0]["buyers"]) + int(deciles[1]["buyers"]) == written["test/top20_hits"]
    assert written["test/top20_hits"] == pytest.approx(coil_run.metrics["test/top20_hits"])


@pytest.mark.slow
def test_the_report_scores_the_test_rows_of_the_data_module(coil_run):
    # the report reads the batches the trainer serves; they are the data module's test split, in order
    datamodule = build_datamodule(coil_run.config, CrossFit(5))
    model = load_module(coil_run.directory / "checkpoints" / "best.ckpt")
    test = datamodule.tensors["test"]
    expected = decile_table(score_split(model, test), test["target"].numpy())
    for row, want in zip(coil_run.deciles(), expected, strict=True):
        assert float(row["buyers"]) == want["buyers"] and float(row["customers"]) == want["customers"]


@pytest.mark.slow
def test_a_calibrator_fitted_on_val_is_reported_on_test(coil_run):
    for key in ("test/ece", "test/ece_calibrated", "test/log_loss_calibrated"):
        assert 0 <= coil_run.metrics[key] <= 1, key


@pytest.mark.slow
def test_without_a_validation_first_nothing_is_calibrated(coil_run, tmp_path):
    checkpoint = coil_run.directory / "checkpoints" / "best.ckpt"
    overrides = [f"ckpt_path={checkpoint}", "validate=false", "extras.print_config=false"]
    evaluated = evaluate(compose_config("eval", overrides, tmp_path / "eval"))
    assert evaluated["test/top20_hits"] == coil_run.metrics["test/top20_hits"]
    assert "test/ece_calibrated" not in evaluated


@pytest.mark.slow
def test_both_baselines_report_val_and_test_metrics(coil_run):
    for baseline in ("logreg", "gbm"):
        for stage in ("val", "test"):
            for name in ("auroc", "top20_hits", "ece"):
                assert f"baseline/{baseline}/{stage}/{name}" in coil_run.metrics


@pytest.mark.slow
def test_the_offline_wandb_run_receives_the_plots_and_the_decile_table(coil_run):
    assert {"plots/gains_lift", "plots/calibration", "tables/decile_table"} <= set(coil_run.wandb_media)
