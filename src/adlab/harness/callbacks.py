"""Callbacks every job gets: checkpointing that survives resuming into a new directory, per-epoch
seeding, and the epoch timer."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint


class RunCheckpoint(ModelCheckpoint):
    """`ModelCheckpoint` writing `best.ckpt` and `last.ckpt`, resumable across run directories.

    Lightning forgets the best score when a run resumes into another directory, so a worse later epoch
    would become "best" and the resumed run would select differently from an uninterrupted one. Here the
    score is kept and the earlier best checkpoint is copied into the new directory.
    """

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        old_dir, score, old_best = (
            state_dict.get("dirpath"),
            state_dict.get("best_model_score"),
            state_dict.get("best_model_path"),
        )
        if (
            self.dirpath is None
            or old_dir == self.dirpath
            or score is None
            or not old_best
            or not Path(old_best).is_file()
        ):
            return
        target = Path(self.dirpath) / f"{self.filename or 'best'}{self.FILE_EXTENSION}"
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            shutil.copyfile(old_best, target)
        self.best_model_score = score
        self.best_model_path = self.kth_best_model_path = str(target)
        self.kth_value = score
        self.best_k_models = {str(target): score}


class EpochSeed(L.Callback):
    """Set torch's global RNG from `(seed, epoch)` before each training epoch.

    Lightning's checkpoints restore weights, optimizer and loop state but not the RNG that drives
    dropout; seeding per epoch makes epoch k identical whether or not the run was resumed before it.
    """

    def __init__(self, seed: int):
        self.seed = int(seed)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        torch.manual_seed(self.seed * 1_000_003 + trainer.current_epoch * 7919 + trainer.global_rank)


class EpochTimer(L.Callback):
    """Wall time from the start of a training epoch to the start of its validation (or its end).

    Everything the trainer does per step (hooks, logging, progress bar) is inside the measure, which is
    what a harness-overhead comparison needs. `times` keeps every epoch's figure.
    """

    def __init__(self):
        self.times: list[float] = []
        self._start: float | None = None

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = time.perf_counter()

    def _stop(self) -> None:
        if self._start is not None:
            self.times.append(time.perf_counter() - self._start)
            self._start = None

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking and trainer.state.fn == "fit":
            self._stop()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._stop()
        if self.times:
            pl_module.log("time/train_epoch_seconds", self.times[-1])
