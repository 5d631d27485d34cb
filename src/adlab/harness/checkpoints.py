"""Read adlab checkpoints without running code from them, and rebuild the module a checkpoint stores.

This is the one place that reads the keys adlab adds to Lightning's checkpoints (`adlab_config`: the
resolved job config; `adlab_data`: `{"meta": DataMeta.to_dict(), "preprocessing": plain containers}`).
Entry points ask for a `StoredRun` or a module (`load_module`), never for the keys.

Every read goes through `torch.load(..., weights_only=True)` (`safe_torch_load`): the unpickler builds
tensors and plain containers only, and refuses any other global (a pickled callable) before it could run.
Weights files (pretrained nets) are read by `load_weights`: safetensors, or the same restricted load.
Lightning's own loads of `ckpt_path` (`Trainer.fit/validate/test`) are made safe by checking the file here
first (`checked_ckpt_path`) and passing `weights_only=True` (`SAFE_LOAD`).
"""

from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf
from safetensors.torch import load_file as load_safetensors
from torch import Tensor

from adlab.data.features import DataMeta
from adlab.errors import AdlabError, excerpt
from adlab.harness.build import build_model

SAFE_LOAD: dict[str, Any] = {"weights_only": True}
"""Keyword arguments for `Trainer.fit/validate/test` with a `ckpt_path`: Lightning then loads the file
with the same restricted unpickler as `load_checkpoint` (explicit, so `TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`
cannot turn it off)."""

_UNSET = ("", "None", "???")


def _refused_global(message: str) -> str | None:
    """The global a weights-only load refused (`posix.system`), from torch's multi-line message."""
    found = re.search(r"GLOBAL ([\w.]+)", message)
    return found.group(1) if found else None


def _existing_file(path: str | Path | None, what: str, expected: str) -> Path:
    if path is None or str(path) in _UNSET:
        raise AdlabError(f"{what} is not set; expected {expected}")
    path = Path(path)
    if path.is_dir():
        raise AdlabError(f"{what}={path}: a directory; expected {expected}")
    if not path.is_file():
        raise AdlabError(f"{what}={path}: file not found")
    return path


