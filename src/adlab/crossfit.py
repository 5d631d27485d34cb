"""Cross-fitting (`data.folds=K`): K networks, each trained with one fold of the pool as its val split,
merged into one ensemble that is tested once.

Every training row then serves as val exactly once, so the val metrics are out-of-fold scores of the
whole pool (five times the rows of a 20% val split, which makes model selection less noisy), and the
test score averages K networks that together saw every training row (which cuts the variance between
seeds). Only propensity models are cross-fitted; see `adlab.models.propensity.merge_cross_fitted`.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.loggers import CSVLogger
from omegaconf import DictConfig, open_dict

from adlab.callbacks.propensity import score_split
from adlab.errors import AdlabError
from adlab.models.propensity import PropensityModule, merge_cross_fitted
from adlab.utils.build import (
    build_callbacks,
    build_model,
    build_trainer,
    checkpoint_callback,
)

log = logging.getLogger(__name__)


def cross_fitting(cfg: DictConfig) -> bool:
    """True when the job cross-fits: `data.folds` set and no single `data.fold` chosen."""
    data = cfg.get("data") or {}
    return data.get("folds") is not None and data.get("fold") is None


def fold_config(cfg: DictConfig, fold: int) -> DictConfig:
    """The job config of one fold: `data.fold=fold`, outputs under `<output_dir>/folds/<fold>`, no test."""
    fold_cfg = copy.deepcopy(cfg)
    with open_dict(fold_cfg):
        fold_cfg.data.fold = fold
        fold_cfg.paths.output_dir = str(Path(cfg.paths.output_dir) / "folds" / str(fold))
    return fold_cfg


def fit_folds(
    cfg: DictConfig, pool: Any, resolved: dict[str, Any]
) -> tuple[PropensityModule, list[Any], dict[str, Any]]:
    """Train one network per fold and merge them.

    Args:
        cfg: the job config (`data.folds` set, `data.fold` null).
        pool: the job's data module, set up (the whole pool as train and val; each fold's data module is
            cut from it).
        resolved: the job's resolved config (stored, per fold, in the fold checkpoints).

    Returns:
        The merged ensemble, the K fold data modules (for cross-fitted baselines), and the resolved
        config of the ensemble (what its checkpoint must store so that adlab-eval rebuilds it).
    """
    folds = int(cfg.data.folds)
    out_of_fold = torch.zeros(len(pool.pool))
    modules, datamodules = [], []
    for fold in range(folds):
        fold_cfg = fold_config(cfg, fold)
        # the fold's rows cut from the pool: no second load of the source, no refit of its preprocessing
        datamodule = pool.fold_view(fold)
        model = build_model(fold_cfg, datamodule.meta)
        if not isinstance(model, PropensityModule):
            raise AdlabError(
                f"data.folds={folds}: cross-fitting expects a propensity model, not {type(model).__name__}; "
                "set data.folds=null"
            )
        fold_dir = Path(fold_cfg.paths.output_dir)
        fold_resolved = {**resolved, "data": {**resolved.get("data", {}), "fold": fold}}
        trainer = build_trainer(
            fold_cfg,
            build_callbacks(fold_cfg, fold_resolved),
            [CSVLogger(str(fold_dir), name="csv", version="")],
        )
        if trainer.world_size > 1:
            raise AdlabError(
                f"trainer.devices: cross-fitting (data.folds={folds}) runs on one device; expected trainer.devices=1"
            )
        trainer.fit(model, datamodule=datamodule)
        if trainer.interrupted:
            raise KeyboardInterrupt
        callback = checkpoint_callback(trainer)
        best = callback.best_model_path if callback is not None else ""
        if best:
            state = torch.load(best, map_location="cpu", weights_only=False)["state_dict"]
            model.load_state_dict(state)
        held_out = torch.from_numpy(datamodule.fold_of == fold)
        out_of_fold[held_out] = torch.from_numpy(score_split(model, datamodule.tensors["val"]))
        if callback is not None:
            log.info(
                "fold %d/%d: best %s = %s", fold + 1, folds, cfg.get("monitor"), callback.best_model_score
            )
        modules.append(model.cpu())
        datamodules.append(datamodule)
    # the pool module serves the pool rows in order as val: the targets of the out-of-fold scores
    merged = merge_cross_fitted(modules, out_of_fold, pool.tensors["val"]["target"].float())
    merged_resolved = copy.deepcopy(resolved)
    model_cfg = merged_resolved.setdefault("model", {})
    model_cfg.update(
        members=merged.hparams.members,
        select_numeric=merged.hparams.select_numeric,
        out_of_fold_rows=merged.hparams.out_of_fold_rows,
    )
    return merged, datamodules, merged_resolved


def save_ensemble(trainer: L.Trainer, checkpoint_dir: Path) -> None:
    """Write the merged ensemble as `best.ckpt` and `last.ckpt` (the trainer has validated it, so it is
    attached)."""
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    for name in ("best", "last"):
        trainer.save_checkpoint(checkpoint_dir / f"{name}.ckpt")
