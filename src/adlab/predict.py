"""`adlab-predict ckpt_path=CKPT data.source.path=FILE`: score a new file with a trained checkpoint.

Writes `predictions.parquet` (`format=csv` or `both` for CSV) into the run directory: the rows' identifier
(the source's id column when the file has it, else the row number, or the image path) and the model's
outputs, as its family's `prediction_columns` names them (`adlab.harness.predictions`). The file is read
like the training data, with the checkpoint's preprocessing (`adlab.harness.new_data`); categories the
train split never had are counted and reported.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
import lightning as L
from omegaconf import DictConfig

from adlab.cli import check_overrides, report_user_errors
from adlab.errors import AdlabError
from adlab.harness.build import build_model, build_trainer
from adlab.harness.checkpoints import StoredRun
from adlab.harness.configs import config_dir, register_resolvers
from adlab.harness.new_data import (
    describe_new_data,
    new_data_path,
    refuse_unread_overrides,
    setup_new_data,
    stored_job_config,
)
from adlab.harness.predictions import (
    FORMATS,
    predict_table,
    predictions_name,
    require_row_predictions,
    write_predictions,
)
from adlab.harness.report import maybe_print_config


def predict(cfg: DictConfig) -> list[Path]:
    """Score `cfg.data.source.path` with `cfg.ckpt_path`; returns the files written."""
    refuse_unread_overrides(cfg, "predict")
    if cfg.get("format") not in FORMATS:
        raise AdlabError(f"format={cfg.get('format')}: expected one of {', '.join(FORMATS)}")
    run = StoredRun.read(cfg.get("ckpt_path"))
    path = new_data_path(cfg)
    if path is None:
        raise AdlabError(
            f"data.source.path is not set; expected the file to score: adlab-predict ckpt_path={run.path} "
            "data.source.path=FILE"
        )
    job = stored_job_config(cfg, run)
    model = build_model(job, run.meta)
    require_row_predictions(model, run.path)  # before the file is read
    L.seed_everything(job.seed, workers=True, verbose=False)
    datamodule, new = setup_new_data(job, run, labelled=False)
    trainer = build_trainer(job, [], [])
    if trainer.world_size > 1:
        raise AdlabError(
            f"trainer.devices: adlab-predict scores the rows in one process, got {trainer.world_size}; "
            "expected trainer.devices=1"
        )
    table = predict_table(
        trainer, model, datamodule.loader("test", shuffle=False), datamodule.row_ids("test"), str(run.path)
    )
    written = write_predictions(table, cfg.paths.output_dir, cfg.format, predictions_name(model))
    lines = describe_new_data(new, path)
    print(f"adlab-predict: scored {lines[0]}")
    for line in lines[1:]:
        print(f"  {line}")
    print(f"  columns: {', '.join(map(str, table.columns))}")
    for file in written:
        print(f"adlab-predict: wrote {file}")
    return written


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="predict")
@report_user_errors
def _hydra_main(cfg: DictConfig) -> None:
    maybe_print_config(cfg)
    predict(cfg)


def main() -> None:
    """Console entry point (`adlab-predict`)."""
    register_resolvers()
    check_overrides("predict", sys.argv[1:])
    _hydra_main()


if __name__ == "__main__":
    main()