def safe_torch_load(path: Path, what: str, expected: str) -> Any:
    """`torch.load(path, weights_only=True)` (tensors memory-mapped, on the CPU) with one-line errors.

    The file must be the zip archive `torch.save` writes (anything else, a CSV, a truncated file or an old
    pickle, is refused before unpickling); a pickle naming any global beyond tensors and plain containers
    is refused by torch's restricted unpickler before that global is looked up, so it never runs.
    """
    if not zipfile.is_zipfile(path):
        raise AdlabError(
            f"{what}={path}: not a PyTorch checkpoint (no complete zip archive as torch.save writes: another "
            f"kind of file, or a truncated one); expected {expected}"
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as error:  # torch raises many types for a damaged or hostile file; all mean "refused"
        message = str(error)
        refused = _refused_global(message)
        if refused is not None:
            raise AdlabError(
                f"{what}={path}: refused: loading it would call {refused} (a pickled callable, not weights); "
                "adlab loads checkpoints as tensors and plain containers only"
            ) from None
        if "Weights only load failed" in message:  # torch goes on to suggest an unsafe load: not repeated
            found = re.search(r"WeightsUnpickler error: ([^\n]*)", message)
            detail = found.group(1).split(". ")[0] if found else "an object torch does not allow"
            raise AdlabError(
                f"{what}={path}: refused: its pickle holds more than tensors and plain containers ({excerpt(detail)})"
            ) from None
        first = next((line for line in message.splitlines() if line.strip()), type(error).__name__)
        raise AdlabError(f"{what}={path}: not a PyTorch checkpoint ({excerpt(first)})") from None


def load_checkpoint(path: str | Path | None, what: str = "ckpt_path") -> dict[str, Any]:
    """Load a checkpoint written by adlab-train without executing code from it (`safe_torch_load`).

    Args:
        path: the `.ckpt` file.
        what: the name of the input in error messages (`ckpt_path`, `model.evaluator_ckpt` ...).

    Returns:
        The checkpoint: tensors and plain containers only (tensors memory-mapped, on the CPU).

    Raises:
        AdlabError: one line naming the file when it is missing, not a PyTorch checkpoint, would run
            code when unpickled (the callable is never called), or is not a checkpoint of adlab's.
    """
    expected = "a .ckpt file written by adlab-train"
    path = _existing_file(path, what, expected)
    checkpoint = safe_torch_load(path, what, expected)
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        raise AdlabError(f"{what}={path}: not a Lightning checkpoint (no state_dict)")
    if not isinstance(checkpoint.get("adlab_config"), dict):
        raise AdlabError(
            f"{what}={path}: a Lightning checkpoint without adlab's stored config; was it written by adlab-train?"
        )
    return checkpoint


def load_weights(path: str | Path | None, what: str) -> dict[str, Tensor]:
    """Read a weights file (pretrained nets, feature extractors) without executing code from it.

    Args:
        path: a `.safetensors` file, or a file written by `torch.save` holding a state dict (or a dict with
            the state dict under `state_dict` or `model`).
        what: the config key that named the file, for error messages (`model.net.weights_path` ...).

    Returns:
        Parameter name -> CPU tensor. `AdlabError` (one line naming the file) for anything else.
    """
    expected = "a .safetensors file or a PyTorch state dict"
    path = _existing_file(path, what, expected)
    if path.suffix == ".safetensors":
        try:
            return load_safetensors(path, device="cpu")
        except Exception as error:  # safetensors raises its own error types for a damaged header
            raise AdlabError(f"{what}={path}: not a safetensors file ({excerpt(error)})") from None
    state = safe_torch_load(path, what, expected)
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise AdlabError(f"{what}={path}: not a state dict (parameter name -> tensor); expected {expected}")
    return state


def checked_ckpt_path(path: str | Path | None, what: str = "ckpt_path") -> str | None:
    """`path` after `load_checkpoint` accepted it (None stays None): call before handing a user's file to
    Lightning, with `**SAFE_LOAD`. Some strategies load full checkpoints with their own unpickler (FSDP's
    lazy loader): a file that passed here holds no global beyond tensors and plain containers."""
    if path is None or str(path) in _UNSET:
        return None
    load_checkpoint(path, what)
    return str(path)


@dataclass
class StoredRun:
    """A training run as its checkpoint stores it: what eval, export and generate rebuild from.

    Attributes:
        path: the checkpoint file.
        config: the resolved job config (plain containers; `job_config()` for a `DictConfig`).
        meta: the data meta the model was built with.
        preprocessing: the preprocessing fitted on the train split, as plain containers (a family's
            typed reader, e.g. `TabularFeatures.from_dict`, turns it back into its dataclass).
        state_dict: the module's weights (CPU tensors).
        checkpoint: the whole checkpoint, for the module's `on_load_checkpoint`.
    """

    path: Path
    config: dict[str, Any]
    meta: DataMeta
    preprocessing: dict[str, Any]
    state_dict: dict[str, Tensor]
    checkpoint: dict[str, Any]

    @classmethod
    def read(cls, path: str | Path | None, what: str = "ckpt_path") -> StoredRun:
        """Read a checkpoint written by adlab-train (safely, see `load_checkpoint`); `AdlabError` otherwise."""
        checkpoint = load_checkpoint(path, what)
        data = checkpoint.get("adlab_data")
        if not isinstance(data, dict) or not isinstance(data.get("meta"), dict):
            raise AdlabError(
                f"{what}={path}: the checkpoint carries no data meta; retrain with this adlab version"
            )
        try:
            meta = DataMeta.from_dict(data["meta"])
        except (AdlabError, TypeError) as error:
            raise AdlabError(f"{what}={path}: {error}") from None
        return cls(
            path=Path(path),
            config=checkpoint["adlab_config"],
            meta=meta,
            preprocessing=data.get("preprocessing") or {},
            state_dict=checkpoint["state_dict"],
            checkpoint=checkpoint,
        )

    def job_config(self) -> DictConfig:
        """The stored config as a `DictConfig` (what `build_model` and the entry points take)."""
        return OmegaConf.create(self.config)


def _device(device: str | torch.device, what: str) -> torch.device:
    try:
        chosen = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise AdlabError(
            f"device={device}: not a device name ({error}); expected cpu, cuda or cuda:N"
        ) from None
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise AdlabError(f"device={device}: no CUDA GPU is available to load {what}; use device=cpu")
    if chosen.type == "cuda" and chosen.index is not None and chosen.index >= torch.cuda.device_count():
        raise AdlabError(f"device={device}: this machine has {torch.cuda.device_count()} CUDA GPU(s)")
    return chosen


def load_module(
    run: str | Path | StoredRun, device: str | torch.device = "cpu", what: str = "ckpt_path"
) -> L.LightningModule:
    """Rebuild the LightningModule a checkpoint stores, ready to use (eval mode, on `device`).

    The module is built from the stored config and data meta (`build_model`, no training data read), its
    `on_load_checkpoint(checkpoint)` is called once, as Lightning does before restoring weights, then the
    stored weights are loaded. Callers never call hooks themselves.

    Args:
        run: the checkpoint file, or a `StoredRun` already read from it.
        device: where the module goes (`cpu`, `cuda`, `cuda:1`).
        what: the name of the input in error messages.
    """
    stored = run if isinstance(run, StoredRun) else StoredRun.read(run, what)
    target = _device(device, f"{what}={stored.path}")
    module = build_model(stored.job_config(), stored.meta)
    module.on_load_checkpoint(stored.checkpoint)
    try:
        module.load_state_dict(stored.state_dict)
    except RuntimeError as error:
        raise AdlabError(
            f"{what}={stored.path}: its weights do not fit the {type(module).__name__} its config builds "
            f"({_state_dict_problem(error)})"
        ) from None
    return module.to(target).eval()


def _differences(stored: Any, current: Any, path: str = "") -> list[str]:
    """Dotted names where two plain containers differ (floats compared to 1e-9, relatively)."""
    if isinstance(stored, dict) and isinstance(current, dict):
        found = []
        for key in sorted(set(stored) | set(current), key=str):
            name = f"{path}.{key}" if path else str(key)
            if key not in stored or key not in current:
                found.append(name)
            else:
                found += _differences(stored[key], current[key], name)
        return found
    if isinstance(stored, (list, tuple)) and isinstance(current, (list, tuple)):
        if len(stored) != len(current):
            return [path]
        return [path] if any(_differences(a, b) for a, b in zip(stored, current, strict=True)) else []
    if isinstance(stored, float) or isinstance(current, float):
        try:
            same = abs(float(stored) - float(current)) <= 1e-9 * max(1.0, abs(float(stored)))
        except (TypeError, ValueError):
            same = False
        return [] if same else [path]
    return [] if stored == current else [path]


def check_resumable(
    path: str | Path | None,
    cfg: DictConfig,
    model: L.LightningModule,
    meta: DataMeta,
    what: str = "ckpt_path",
) -> None:
    """A checkpoint a training job resumes from (or tests, with `train=false`) must be this job's: the same
    model family, the same data and split (its data meta), and weights that fit the model the config builds.

    Lightning would otherwise fail with a traceback on a foreign family, or silently continue training on
    other data (the split, the vocabularies and the scaling would no longer be the ones the weights learned).
    Called after the data module is set up and the model built, before anything is written. The model gets
    the checkpoint's `on_load_checkpoint` state and weights, as Lightning's own restore does next.
    """
    if path is None or str(path) in _UNSET:
        return
    stored = StoredRun.read(path, what)
    stored_target = (stored.config.get("model") or {}).get("_target_")
    target = cfg.model.get("_target_")
    if stored_target != target:
        short = (stored_target or "an unknown model").rsplit(".", 1)[-1]
        raise AdlabError(
            f"{what}={path}: a {short} checkpoint; this job builds {str(target).rsplit('.', 1)[-1]}; "
            "expected a checkpoint of this job's model (resume with the command that wrote it)"
        )
    # the rows and the preprocessing depend on the seed and the data settings, not on batch sizes or where
    # the file lives (the meta below compares what was read)
    settings = _differences(_split_settings(stored.config), _split_settings(resolved_job(cfg)))
    if settings:
        was, now = _split_settings(stored.config), _split_settings(resolved_job(cfg))
        shown = ", ".join(f"{key}={_get(was, key)!r} then, {_get(now, key)!r} now" for key in settings[:3])
        raise AdlabError(
            f"{what}={path}: trained with other data settings ({shown}); expected the seed and data.* it was "
            "trained with, so that it resumes on the same split"
        )
    differences = _differences(stored.meta.to_dict(), meta.to_dict())
    if differences:
        shown = ", ".join(differences[:4]) + (" ..." if len(differences) > 4 else "")
        raise AdlabError(
            f"{what}={path}: trained on other data or another split (data meta differs in {shown}; "
            f"dataset {stored.meta.dataset!r} then, {meta.dataset!r} now); expected the data.* and seed "
            "it was trained with"
        )
    model.on_load_checkpoint(stored.checkpoint)
    try:
        model.load_state_dict(stored.state_dict)
    except RuntimeError as error:
        raise AdlabError(
            f"{what}={path}: its weights do not fit the {type(model).__name__} this job's model.* builds "
            f"({_state_dict_problem(error)}); expected the model settings it was trained with"
        ) from None


def _state_dict_problem(error: RuntimeError) -> str:
    """The first concrete line of torch's "Error(s) in loading state_dict" message (a size mismatch ...)."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    concrete = [line for line in lines if not line.startswith("Error(s) in loading")]
    return excerpt((concrete or lines or ["weights do not match"])[0])


# data settings that do not change which rows land in which split, nor what preprocessing is fitted
_SPLIT_NEUTRAL = {"batch_size", "eval_batch_size", "resident", "drop_last", "path", "workers", "name"}


def _split_settings(config: dict[str, Any]) -> dict[str, Any]:
    """`seed` and the `data` settings that choose the rows of each split and the fitted preprocessing."""

    def keep(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: keep(v) for k, v in node.items() if k not in _SPLIT_NEUTRAL}
        return node

    return {"seed": config.get("seed"), "data": keep(config.get("data") or {})}


def resolved_job(cfg: DictConfig) -> dict[str, Any]:
    """The seed and data settings of a job config, resolved to plain containers."""
    return {
        "seed": cfg.get("seed"),
        "data": OmegaConf.to_container(cfg.data, resolve=True) if cfg.get("data") is not None else {},
    }


def _get(tree: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        tree = tree.get(part) if isinstance(tree, dict) else None
    return tree
