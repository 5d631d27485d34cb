"""Helpers shared by the tests: compose configs as the CLI does, run an entry point as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from omegaconf import DictConfig

from adlab.harness.configs import compose


def compose_config(config_name: str, overrides: list[str], output_dir: Path) -> DictConfig:
    """Compose a config as the CLI would (see `adlab.harness.configs.compose`)."""
    return compose(config_name, overrides, output_dir)


TINY = ["trainer.max_epochs=2", "extras.print_config=false", "callbacks.progress_bar=null"]


def run_module(module: str, *args: str, timeout: int = 600):
    """Run `python -m <module> <args>` as a user would, offline; returns the CompletedProcess."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, "-m", module, *args], capture_output=True, text=True, env=env, timeout=timeout
    )
