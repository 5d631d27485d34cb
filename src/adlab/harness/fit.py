"""Fit strategies: how `adlab-train` fits the model it then validates and tests, chosen by the `fit` group.

`fit=plain` (the default) fits one model on the train split and selects its checkpoint on val. A family
may ship its own strategy (the propensity family's cross-fitting: `fit=crossfit`) as a subclass of
`FitStrategy` named by `_target_` in `configs/fit/`; the harness calls only the methods below.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig

from adlab.harness.build import checkpoint_callback, instantiate_node, prepare_model
from adlab.harness.checkpoints import SAFE_LOAD


@dataclass
class Fitted:
    """What a fit strategy hands back to `adlab-train`.

    Attributes:
        model: the model to validate and test.
        trainer: the trainer that validates and tests it (the job's callbacks and loggers).
        checkpoint: the checkpoint validation and test load into `model`; None tests the model in memory.
    """

    model: L.LightningModule
    trainer: L.Trainer
    checkpoint: str | None


class FitStrategy:
    """How a training job fits. The harness calls, in order: `check(cfg)` before anything is built,
    `setup_data(datamodule)` before the model is built, `fit(...)`, then `evaluate_baseline` per baseline."""

    def check(self, cfg: DictConfig) -> None:
        """Raise `AdlabError` for a job this strategy cannot run (before anything is built or written)."""

    def setup_data(self, datamodule: Any) -> None:
        """Set up the data module (load, split, fit preprocessing) on the rows this strategy fits on."""
        datamodule.setup("fit")

    def fit(
        self,
        cfg: DictConfig,
        model: L.LightningModule,
        datamodule: Any,
        trainer: L.Trainer,
        loggers: list[Logger],
        resolved: dict[str, Any],
    ) -> Fitted:
        """Fit `model` (built from the set-up data module's meta) with the job's `trainer`.

        Args:
            cfg: the job config.
            model: the model built for this job.
            datamodule: the set-up data module.
            trainer: the job's trainer (its callbacks store `resolved` in checkpoints).
            loggers: the job's loggers, for strategies that build further trainers.
            resolved: the job's resolved config, for strategies that build further trainers.
        """
        raise NotImplementedError

    def evaluate_baseline(self, baseline: Any, datamodule: Any) -> dict[str, float]:
        """`{"val/<metric>": ..., "test/<metric>": ...}` of one baseline, fitted the way this strategy fits."""
        return baseline.evaluate(datamodule)


def build_fit(cfg: DictConfig, check: bool = True) -> FitStrategy:
    """Instantiate `cfg.fit` (`fit=plain` when the config has none, as in checkpoints of older jobs).

    With `check`, the strategy checks the training job, so that a job it cannot run fails before anything
    is built or written (adlab-eval, which only sets up data with it, passes False).
    """
    strategy = instantiate_node(cfg.fit) if cfg.get("fit") is not None else PlainFit()
    if check:
        strategy.check(cfg)
    return strategy


class PlainFit(FitStrategy):
    """`fit=plain`: fit on the train split, keep the checkpoint best on val (`checkpoints/best.ckpt`).

    A fresh fit first hands the model what it fits on the train split (`prepare_model`); a fit resumed
    from `ckpt_path` does not (the checkpoint restores it). With `train=false`, `ckpt_path` is tested.
    """

    def fit(
        self,
        cfg: DictConfig,
        model: L.LightningModule,
        datamodule: Any,
        trainer: L.Trainer,
        loggers: list[Logger],
        resolved: dict[str, Any],
    ) -> Fitted:
        ckpt_path = cfg.get("ckpt_path")
        if not cfg.get("train", True):
            return Fitted(model, trainer, ckpt_path)
        if not ckpt_path:
            prepare_model(model, datamodule)
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path, **SAFE_LOAD)
        if trainer.fast_dev_run or trainer.interrupted:
            return Fitted(model, trainer, None)  # the model in memory
        return Fitted(model, trainer, selected_checkpoint(trainer, Path(cfg.paths.output_dir)))


def selected_checkpoint(trainer: L.Trainer, output_dir: Path) -> str:
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
