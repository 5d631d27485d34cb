"""Callbacks every job gets: checkpointing that survives resuming into a new directory, per-epoch
seeding, the epoch timer, and the time budget (`trainer.max_time`)."""

from __future__ import annotations

import logging
import math
import re
import shutil
import time
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any
from weakref import proxy

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from adlab.errors import AdlabError

log = logging.getLogger(__name__)


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

    def _save_checkpoint(self, trainer: L.Trainer, filepath: str) -> None:
        """Write under a temporary name in the same folder, then rename over `filepath`.

        A process killed mid-write, or a disk that fills up, leaves the previous `last.ckpt` / `best.ckpt`
        whole (the rename is atomic; Lightning's own write may copy across file systems). A failed write
        ends the run with one line naming the file.
        """
        path = Path(filepath)
        temporary = path.with_name(f".{path.name}.tmp")
        try:
            trainer.save_checkpoint(temporary, self.save_weights_only)
            if trainer.is_global_zero:
                temporary.replace(path)
        except OSError as error:
            if trainer.is_global_zero:
                temporary.unlink(missing_ok=True)
            raise AdlabError(
                f"{path}: could not write the checkpoint ({error.strerror or error}); the previous "
                f"{path.name}, if any, is intact; free space in {path.parent} and resume from it"
            ) from None
        trainer.strategy.barrier("RunCheckpoint._save_checkpoint")
        self._last_global_step_saved = trainer.global_step
        self._last_checkpoint_saved = filepath
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.after_save_checkpoint(proxy(self))


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


_DURATION = re.compile(r"(\d+):(\d\d):(\d\d):(\d\d(?:\.\d*)?)")


