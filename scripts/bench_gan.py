"""Benchmark the creatives family on Fashion-MNIST: the DCGAN baseline against the improved SN-ResNet preset,
both trained for the same number of epochs and scored by the same adlab classifier (FID/KID features, CAS),
beside the real-versus-real floor. Prints figures; `--json` prints one JSON object.

    adlab-data fetch fashion_mnist
    python scripts/bench_gan.py --epochs 2 [--evaluator-ckpt CKPT] [--overrides trainer=gpu ...] [--json]

Without `--evaluator-ckpt` the evaluator is trained first (`experiment=imagery_fashion_cpu`,
`--evaluator-epochs`). Goals (issue 8): CAS >= 0.90; improved FID <= 0.5 x DCGAN FID.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")

from adlab.harness.configs import compose  # noqa: E402
from adlab.train import train  # noqa: E402

PRESETS = {"dcgan": "creative_dcgan", "improved": "creative_sngan"}
QUIET = ["extras.print_config=false", "callbacks.progress_bar=null", "+trainer.enable_progress_bar=false"]


def run(experiment: str, output_dir: Path, overrides: list[str]) -> dict:
    """`adlab-train experiment=<experiment> <overrides>` into `output_dir`; its metrics plus wall time."""
    started = time.perf_counter()
    # the harness prints its metrics table on stdout; keep stdout for this script's own output
    with contextlib.redirect_stdout(sys.stderr):
        train(compose("train", [f"experiment={experiment}", *QUIET, *overrides], output_dir))
    metrics = json.loads((output_dir / "metrics.json").read_text())
    metrics["time/job_seconds"] = time.perf_counter() - started
    return metrics


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--epochs", type=int, default=2, help="training epochs of each GAN preset")
    parser.add_argument(
        "--train-batches",
        type=int,
        help="train on this many batches per epoch (a CPU-sized figure; default: all)",
    )
    parser.add_argument(
        "--eval-batches",
        type=int,
        help="score on this many val/test batches of data.eval_batch_size (default: all)",
    )
    parser.add_argument("--evaluator-ckpt", help="an imagery classifier checkpoint (default: train one)")
    parser.add_argument("--evaluator-epochs", type=int, default=20, help="epochs when training the evaluator")
    parser.add_argument("--output-dir", default="outputs/bench_gan", help="run directories go here")
    parser.add_argument("--overrides", nargs="*", default=[], help="extra overrides for every GAN job")
    parser.add_argument(
        "--evaluator-overrides", nargs="*", default=[], help="extra overrides for the evaluator"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    root = Path(args.output_dir)
    figures: dict = {"epochs": args.epochs, "overrides": args.overrides}

    evaluator = args.evaluator_ckpt
    if evaluator is None:
        metrics = run(
            "imagery_fashion_cpu",
            root / "evaluator",
            [
                f"trainer.max_epochs={args.evaluator_epochs}",
                "model.misclassified_shown=0",
                *args.evaluator_overrides,
            ],
        )
        evaluator = str(root / "evaluator" / "checkpoints" / "best.ckpt")
        figures["evaluator"] = {
            "test/accuracy": metrics["test/accuracy"],
            "fit_seconds": metrics["time/fit_seconds"],
        }
    figures["evaluator_ckpt"] = evaluator

    limits = []
    if args.train_batches:
        limits.append(f"+trainer.limit_train_batches={args.train_batches}")
    if args.eval_batches:
        limits += [
            f"+trainer.limit_val_batches={args.eval_batches}",
            f"+trainer.limit_test_batches={args.eval_batches}",
        ]
    figures["train_batches"], figures["eval_batches"] = args.train_batches, args.eval_batches
    for name, experiment in PRESETS.items():
        metrics = run(
            experiment,
            root / name,
            [
                f"trainer.max_epochs={args.epochs}",
                f"model.evaluator_ckpt={evaluator}",
                *limits,
                *args.overrides,
            ],
        )
        keep = (
            "val/fid",
            "val/generated_class_accuracy",
            "test/generated_class_accuracy",
            "test/evaluator_accuracy",
            "test/fid_noise",
            "test/fid",
            "test/kid",
            "test/cas",
            "test/fid_floor",
            "test/kid_floor",
            "test/diversity_ratio_min",
            "test/collapsed_classes",
            "time/fit_seconds",
        )
        figures[name] = {key: metrics[key] for key in keep if key in metrics}
        figures[name]["cas_per_class"] = {
            key.removeprefix("test/cas_"): value
            for key, value in metrics.items()
            if key.startswith("test/cas_")
        }
        # fit time includes each epoch's validation (sampling and scoring the val images)
        figures[name]["fit_seconds_per_epoch"] = metrics["time/fit_seconds"] / args.epochs

    dcgan, improved = figures["dcgan"], figures["improved"]
    figures["fid_ratio"] = improved["test/fid"] / dcgan["test/fid"]
    figures["goal_cas_0.90"] = improved.get("test/cas", 0.0) >= 0.90
    figures["goal_fid_ratio_0.5"] = figures["fid_ratio"] <= 0.5
    if args.json:
        print(json.dumps(figures))
        return
    print(f"evaluator: {evaluator}")
    print(f"{'preset':10s} {'FID':>8s} {'floor':>8s} {'KID':>8s} {'CAS':>6s} {'div.min':>8s} {'s/epoch':>8s}")
    for name in PRESETS:
        row = figures[name]
        print(
            f"{name:10s} {row['test/fid']:8.3f} {row.get('test/fid_floor', float('nan')):8.3f} "
            f"{row['test/kid']:8.4f} {row.get('test/cas', float('nan')):6.3f} "
            f"{row['test/diversity_ratio_min']:8.2f} {row['fit_seconds_per_epoch']:8.1f}"
        )
    print(
        f"FID ratio improved/DCGAN: {figures['fid_ratio']:.2f} (goal <= 0.5: {figures['goal_fid_ratio_0.5']})"
    )
    print(f"CAS >= 0.90: {figures['goal_cas_0.90']}")


if __name__ == "__main__":
    sys.exit(main())
