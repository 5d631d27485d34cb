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

import lightning as L
from lightning.pytorch.callbacks import RichProgressBar

# in adlab.harness.quiet, which imports no torch: every entry point's log handlers use them
from adlab.harness.quiet import IGNORED_WARNINGS, TIP_PREFIX, QuietFilter, quiet_warnings

__all__ = [
    "IGNORED_WARNINGS",
    "TIP_PREFIX",
    "LabelledProgressBar",
    "QuietFilter",
    "label_progress",
    "quiet_warnings",
]


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
