"""What a job shows while it runs: each message once, no advertisements, progress bars that say what they fit.

Lightning builds one trainer per fit (K of them when cross-fitting), and each prints the same device lines,
tips and warnings; torch and Lightning reset Python's once-per-location warning registry as they go, so the
same warning comes back. One place filters all of it:

- `QuietFilter` (a logging filter, set on the job's log handlers by `configs/hydra/default.yaml`) passes
  each message once and drops Lightning's tips (`💡 Tip: ...`: litlogger / litmodels advertisements);
- `quiet_warnings()` (around every job of the Hydra entry points, `adlab.cli.report_user_errors`) ignores the warnings
  nobody can act on and routes the others into logging, so that they pass through `QuietFilter` and land in
  the job's log file;
- `LabelledProgressBar` (the `callbacks.progress_bar` of `configs/callbacks/default.yaml`) carries a label
  such as `fold 2/5`, set by a fit strategy through `label_progress`.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import lightning as L
from lightning.pytorch.callbacks import RichProgressBar

# warnings that say nothing a user can act on, ignored outright
IGNORED_WARNINGS = (
    # adlab's loaders index tensors in the training process on purpose: workers would only add start-up cost
    r".*does not have many workers.*",
    # raised inside Lightning's own code (its use of torch's pytree), not by anything in a job's config
    r".*isinstance\(treespec, LeafSpec\).*",
    # adlab-eval and adlab-predict load a checkpoint to test or score it: the training callbacks have no use
    r".*callbacks used to create the checkpoint need to be provided.*",
)
TIP_PREFIX = "💡 Tip"


class QuietFilter(logging.Filter):
    """Pass each message once (by level and text) and drop Lightning's tips.

    One filter instance may sit on several handlers (console and log file): a record that passed on one
    handler passes on the others too; a later record with the same text does not.
    """

    def __init__(self, name: str = ""):
        super().__init__(name)
        # the first record of each text (kept, not its id: a freed record's id is soon reused)
        self._first: dict[tuple[int, str], logging.LogRecord] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message.lstrip().startswith(TIP_PREFIX):
            return False
        return self._first.setdefault((record.levelno, message), record) is record


@contextmanager
def quiet_warnings() -> Iterator[None]:
    """Within the block, ignore the warnings in `IGNORED_WARNINGS` and send the others through logging
    (`py.warnings`); Python's warning handling is restored after it.

    Wraps each job of the command-line entry points, never library code, so that tests and notebooks keep
    Python's own warning handling.
    """
    with warnings.catch_warnings():
        for pattern in IGNORED_WARNINGS:
            warnings.filterwarnings("ignore", message=pattern)
        logging.captureWarnings(True)
        try:
            yield
        finally:
            logging.captureWarnings(False)


class LabelledProgressBar(RichProgressBar):
    """Lightning's rich progress bar with epochs counted from 1 and an optional label before them.

    `label` (e.g. `fold 2/5`) is set by whoever builds the trainer (`label_progress`); empty by default.
    """

    def __init__(self, *args, label: str = "", **kwargs):
        super().__init__(*args, **kwargs)
        self.label = label

    def _get_train_description(self, current_epoch: int) -> str:
        description = f"Epoch {current_epoch + 1}"
        if self.trainer.max_epochs is not None and self.trainer.max_epochs > 0:
            description += f"/{self.trainer.max_epochs}"
        if self.label:
            description = f"{self.label} · {description}"
        if len(self.validation_description) > len(description):
            description = f"{description:{len(self.validation_description)}}"  # no flicker between bars
        return description


def label_progress(trainer: L.Trainer, label: str) -> None:
    """Put `label` (e.g. `fold 2/5`) on the trainer's progress bar, if it is a `LabelledProgressBar`."""
    bar = trainer.progress_bar_callback
    if isinstance(bar, LabelledProgressBar):
        bar.label = label
