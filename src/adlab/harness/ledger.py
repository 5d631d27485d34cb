"""The results ledger: one JSON line per finished run, appended to `<outputs root>/ledger.jsonl`.

The outputs root is the folder that holds a job's run folders: `paths.log_dir` (`./outputs`) for runs placed
there, and the folder a user names for them otherwise. The MLflow store of `logger=mlflow` sits there too.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from adlab.errors import AdlabError

try:
    import fcntl
except ImportError:  # Windows: O_APPEND alone
    fcntl = None  # type: ignore[assignment]


def job_overrides() -> list[str]:
    """The command-line overrides of the current Hydra job (empty outside Hydra)."""
    try:
        from hydra.core.hydra_config import HydraConfig

        return list(HydraConfig.get().overrides.task)
    except (ValueError, AttributeError):
        return []


def _hydra_dirs() -> tuple[str | None, Path | None]:
    """Hydra's mode of the current job (`RUN` or `MULTIRUN`) and its sweep folder; (None, None) outside Hydra."""
    try:
        from hydra.core.hydra_config import HydraConfig

        hydra = HydraConfig.get()
        mode = str(hydra.mode.name if hasattr(hydra.mode, "name") else hydra.mode)
        return mode, Path(hydra.sweep.dir) if hydra.sweep.dir else None
    except (ValueError, AttributeError):
        return None, None


def outputs_root(cfg: DictConfig) -> Path:
    """The folder that holds this job's run folder: where its ledger line and MLflow runs go.

    `paths.log_dir` when the run folder lies below it or `paths.log_dir` is set on the command line;
    otherwise (`hydra.run.dir=DIR` or `hydra.sweep.dir=DIR` elsewhere) the folder that holds DIR.
    """
    log_dir = Path(cfg.paths.log_dir).absolute()
    output_dir = Path(cfg.paths.output_dir).absolute()
    if output_dir.is_relative_to(log_dir) or any(
        override.lstrip("+").startswith("paths.log_dir=") for override in job_overrides()
    ):
        return log_dir
    mode, sweep_dir = _hydra_dirs()
    if mode == "MULTIRUN" and sweep_dir is not None and output_dir.is_relative_to(sweep_dir.absolute()):
        return sweep_dir.absolute().parent
    return output_dir.parent


def ledger_path(cfg: DictConfig) -> Path:
    """`paths.ledger` when set, else `<outputs root>/ledger.jsonl` (`outputs_root`)."""
    configured = cfg.paths.get("ledger")
    return Path(configured) if configured else outputs_root(cfg) / "ledger.jsonl"


def append_to_ledger(cfg: DictConfig, metrics: dict[str, Any], ledger: str | Path | None = None) -> Path:
    """Append time, run directory, experiment, overrides, seed and the val/test metrics of a run.

    The line is written to a file opened with O_APPEND under an exclusive `flock`, in as many `write`s as
    it takes, so concurrent jobs (a multirun's, or two multiruns') never interleave or lose lines.
    """
    path = Path(ledger) if ledger else ledger_path(cfg)
    entry = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "run_dir": str(cfg.paths.output_dir),
        "experiment": cfg.get("experiment_name"),
        "overrides": job_overrides(),
        "seed": cfg.get("seed"),
        "metrics": {
            k: (None if isinstance(v, float) and not math.isfinite(v) else float(v))
            for k, v in metrics.items()
            if k.startswith(("val/", "test/", "baseline/"))
        },
    }
    line = (json.dumps(entry) + "\n").encode()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _append_locked(path, line)
    except OSError as error:
        raise AdlabError(f"{path}: could not append this run's line ({error.strerror or error})") from None
    return path


def _append_locked(path: Path, data: bytes) -> None:
    """Append `data` whole under an exclusive lock (`os.write` may write less than it is given)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        if fcntl is not None:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
        view = memoryview(data)
        while view:
            view = view[os.write(descriptor, view) :]
    finally:
        os.close(descriptor)  # closing releases the lock
