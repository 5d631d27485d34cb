"""Read adlab checkpoints: validate the file and recover the config stored inside it."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from adlab.errors import AdlabError


def load_checkpoint(path: str | Path | None) -> dict[str, Any]:
    """Load a checkpoint written by adlab-train; `AdlabError` when missing, unreadable or not adlab's."""
    if path is None or str(path) in ("", "None", "???"):
        raise AdlabError("ckpt_path is not set; expected a .ckpt file written by adlab-train")
    path = Path(path)
    if not path.is_file():
        raise AdlabError(f"ckpt_path={path}: file not found")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except (
        RuntimeError,
        pickle.UnpicklingError,
        zipfile.BadZipFile,
        EOFError,
        ValueError,
        AttributeError,
    ) as error:
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise AdlabError(f"ckpt_path={path}: not a PyTorch checkpoint ({first[:200]})") from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise AdlabError(f"ckpt_path={path}: not a Lightning checkpoint (no state_dict)")
    if "adlab_config" not in checkpoint:
        raise AdlabError(
            f"ckpt_path={path}: a Lightning checkpoint without adlab's stored config; was it written by adlab-train?"
        )
    return checkpoint
