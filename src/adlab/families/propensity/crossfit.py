"""Cross-fitting (`fit=crossfit fit.folds=K`): K networks, each trained with one fold of the pool as its
val split, merged into one ensemble that is tested once.

The pool is the train and val rows of the configured split; its preprocessing is fitted once on the whole
pool (it reads no labels), so every fold's network sees the same encoding. Every pool row then serves as
val exactly once, so the val metrics are out-of-fold scores of the whole pool (five times the rows of a 20%
val split, which makes model selection less noisy), and the test score averages K networks that together
saw every training row (which cuts the variance between seeds). See `merge_cross_fitted`.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.loggers import CSVLogger, Logger
from omegaconf import DictConfig, open_dict

from adlab.data.datamodule import MarketingDataModule
from adlab.data.sources.base import BuiltData
from adlab.data.splits import fold_assignment
from adlab.errors import AdlabError
from adlab.families.propensity.module import PropensityModule, merge_cross_fitted
from adlab.families.propensity.report import score_split
from adlab.harness.build import (
    build_callbacks,
    build_model,
    build_trainer,
    checkpoint_callback,
    prepare_model,
)
from adlab.harness.callbacks import time_budget
from adlab.harness.checkpoints import load_checkpoint
from adlab.harness.console import label_progress
from adlab.harness.fit import Fitted, PlainFit

log = logging.getLogger(__name__)
TABULAR_TENSORS = {"categorical", "numeric", "target"}


@dataclass
class Fold:
    """One fold of a pool: its data module (the fold's rows as val, the other folds' as train) and which
    pool rows it holds out, `held_out (pool_rows,) bool`."""

    data: MarketingDataModule
    held_out: np.ndarray


class CrossFit(PlainFit):
    """The propensity family's fit strategy: cross-fitting (see the module docstring).

    The job's data module serves the pool as both train and val, in row order: the merged ensemble's val
    metrics are its stored out-of-fold scores of those rows. Fold networks and their checkpoints are
    written under `<output_dir>/folds/<k>/`; the ensemble is `checkpoints/best.ckpt` and `last.ckpt`.

    Args:
        folds: K, the number of folds (stratified on the target, seeded with the run's seed).
        fold: train only this fold's network (its rows are val, the other folds' are train), as a plain
            fit; what `adlab-eval` rebuilds for a fold network's checkpoint. None: all K, merged.
        max_pool_rows: a pool of more rows is fitted plainly (one network on the train split, selected on
            val), since K fits of a large table cost K times the time a plain fit already takes. None: no
            limit.
    """

    def __init__(self, folds: int = 5, fold: int | None = None, max_pool_rows: int | None = None):
        if folds < 2:
            raise AdlabError(f"fit.folds={folds}: expected at least 2 folds")
        if fold is not None and not 0 <= fold < folds:
            raise AdlabError(f"fit.fold={fold}: expected null or 0..fit.folds-1 (fit.folds={folds})")
        if max_pool_rows is not None and max_pool_rows < 1:
            raise AdlabError(f"fit.max_pool_rows={max_pool_rows}: expected null or a positive number of rows")
        self.folds = int(folds)
        self.fold = fold
        self.max_pool_rows = max_pool_rows
        # set by setup_data: the pool is over max_pool_rows, so this job is a plain fit
        self.plain = False

    def check(self, cfg: DictConfig) -> None:
        if self.fold is None and (cfg.get("ckpt_path") or not cfg.get("train", True)):
            raise AdlabError(
                f"fit.folds={self.folds}: a cross-fitted run trains its K networks from scratch; it cannot "
                "resume from or test a ckpt_path (test a finished one with adlab-eval ckpt_path=...)"
            )

    def setup_data(self, datamodule: Any) -> None:
        """Set up the pool (train and val rows of the configured split, sorted) as train and val, with the
        test split as configured; with `fold`, that fold's data cut from it."""
        if not isinstance(datamodule, MarketingDataModule):
            raise AdlabError(
                f"fit=crossfit: expected adlab's MarketingDataModule, got {type(datamodule).__name__}"
            )
        raw = datamodule.source.load()
        if getattr(raw, "groups", None) is not None:
            raise self._not_tabular(datamodule)
        splits = datamodule.split_rows(raw)
        pool = np.sort(np.concatenate([splits["train"], splits["val"]]))
        self.plain = self.fold is None and self.max_pool_rows is not None and len(pool) > self.max_pool_rows
        if self.plain:
            log.info(
                "fit=crossfit: %d train and val rows, over fit.max_pool_rows=%d: one network on the train "
                "split, selected on val (a plain fit)",
                len(pool),
                self.max_pool_rows,
            )
            datamodule.setup_rows(raw, splits)
            return
        datamodule.setup_rows(raw, {"train": pool, "val": pool, "test": splits["test"]})
        tensors = datamodule.tensors["train"]
        if not (isinstance(tensors, dict) and TABULAR_TENSORS <= set(tensors)) or len(
            tensors["target"]
        ) != len(pool):
            raise self._not_tabular(datamodule)
        if self.fold is not None:
            splits, built = _cut_fold(datamodule, self.fold_of(datamodule) == self.fold)
            datamodule.setup_rows(raw, splits, built)

    def _not_tabular(self, datamodule: MarketingDataModule) -> AdlabError:
        return AdlabError(
            f"fit=crossfit: expected a tabular source with one row per customer "
            f"({type(datamodule.source).__name__} is not); set fit=plain"
        )

    def fold_of(self, pool: MarketingDataModule) -> np.ndarray:
        """Each pool row's fold `(pool_rows,)`, stratified on the target and seeded with the run's seed."""
        return fold_assignment(np.asarray(pool.raw.labels)[pool.splits["train"]], self.folds, pool.seed)

    def cut(self, pool: MarketingDataModule) -> list[Fold]:
        """The K folds of a set-up pool module, cut from its tensors (no second load of the source, no refit
        of its preprocessing: the pool's is shared)."""
        fold_of = self.fold_of(pool)
        folds = []
        for fold in range(self.folds):
            held_out = fold_of == fold
            data = pool.like()
            data.setup_rows(pool.raw, *_cut_fold(pool, held_out))
            folds.append(Fold(data, held_out))
        return folds

    def fit(
        self,
        cfg: DictConfig,
        model: L.LightningModule,
        datamodule: Any,
        trainer: L.Trainer,
        loggers: list[Logger],
        resolved: dict[str, Any],
    ) -> Fitted:
        """Train one network per fold, merge them, and return the ensemble with a trainer whose
        checkpoints store it (written after its validation)."""
        if self.fold is not None or self.plain:
            return super().fit(cfg, model, datamodule, trainer, loggers, resolved)
        if not isinstance(model, PropensityModule):
            raise AdlabError(
                f"fit=crossfit: cross-fitting expects a propensity model, not {type(model).__name__}; "
                "set fit=plain"
            )
        if trainer.world_size > 1:
            raise AdlabError(
                f"trainer.devices: cross-fitting (fit.folds={self.folds}) runs on one device; "
                "expected trainer.devices=1"
            )
        folds = self.cut(datamodule)
        out_of_fold = torch.zeros(len(folds[0].held_out))
        modules = []
        # a time budget (trainer.max_time) is for the whole cross-fit: each fold gets its share of what is left
        budget, started = time_budget(cfg.trainer.get("max_time")), time.monotonic()
        for fold, part in enumerate(folds):
            fold_cfg = self.fold_config(cfg, fold)
            if budget is not None:
                with open_dict(fold_cfg):
                    left = max(budget - (time.monotonic() - started), 1.0)
                    fold_cfg.trainer.max_time = left / (self.folds - fold)
            network = build_model(fold_cfg, part.data.meta)
            fold_resolved = {**resolved, "fit": {**resolved.get("fit", {}), "fold": fold}}
            fold_dir = Path(fold_cfg.paths.output_dir)
            fold_trainer = build_trainer(
                fold_cfg,
                build_callbacks(fold_cfg, fold_resolved),
                [CSVLogger(str(fold_dir), name="csv", version="")],
            )
            label_progress(fold_trainer, f"fold {fold + 1}/{self.folds}")
            prepare_model(network, part.data)
            fold_trainer.fit(network, datamodule=part.data)
            if fold_trainer.interrupted:
                raise KeyboardInterrupt
            callback = checkpoint_callback(fold_trainer)
            best = callback.best_model_path if callback is not None else ""
            if best:
                network.load_state_dict(load_checkpoint(best)["state_dict"])
            out_of_fold[torch.from_numpy(part.held_out)] = torch.from_numpy(
                score_split(network, part.data.tensors["val"])
            )
            if callback is not None:
                log.info(
                    "fold %d/%d: best %s = %s",
                    fold + 1,
                    self.folds,
                    cfg.get("monitor"),
                    None if callback.best_model_score is None else round(float(callback.best_model_score), 4),
                )
            modules.append(network.cpu())
        # the pool module serves the pool rows in order as val: the targets of the out-of-fold scores
        merged = merge_cross_fitted(modules, out_of_fold, datamodule.tensors["val"]["target"].float())
        merged_resolved = copy.deepcopy(resolved)
        merged_resolved.setdefault("model", {}).update(
            members=merged.hparams.members,
            select_numeric=merged.hparams.select_numeric,
            out_of_fold_rows=merged.hparams.out_of_fold_rows,
        )
        checkpoints = Path(cfg.paths.output_dir) / "checkpoints"
        callbacks = [*build_callbacks(cfg, merged_resolved), SaveEnsemble(checkpoints)]
        return Fitted(merged, build_trainer(cfg, callbacks, loggers), None)

    def fold_config(self, cfg: DictConfig, fold: int) -> DictConfig:
        """The job config of one fold: `fit.fold=fold`, outputs under `<output_dir>/folds/<fold>`."""
        fold_cfg = copy.deepcopy(cfg)
        with open_dict(fold_cfg):
            fold_cfg.fit.fold = fold
            fold_cfg.paths.output_dir = str(Path(cfg.paths.output_dir) / "folds" / str(fold))
        return fold_cfg

    def evaluate_baseline(self, baseline: Any, datamodule: Any) -> dict[str, float]:
        """The baseline cross-fitted like the networks: out-of-fold val metrics over the pool, test metrics
        of the mean of its K fits (`evaluate_cross_fitted`)."""
        if self.fold is not None or self.plain:
            return super().evaluate_baseline(baseline, datamodule)
        if not hasattr(baseline, "evaluate_cross_fitted"):
            raise AdlabError(f"{type(baseline).__name__} cannot be cross-fitted (fit=crossfit)")
        return baseline.evaluate_cross_fitted(self.cut(datamodule))


