"""`adlab-eval ckpt_path=...`: test a checkpoint and write metrics.json like adlab-train does."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import hydra
import lightning as L
from omegaconf import DictConfig, OmegaConf, open_dict

from adlab.cli import check_overrides, report_user_errors
from adlab.harness.build import build_datamodule, build_loggers, build_model, build_trainer, finish_wandb
from adlab.harness.checkpoints import SAFE_LOAD, StoredRun
from adlab.harness.configs import config_dir, register_resolvers
from adlab.harness.fit import build_fit
from adlab.harness.io import write_metrics
from adlab.harness.report import maybe_print_config, print_metrics_table


def stored_job_config(cfg: DictConfig, run: StoredRun) -> DictConfig:
    """The training job's data/model/fit/seed from the checkpoint, with this job's trainer, logger and paths."""
    stored = run.job_config()
    job = OmegaConf.create({key: stored[key] for key in ("data", "model", "fit", "seed") if key in stored})
    job = OmegaConf.merge(
        job, {k: cfg[k] for k in ("trainer", "paths", "logger", "tags", "task_name", "experiment_name")}
    )
    with open_dict(job):
        job.paths.output_dir = cfg.paths.output_dir
        job.callbacks = {}
    return job


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Test `cfg.ckpt_path` on the split it was trained with; return and write its metrics."""
    # read without running code from the file; Lightning then reloads it with weights_only too (SAFE_LOAD)
    job = stored_job_config(cfg, StoredRun.read(cfg.get("ckpt_path")))
    L.seed_everything(job.seed, workers=True, verbose=False)
    # the fit strategy chooses the rows (a cross-fitted ensemble is validated on its pool)
    datamodule = build_datamodule(job, build_fit(job, check=False))
    model = build_model(job, datamodule.meta)
    loggers = build_loggers(job, job_type="eval")
    try:
        trainer = build_trainer(job, [], loggers)
        for logger in loggers:
            logger.log_hyperparams(OmegaConf.to_container(job, resolve=True))
        metrics: dict[str, Any] = {}
        if cfg.get("validate", True):
            for result in trainer.validate(
                model, datamodule=datamodule, ckpt_path=cfg.ckpt_path, verbose=False, **SAFE_LOAD
            ):
                metrics.update(result)
        for result in trainer.test(
            model, datamodule=datamodule, ckpt_path=cfg.ckpt_path, verbose=False, **SAFE_LOAD
        ):
            metrics.update(result)
        if trainer.is_global_zero:
            write_metrics(Path(cfg.paths.output_dir) / "metrics.json", metrics)
            print_metrics_table(metrics)
        return metrics
    finally:
        finish_wandb()


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="eval")
@report_user_errors
def _hydra_main(cfg: DictConfig) -> None:
    maybe_print_config(cfg)
    evaluate(cfg)


def main() -> None:
    """Console entry point (`adlab-eval`)."""
    register_resolvers()
    check_overrides("eval", sys.argv[1:])
    _hydra_main()


if __name__ == "__main__":
    main()