def time_budget(value: Any, what: str = "trainer.max_time") -> float | None:
    """A training time budget in seconds from the config: "DD:HH:MM:SS" (Lightning's format), a number of
    seconds, or a mapping of `timedelta` fields (`{minutes: 10}`); None or "" for no budget.

    Raises `AdlabError` naming `what` for anything else, or for a budget that is not positive.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    seconds: float | None = None
    try:
        if isinstance(value, bool):
            seconds = None
        elif isinstance(value, int | float):
            seconds = float(value)
        elif isinstance(value, str):
            found = _DURATION.fullmatch(value.strip())
            if found:
                days, hours, minutes, secs = (float(part) for part in found.groups())
                seconds = ((days * 24 + hours) * 60 + minutes) * 60 + secs
            else:
                seconds = float(value)
        elif isinstance(value, Mapping):
            seconds = timedelta(**{str(k): float(v) for k, v in dict(value).items()}).total_seconds()
    except (TypeError, ValueError):
        seconds = None
    if seconds is None or not math.isfinite(seconds):
        raise AdlabError(
            f"{what}={value!r}: expected DD:HH:MM:SS (e.g. 00:00:10:00), a number of seconds or {{minutes: 10}}"
        )
    if seconds <= 0:
        raise AdlabError(f"{what}={value!r}: expected a positive time budget, or null for none")
    return seconds


class TimeBudget(L.Callback):
    """Stop fitting when the time budget (`trainer.max_time`) is spent, even inside the first epoch.

    Lightning's own `max_time` (its `Timer` callback) checks between batches but yields to `min_epochs`, so
    a budget shorter than an epoch was overrun by the whole epoch, with its warning printed at every batch.
    This callback replaces it (`build_trainer` passes `max_time=None, min_epochs=0` when a budget is set):
    after each training batch it stops once the time spent since the fit started, plus the time the
    closing validation should take, reaches the budget. That validation then runs as after early stopping,
    so a checkpoint is selected and tested as usual. The validation's time is the last one measured in
    this fit; before any, it is estimated from the training steps (the val rows in training batches, each
    forward pass at a third of a step, at most a tenth of the budget). The stop is reported once. The time spent is kept in
    checkpoints, so a resumed fit spends what is left.

    Args:
        seconds: the budget (see `time_budget` for the config's formats).
    """

    def __init__(self, seconds: float):
        self.seconds = float(seconds)
        self.stopped_at: float | None = None
        self._offset = 0.0
        self._started: float | None = None
        self._batch_started: float | None = None
        self._step_seconds: list[float] = []
        self._val_started: float | None = None
        self._val_seconds: float | None = None

    def elapsed(self) -> float:
        """Seconds of fitting so far, those of the run this one resumed included."""
        return self._offset + (time.monotonic() - self._started if self._started is not None else 0.0)

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit":  # the clock starts with the fit's own setup (optimizers, loaders)
            self._started, self.stopped_at = time.monotonic(), None
            self._step_seconds, self._val_seconds = [], None

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self._batch_started = time.monotonic()

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self._batch_started is not None:
            self._step_seconds.append(time.monotonic() - self._batch_started)
        spent = self.elapsed()
        stop = bool(trainer.strategy.broadcast(spent + self._validation_reserve(trainer) >= self.seconds))
        if stop and self.stopped_at is None:
            trainer.should_stop = True
            self.stopped_at = spent
            log.warning(
                "trainer.max_time (%s) reached after %.1f s of fitting, in epoch %d at batch %d: training stops "
                "here; the best checkpoint so far is validated and tested",
                _format_seconds(self.seconds),
                spent,
                trainer.current_epoch + 1,
                batch_idx + 1,
            )

    def _validation_reserve(self, trainer: L.Trainer) -> float:
        """Seconds the validation after a stop should take (see the class docstring)."""
        if not trainer.enable_validation:
            return 0.0
        if self._val_seconds is not None:
            return self._val_seconds
        if len(self._step_seconds) < 2:
            return 0.0  # the first step pays one-off costs (allocation, warm-up): it says little
        step = float(np.median(self._step_seconds[1:]))
        train_size = getattr(trainer.train_dataloader, "batch_size", None)
        batches = trainer.num_val_batches
        total = float(sum(batches) if isinstance(batches, list) else batches)
        if not train_size or not math.isfinite(total):
            return 0.0
        loaders = trainer.val_dataloaders
        loaders = loaders if isinstance(loaders, list | tuple) else [loaders]
        rows = sum(_loader_rows(loader) or 0 for loader in loaders)
        if not rows:  # rows unknown: full batches
            rows = total * max(getattr(loaders[0], "batch_size", None) or train_size, 1)
        # a forward pass costs about a third of a training step (forward, backward, update); eval batches
        # often run faster still, so the guess is capped at a tenth of the budget
        return min(rows / train_size * step / 3, 0.1 * self.seconds)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn == "fit" and not trainer.sanity_checking:
            self._val_started = time.monotonic()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn == "fit" and not trainer.sanity_checking and self._val_started is not None:
            self._val_seconds = time.monotonic() - self._val_started
            self._val_started = None

    def state_dict(self) -> dict[str, Any]:
        return {"elapsed": self.elapsed()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._offset = float(state_dict.get("elapsed", 0.0))


def _loader_rows(loader: Any) -> int | None:
    """Rows a data loader serves per epoch, where it says (a torch DataLoader's dataset, adlab's `size`)."""
    try:
        return len(loader.dataset)
    except (AttributeError, TypeError):
        size = getattr(loader, "size", None)
        return int(size) if isinstance(size, int) else None


def _format_seconds(seconds: float) -> str:
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(int(minutes), 60)
    return f"{hours:02d}:{minutes:02d}:{secs:04.1f}" if hours else f"{minutes:02d}:{secs:04.1f}"


class NonFiniteLoss(L.Callback):
    """Stop training with one line when the training loss becomes NaN or infinite.

    Raised before the step's weights reach a checkpoint: `last.ckpt` keeps the last epoch that ended with
    finite weights, so the run can resume from it (with a lower learning rate, gradient clipping ...).
    Reads the loss a `training_step` returns, or else the step's logged `train/...loss` values (a module
    optimising by hand returns none).
    """

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        values = {"loss": loss} if isinstance(loss, torch.Tensor) else {}
        if not values:
            values = {
                key: value
                for key, value in trainer.callback_metrics.items()
                if key.startswith("train") and "loss" in key and isinstance(value, torch.Tensor)
            }
        for name, value in values.items():
            if value.numel() and not torch.isfinite(value.detach()).all():
                saved = [c for c in trainer.checkpoint_callbacks if getattr(c, "last_model_path", "")]
                where = (
                    f"the last checkpoint written before it is {saved[0].last_model_path}"
                    if saved
                    else "no checkpoint was written before it"
                )
                raise AdlabError(
                    f"training {name} became {value.detach().float().mean().item()} at epoch "
                    f"{trainer.current_epoch}, batch {batch_idx}; stopped, {where}; expected a finite loss "
                    "(lower model.optimizer.lr, set trainer.gradient_clip_val, or check the data for extreme values)"
                )


class MonitoredMetric(L.Callback):
    """After the first validation, check that the module logs `monitor` (the metric checkpoints and early
    stopping select on), so a typo is one line naming the metrics it does log, not Lightning's traceback.

    Goes first among a job's callbacks, so that it speaks before checkpointing and early stopping do.
    """

    def __init__(self, monitor: str | None):
        self.monitor = monitor
        self.checked = False

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.checked or trainer.sanity_checking or not self.monitor:
            return
        logged = sorted(key for key in trainer.callback_metrics if key.startswith("val"))
        if not logged:
            return  # a validation that logged nothing (yet): checked at the next one
        self.checked = True
        if self.monitor not in trainer.callback_metrics:
            raise AdlabError(
                f"monitor={self.monitor}: {type(pl_module).__name__} logs no such metric; expected one of "
                f"{', '.join(logged[:12]) or 'the val/ metrics it logs'}"
            )
