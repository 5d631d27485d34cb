"""The command line and the runs of a benchmark over seeds of one preset.

Shared by `bench_value.py` and `bench_segments.py`; not a script itself.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import tempfile
from pathlib import Path

from omegaconf import DictConfig

from adlab.harness.configs import compose
from adlab.train import train


def parse_args(
    doc: str, name: str, split_help: str, override_example: str, argv: list[str] | None = None
) -> argparse.Namespace:
    """`--seeds`, `--data-dir`, `--log-dir`, `--split`, `--json` and the extra overrides of script `name`
    (`doc` its docstring); `data_dir` and `log_dir` come back resolved, `log_dir` a new temporary folder
    when not given."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("ADLAB_DATA_DIR", "data")))
    parser.add_argument(
        "--log-dir", type=Path, default=None, help="run directories (default: a temporary one)"
    )
    parser.add_argument("--split", choices=("test", "val"), default="test", help=split_help)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    parser.add_argument("overrides", nargs="*", help=f"extra adlab-train overrides, e.g. {override_example}")
    args = parser.parse_args(argv)
    args.data_dir = args.data_dir.resolve()
    args.log_dir = (args.log_dir or Path(tempfile.mkdtemp(prefix=f"{name}-"))).resolve()
    return args


def train_run(overrides: list[str], output_dir: Path) -> tuple[DictConfig, dict[str, float]]:
    """The train config composed like the CLI with `overrides` and trained in `output_dir`: the config
    and the run's metrics. The harness's progress and tables go to stderr, so that stdout holds only the
    script's table or JSON."""
    logging.getLogger("lightning").setLevel(logging.ERROR)
    cfg = compose("train", overrides, output_dir)
    with contextlib.redirect_stdout(sys.stderr):
        return cfg, train(cfg)