def _cut_fold(pool: MarketingDataModule, held_out: np.ndarray) -> tuple[dict[str, np.ndarray], BuiltData]:
    """One fold's splits and built data from a set-up pool module: its `held_out` pool rows as val, the
    others as train, the pool's test split and preprocessing."""
    pool_tensors, rows = pool.tensors["train"], pool.splits["train"]
    tensors = {
        "train": {name: t[torch.from_numpy(~held_out)] for name, t in pool_tensors.items()},
        "val": {name: t[torch.from_numpy(held_out)] for name, t in pool_tensors.items()},
        "test": pool.tensors["test"],
    }
    splits = {"train": rows[~held_out], "val": rows[held_out], "test": pool.splits["test"]}
    # what a fold network may know of labels comes from its own train rows (the output bias starts at
    # this rate; positive_weight="balanced" uses it)
    meta = dataclasses.replace(
        pool.meta,
        positive_rate=float(tensors["train"]["target"].float().mean()),
        rows={stage: int(len(stage_rows)) for stage, stage_rows in splits.items()},
    )
    return splits, BuiltData(tensors=tensors, meta=meta, state=pool.features)


class SaveEnsemble(L.Callback):
    """Write the merged ensemble as `best.ckpt` and `last.ckpt` once it has been validated (its checkpoints
    then carry the job's config and data like any other)."""

    def __init__(self, checkpoint_dir: Path):
        self.checkpoint_dir = checkpoint_dir

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn != "validate" or trainer.sanity_checking:
            return
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        for name in ("best", "last"):
            # a full checkpoint (optimizer state too), written here, never read unsafely
            trainer.save_checkpoint(self.checkpoint_dir / f"{name}.ckpt", False)
