"""Reseed at the start of every training epoch so that a resumed run repeats an uninterrupted one."""

from __future__ import annotations

import lightning as L
import torch


class EpochSeed(L.Callback):
    """Set torch's global RNG from `(seed, epoch)` before each training epoch.

    Lightning's checkpoints restore weights, optimizer and loop state but not the RNG that drives
    dropout; seeding per epoch makes epoch k identical whether or not the run was resumed before it.
    """

    def __init__(self, seed: int):
        self.seed = int(seed)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        torch.manual_seed(self.seed * 1_000_003 + trainer.current_epoch * 7919 + trainer.global_rank)
