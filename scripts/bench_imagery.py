"""Benchmark the imagery presets on Fashion-MNIST through the real harness: test accuracy and wall time.

    python scripts/bench_imagery.py [--presets cpu gpu gpu_fast] [--threads 2] [--json]

Each preset is an `adlab-train experiment=...` run composed exactly like the CLI and passed to
`adlab.train.train` (fit, select on val, test the selected checkpoint once). Reported per preset: test
accuracy and macro F1, val accuracy, wall time of the whole job (data loading, fit, val, test), fit time,
median training-epoch time, and the machine's load average before and after (a busy shared CPU makes
every figure slower). Needs `adlab-data fetch fashion_mnist` (or `--data-dir`). `--json` prints one
JSON object instead of the table.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")

import pandas as pd  # noqa: E402
import torch  # noqa: E402

from adlab.harness.configs import compose  # noqa: E402
from adlab.train import train  # noqa: E402

# name -> (experiment, extra overrides, goal: (metric threshold, wall-time limit in seconds or None))
PRESETS: dict[str, tuple[str, list[str], tuple[float, float | None]]] = {
    "cpu": ("imagery_fashion_cpu", [], (0.93, 600.0)),
    "gpu": ("imagery_fashion", [], (0.955, None)),
    # the best preset's recipe on a shorter schedule: the time-to-0.95 goal
    "gpu_fast": ("imagery_fashion", ["trainer.max_epochs=12"], (0.95, 30.0)),
}


def device_name(experiment_overrides: list[str]) -> str:
    if torch.cuda.is_available() and not any("trainer=cpu" in o for o in experiment_overrides):
        return torch.cuda.get_device_name(0)
    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads"


def run_preset(name: str, data_dir: Path, output_dir: Path, extra: list[str]) -> dict:
    """Train one preset through `adlab.train.train`; return its figures."""
    experiment, overrides, (threshold, limit) = PRESETS[name]
    overrides = [f"experiment={experiment}", *overrides, *extra]
    harness = [
        f"paths.data_dir={data_dir}",
        "extras.print_config=false",
        "+callbacks.epoch_timer._target_=adlab.harness.callbacks.EpochTimer",
    ]
    cfg = compose("train", [*overrides, *harness], output_dir)
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    metrics = train(cfg)
    wall = time.perf_counter() - started
    logged = pd.read_csv(output_dir / "csv" / "metrics.csv")
    epochs = (
        logged["time/train_epoch_seconds"].dropna().tolist() if "time/train_epoch_seconds" in logged else []
    )
    accuracy = float(metrics["test/accuracy"])
    return {
        "preset": name,
        "command": "adlab-train " + " ".join(overrides),
        "device": device_name(overrides),
        "test_accuracy": accuracy,
        "test_macro_f1": float(metrics["test/macro_f1"]),
        "val_accuracy": float(metrics["val/accuracy"]),
        "epochs": len(epochs),
        "wall_seconds": wall,
        "fit_seconds": float(metrics["time/fit_seconds"]),
        "median_train_epoch_seconds": statistics.median(epochs) if epochs else None,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg()[0],
        "goal": f"test accuracy >= {threshold}" + (f" within {limit:.0f} s" if limit else ""),
        "goal_met": accuracy >= threshold and (limit is None or wall <= limit),
        "output_dir": str(output_dir),
    }


def print_table(results: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="imagery presets on Fashion-MNIST (official 10000-image test set)")
    for column in (
        "preset",
        "test acc",
        "macro F1",
        "val acc",
        "epochs",
        "s/epoch",
        "fit s",
        "wall s",
        "load",
        "goal",
    ):
        table.add_column(column, justify="left" if column in ("preset", "goal") else "right")
    for r in results:
        per_epoch = r["median_train_epoch_seconds"]
        table.add_row(
            r["preset"],
            f"{r['test_accuracy']:.4f}",
            f"{r['test_macro_f1']:.4f}",
            f"{r['val_accuracy']:.4f}",
            str(r["epochs"]),
            f"{per_epoch:.1f}" if per_epoch else "",
            f"{r['fit_seconds']:.0f}",
            f"{r['wall_seconds']:.0f}",
            f"{r['load_average_before']:.1f}->{r['load_average_after']:.1f}",
            f"{r['goal']}: {'met' if r['goal_met'] else 'NOT met'}",
        )
    Console().print(table)
    for r in results:
        print(f"{r['preset']}: {r['command']}  [{r['device']}]")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--presets",
        nargs="+",
        choices=sorted(PRESETS),
        default=None,
        help="default: gpu and gpu_fast on a GPU, else cpu",
    )
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("ADLAB_DATA_DIR", "data")))
    parser.add_argument(
        "--output-dir", type=Path, default=None, help="run directories (default: a temporary folder)"
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)"
    )
    parser.add_argument(
        "--override", action="append", default=[], help="extra Hydra override for every preset"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    presets = args.presets or (["gpu", "gpu_fast"] if torch.cuda.is_available() else ["cpu"])
    data_dir = args.data_dir.resolve()
    if not (data_dir / "fashion_mnist").is_dir():
        sys.exit(
            f"{data_dir}/fashion_mnist not found: run `adlab-data fetch fashion_mnist` or pass --data-dir"
        )
    # with --json, stdout carries the JSON object alone: the runs' own tables and progress go to stderr
    quiet = contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext()
    with tempfile.TemporaryDirectory() as scratch, quiet:
        root = args.output_dir or Path(scratch)
        results = [run_preset(name, data_dir, root / name, args.override) for name in presets]
    summary = {"results": results, "python": platform.python_version(), "torch": torch.__version__}
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print_table(results)


if __name__ == "__main__":
    main()
