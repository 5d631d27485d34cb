"""`adlab-eval ckpt_path=... [data.source.path=NEW]`: test a checkpoint (on its test split, or every row of
a new labelled file) and write metrics.json like adlab-train does."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import hydra
import lightning as L
from omegaconf import DictConfig, OmegaConf

from adlab.cli import check_overrides, report_user_errors
from adlab.harness.build import build_datamodule, build_loggers, build_model, build_trainer, finish_wandb
from adlab.harness.checkpoints import SAFE_LOAD, StoredRun
from adlab.harness.configs import config_dir, register_resolvers
from adlab.harness.fit import build_fit
from adlab.harness.io import write_metrics
from adlab.harness.new_data import (
    describe_new_data,
    new_data_path,
    refuse_unread_overrides,
    setup_new_data,
    stored_job_config,
)
from adlab.harness.predictions import write_split_predictions
from adlab.harness.report import maybe_print_config, print_metrics_table, print_outputs


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Test `cfg.ckpt_path` and return (and write) its metrics.

    On the split it was trained with (validated too, unless `validate=false`), or with
    `data.source.path=FILE` on every row of a new labelled file, built with the checkpoint's
    preprocessing (`adlab.harness.new_data`). Writes `metrics.json` and the tested rows' `predictions.parquet`.
    """
    refuse_unread_overrides(cfg, "eval")
    # read without running code from the file; Lightning then reloads it with weights_only too (SAFE_LOAD)
    run = StoredRun.read(cfg.get("ckpt_path"))
    job = stored_job_config(cfg, run)
    L.seed_everything(job.seed, workers=True, verbose=False)
    path = new_data_path(cfg)
    if path is None:
        # the fit strategy chooses the rows (a cross-fitted ensemble is validated on its pool)
        datamodule, new = build_datamodule(job, build_fit(job, check=False)), None
    else:
        datamodule, new = setup_new_data(job, run, labelled=True)
    model = build_model(job, datamodule.meta)
    loggers = build_loggers(job, job_type="eval")
    output_dir = Path(cfg.paths.output_dir)
    try:
        trainer = build_trainer(job, [], loggers)
        for logger in loggers:
            logger.log_hyperparams(OmegaConf.to_container(job, resolve=True))
        metrics: dict[str, Any] = {}
        if cfg.get("validate", True) and new is None:
            for result in trainer.validate(
                model, datamodule=datamodule, ckpt_path=cfg.ckpt_path, verbose=False, **SAFE_LOAD
            ):
                metrics.update(result)
        for result in trainer.test(
            model, datamodule=datamodule, ckpt_path=cfg.ckpt_path, verbose=False, **SAFE_LOAD
        ):
            metrics.update(result)
        write_split_predictions(trainer, model, datamodule, output_dir, "test", cfg.ckpt_path)
        if trainer.is_global_zero:
            write_metrics(output_dir / "metrics.json", metrics)
            print_metrics_table(metrics)
            if new is not None:
                lines = describe_new_data(new, path)
                print(f"adlab-eval: tested every row of a new file (no validation): {lines[0]}")
                for line in lines[1:]:
                    print(f"  {line}")
            print_outputs(output_dir)  # metrics.json, predictions, log
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
