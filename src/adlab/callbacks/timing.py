"""Time the training part of every epoch (validation excluded) and log it as `time/train_epoch_seconds`."""

from __future__ import annotations

import time

import lightning as L


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
