"""`adlab-train`: fit on train, select on val, test the selected checkpoint once, write metrics.json."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import hydra
import lightning as L
from omegaconf import DictConfig

from adlab.cli import check_overrides, report_user_errors
from adlab.harness.build import (
    build_callbacks,
    build_datamodule,
    build_loggers,
    build_model,
    build_trainer,
    finish_wandb,
    git_commit,
    resolved_config,
    save_wandb_run_id,
)
from adlab.harness.checkpoints import SAFE_LOAD, check_resumable, checked_ckpt_path
from adlab.harness.configs import config_dir, register_resolvers
from adlab.harness.fit import build_fit
from adlab.harness.io import write_metrics
from adlab.harness.ledger import append_to_ledger
from adlab.harness.predictions import write_split_predictions
from adlab.harness.report import log_metrics_to_loggers, print_metrics_table, print_outputs, run_baselines


def train(cfg: DictConfig) -> dict[str, Any]:
    """Run one training job and return its metrics (the content of metrics.json).

    Keys: `val/<metric>` at the selected checkpoint, `test/<metric>` of that checkpoint,
    `baseline/<name>/<val|test>/<metric>` for every configured baseline, and `time/fit_seconds`.
    How the model is fitted is the `fit` group's strategy (`adlab.harness.fit`).
    """
    strategy = build_fit(cfg)
    checked_ckpt_path(cfg.get("ckpt_path"))  # a user's file is read safely before anything is written
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    output_dir = Path(cfg.paths.output_dir)
    datamodule = build_datamodule(cfg, strategy)
    model = build_model(cfg, datamodule.meta)
    check_resumable(cfg.get("ckpt_path"), cfg, model, datamodule.meta)  # this job's family, data, shapes
    resolved = resolved_config(cfg)
    resolved["git_commit"] = git_commit()
    loggers = build_loggers(cfg, job_type="train")
    try:
        trainer = build_trainer(cfg, build_callbacks(cfg, resolved), loggers)
        if trainer.is_global_zero:
            datamodule.save_splits(output_dir)
            save_wandb_run_id(loggers, output_dir / "checkpoints")
        for logger in loggers:
            logger.log_hyperparams(resolved)
        metrics: dict[str, Any] = {}
        started = time.perf_counter()
        fitted = strategy.fit(cfg, model, datamodule, trainer, loggers, resolved)
        metrics["time/fit_seconds"] = time.perf_counter() - started
        model, trainer = fitted.model, fitted.trainer
        if trainer.interrupted:
            return metrics
        for result in trainer.validate(
            model, datamodule=datamodule, ckpt_path=fitted.checkpoint, verbose=False, **SAFE_LOAD
        ):
            metrics.update(result)
        if cfg.get("test", True):
            for result in trainer.test(
                model, datamodule=datamodule, ckpt_path=fitted.checkpoint, verbose=False, **SAFE_LOAD
            ):
                metrics.update(result)
            # the test rows' per-row predictions (`predictions.parquet`), of the checkpoint just tested
            write_split_predictions(trainer, model, datamodule, output_dir, "test", fitted.checkpoint)
        if trainer.is_global_zero:
            baselines = run_baselines(cfg, datamodule, strategy)
            log_metrics_to_loggers(loggers, baselines)  # W&B, MLflow ... hold them beside the model's
            metrics.update(baselines)
            write_metrics(output_dir / "metrics.json", metrics)
            ledger = append_to_ledger(cfg, metrics)
            print_metrics_table(metrics)
            print_outputs(output_dir, {"ledger": ledger})
        return metrics
    finally:
        finish_wandb()


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="train")
@report_user_errors
def _hydra_main(cfg: DictConfig) -> float | None:
    from adlab.harness.report import maybe_print_config

    maybe_print_config(cfg)
    metrics = train(cfg)
    metric = cfg.get("optimized_metric")
    return float(metrics[metric]) if metric and metric in metrics else None


def main() -> None:
    """Console entry point (`adlab-train`)."""
    register_resolvers()
    check_overrides("train", sys.argv[1:])
    _hydra_main()


if __name__ == "__main__":
    main()
