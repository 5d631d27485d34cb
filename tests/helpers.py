"""Helpers shared by the tests: compose configs as the CLI does, run an entry point as a user would, load
a script of `scripts/` as a module."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from omegaconf import DictConfig

from adlab.harness.configs import compose


def compose_config(config_name: str, overrides: list[str], output_dir: Path) -> DictConfig:
    """Compose a config as the CLI would (see `adlab.harness.configs.compose`)."""
    return compose(config_name, overrides, output_dir)


TINY = ["trainer.max_epochs=2", "extras.print_config=false", "callbacks.progress_bar=null"]


def purchase_log_overrides(path: Path, log_dir: Path, cutoff: str, holdout_end: str) -> list[str]:
    """A tiny value or segments run on a generated purchase log (`generate_transactions`' columns),
    writing under `log_dir`."""
    return [
        f"data.source.path={path}",
        "data.source.customer=customer_id",
        "data.source.date=date",
        "data.source.amount=amount",
        "data.source.quantity=quantity",
        f"data.source.cutoff={cutoff}",
        f"data.source.holdout_end={holdout_end}",
        f"paths.log_dir={log_dir}",
        *TINY,
    ]


def run_module(module: str, *args: str, timeout: int = 600):
    """Run `python -m <module> <args>` as a user would, offline; returns the CompletedProcess."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, "-m", module, *args], capture_output=True, text=True, env=env, timeout=timeout
    )


SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def load_script(name: str) -> ModuleType:
    """`scripts/<name>.py` loaded as module `name`, its helpers beside it (`_summary`, ...) importable."""
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(SCRIPTS))
        patch.setitem(sys.modules, name, module)  # dataclasses look their module up while it loads
        spec.loader.exec_module(module)
    return module
