"""The results ledger: one JSON line per finished run, appended to `<paths.log_dir>/ledger.jsonl`."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig


def job_overrides() -> list[str]:
    """The command-line overrides of the current Hydra job (empty outside Hydra)."""
    try:
        from hydra.core.hydra_config import HydraConfig

        return list(HydraConfig.get().overrides.task)
    except (ValueError, AttributeError):
        return []


def append_to_ledger(cfg: DictConfig, metrics: dict[str, Any], ledger: str | Path | None = None) -> Path:
    """Append time, run directory, experiment, overrides, seed and the val/test metrics of a run.

    One `write` of one line to a file opened with O_APPEND, so concurrent jobs on one file system do
    not interleave their lines.
    """
    path = Path(ledger or cfg.paths.get("ledger") or Path(cfg.paths.log_dir) / "ledger.jsonl")
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
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(entry) + "\n").encode()
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(descriptor, line)
    finally:
        os.close(descriptor)
    return path
