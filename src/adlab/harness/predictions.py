"""Per-row predictions: what a trained model says about each row, as a table beside the run's metrics.

A family's module opts in with two methods (the harness names no family):

- `predict_step(batch, batch_index) -> dict[str, Tensor]`: Lightning's hook, returning per-row outputs
  `(batch, ...)` (scores, class probabilities, log-likelihoods ...; a `target` passed through when the
  batch has one);
- `prediction_columns(outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]`: those outputs for every
  row (batches concatenated in data order) turned into the table's columns, each `(rows,)`. Whole-file
  columns (a score's decile among the scored rows) are computed here.

The harness puts the rows' identifiers first (`MarketingDataModule.row_ids`) and writes
`predictions.parquet` (and/or `predictions.csv`): after every training run for the test split, after
`adlab-eval` for the rows it tested, and with `adlab-predict` for a new file. A module may also name the
table in its users' terms (`predictions_name = "ratings"`): the same table is then written as `<name>.csv`
beside it. A module that generates rather
than scores (it has `generate_outputs` but no `prediction_columns`) is pointed to adlab-generate.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pandas as pd
import torch

from adlab.errors import AdlabError
from adlab.harness.checkpoints import SAFE_LOAD
from adlab.harness.io import atomic_write_bytes

FORMATS = ("parquet", "csv", "both")
FILE_STEM = "predictions"


def predicts_rows(module: L.LightningModule) -> bool:
    """Whether a module scores rows (defines `prediction_columns`)."""
    return callable(getattr(module, "prediction_columns", None))


def predictions_name(module: L.LightningModule) -> str | None:
    """The module's own name for its predictions table (`predictions_name`), written as `<name>.csv` too."""
    name = getattr(module, "predictions_name", None)
    return str(name) if name else None


def require_row_predictions(module: L.LightningModule, ckpt_path: Any) -> None:
    """Raise one line when the module cannot score rows; a generator is pointed to adlab-generate."""
    if predicts_rows(module):
        return
    name = type(module).__name__
    if callable(getattr(module, "generate_outputs", None)):
        raise AdlabError(
            f"ckpt_path={ckpt_path}: a {name} generates new samples, it does not score rows; "
            f"use adlab-generate ckpt_path={ckpt_path}"
        )
    raise AdlabError(f"ckpt_path={ckpt_path}: a {name} does not score rows (it has no prediction_columns)")


def _concatenated(outputs: Sequence[Any]) -> dict[str, np.ndarray]:
    """`predict_step`'s dicts for every batch, concatenated along rows, as CPU numpy arrays."""
    if not outputs:
        return {}
    if not all(isinstance(batch, dict) for batch in outputs):
        raise TypeError("predict_step must return a dict of per-row tensors for prediction_columns")
    return {name: torch.cat([_numpy_ready(batch[name]) for batch in outputs]).numpy() for name in outputs[0]}


def _numpy_ready(tensor: torch.Tensor) -> torch.Tensor:
    tensor = tensor.detach().cpu()
    return tensor.float() if tensor.dtype in (torch.float16, torch.bfloat16) else tensor


def predict_table(
    trainer: L.Trainer,
    model: L.LightningModule,
    loader: Any,
    ids: tuple[str, np.ndarray],
    ckpt_path: str | None = None,
) -> pd.DataFrame:
    """Score every row `loader` serves (in order, unshuffled) and return the predictions table.

    Args:
        trainer: a single-process trainer (`trainer.predict` runs the module's hooks: device transfer,
            weight averages, `predict_step`).
        model: a module that `predicts_rows`.
        loader: the rows, in the order of `ids`.
        ids: the identifier column's name and its values `(rows,)`.
        ckpt_path: the checkpoint to load first (safely); None scores the model as it is.

    Returns:
        The identifier column, then the module's `prediction_columns`. A trainer limited to a few batches
        (`fast_dev_run`, `limit_predict_batches`) scores the first rows only.
    """
    outputs = trainer.predict(
        model, dataloaders=loader, ckpt_path=ckpt_path, return_predictions=True, **SAFE_LOAD
    )
    columns = model.prediction_columns(_concatenated(outputs or []))
    name, values = ids
    rows = {len(column) for column in columns.values()}
    if len(rows) > 1:
        raise ValueError(f"prediction_columns returned columns of different lengths {sorted(rows)}")
    scored = rows.pop() if rows else 0
    if scored != len(values):
        limited = trainer.fast_dev_run or trainer.limit_predict_batches != 1.0
        if not limited or scored > len(values):
            raise ValueError(f"{scored} rows scored for {len(values)} identifiers")
        values = values[:scored]
    table = pd.DataFrame({name: values})
    for column, value in columns.items():
        table[column if column != name else f"{column}_predicted"] = value
    return table


def write_predictions(
    table: pd.DataFrame, directory: str | Path, format: str = "parquet", named: str | None = None
) -> list[Path]:
    """Write `predictions.parquet` and/or `predictions.csv` into `directory` (atomically), and the same
    table as `<named>.csv` when the module names it (`predictions_name`); their paths."""
    if format not in FORMATS:
        raise AdlabError(f"format={format}: expected one of {FORMATS}")
    directory = Path(directory)
    written = []
    if format in ("parquet", "both"):
        written.append(atomic_write_bytes(directory / f"{FILE_STEM}.parquet", table.to_parquet(index=False)))
    stems = ([FILE_STEM] if format in ("csv", "both") else []) + ([named] if named else [])
    if stems:
        data = table.to_csv(index=False).encode("utf-8")
        written += [atomic_write_bytes(directory / f"{stem}.csv", data) for stem in stems]
    return written


def write_split_predictions(
    trainer: L.Trainer,
    model: L.LightningModule,
    datamodule: Any,
    directory: str | Path,
    stage: str = "test",
    ckpt_path: str | None = None,
    format: str = "parquet",
) -> list[Path]:
    """Score one split of a set-up data module and write its predictions table into `directory`.

    Nothing is written (an empty list is returned) for a module that does not score rows, or under
    multi-process training, where each process serves a shard of the rows (`adlab-predict` scores them
    in one process afterwards).
    """
    if not predicts_rows(model) or trainer.world_size > 1:
        return []
    loader = datamodule.loader(stage, shuffle=False)
    table = predict_table(trainer, model, loader, datamodule.row_ids(stage), ckpt_path)
    if not trainer.is_global_zero:
        return []
    return write_predictions(table, directory, format, predictions_name(model))
