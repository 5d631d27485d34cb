"""`adlab-train`: fit on train, select on val, test the selected checkpoint once, write metrics.json."""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path
from typing import Any

import hydra
import lightning as L
from omegaconf import DictConfig

from adlab.cli import check_overrides, report_user_errors
from adlab.crossfit import cross_fitting, fit_folds, save_ensemble
from adlab.errors import AdlabError
from adlab.utils.build import (
    build_callbacks,
    build_datamodule,
    build_loggers,
    build_model,
    build_trainer,
    checkpoint_callback,
    finish_wandb,
    git_commit,
    resolved_config,
    save_wandb_run_id,
)
from adlab.utils.configs import config_dir, register_resolvers
from adlab.utils.io import write_metrics
from adlab.utils.ledger import append_to_ledger
from adlab.utils.report import print_metrics_table, run_baselines


def _selected_checkpoint(trainer: L.Trainer, output_dir: Path) -> str:
    """The best checkpoint by the monitored val metric, copied into this run's `checkpoints/best.ckpt`."""
    callback = checkpoint_callback(trainer)
    best = callback.best_model_path if callback is not None else ""
    if not best:
        best = callback.last_model_path if callback is not None else ""
    target = output_dir / "checkpoints" / "best.ckpt"
    if best and Path(best).resolve() != target.resolve() and trainer.is_global_zero:
        # a resumed run may keep the best checkpoint of the run it resumed from
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(best, target)
    return str(target) if target.exists() else best


def train(cfg: DictConfig) -> dict[str, Any]:
    """Run one training job and return its metrics (the content of metrics.json).

    Keys: `val/<metric>` at the selected checkpoint, `test/<metric>` of that checkpoint,
    `baseline/<name>/<val|test>/<metric>` for every configured baseline, and `time/fit_seconds`.
    """
    crossfit = cross_fitting(cfg)
    if crossfit and (cfg.get("ckpt_path") or not cfg.get("train", True)):
        raise AdlabError(
            f"data.folds={cfg.data.folds}: a cross-fitted run trains its K networks from scratch; it cannot "
            "resume from or test a ckpt_path (test a finished one with adlab-eval ckpt_path=...)"
        )
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    output_dir = Path(cfg.paths.output_dir)
    datamodule = build_datamodule(cfg)
    model = build_model(cfg, datamodule.meta)
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
        fold_datamodules = None
        if crossfit:
            # K fold networks merged into one ensemble; its val metrics are their out-of-fold scores
            model, fold_datamodules, merged = fit_folds(cfg, datamodule, resolved)
            trainer = build_trainer(cfg, build_callbacks(cfg, merged), loggers)
        elif cfg.get("train", True):
            trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
        metrics["time/fit_seconds"] = time.perf_counter() - started
        if trainer.interrupted:
            return metrics
        if trainer.fast_dev_run or crossfit:
            checkpoint = None  # the model in memory (a cross-fitted ensemble is saved after validation)
        elif cfg.get("train", True):
            checkpoint = _selected_checkpoint(trainer, output_dir)
        else:
            checkpoint = cfg.get("ckpt_path")
        for result in trainer.validate(model, datamodule=datamodule, ckpt_path=checkpoint, verbose=False):
            metrics.update(result)
        if crossfit and trainer.is_global_zero:
            save_ensemble(trainer, output_dir / "checkpoints")
        if cfg.get("test", True):
            for result in trainer.test(model, datamodule=datamodule, ckpt_path=checkpoint, verbose=False):
                metrics.update(result)
        if trainer.is_global_zero:
            metrics.update(run_baselines(cfg, datamodule, fold_datamodules))
            write_metrics(output_dir / "metrics.json", metrics)
            append_to_ledger(cfg, metrics)
            print_metrics_table(metrics)
        return metrics
    finally:
        finish_wandb()


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="train")
@report_user_errors
def _hydra_main(cfg: DictConfig) -> float | None:
    from adlab.utils.report import maybe_print_config

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
