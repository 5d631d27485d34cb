"""Checkpointing that keeps model selection intact when a run is resumed into a new directory."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

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
