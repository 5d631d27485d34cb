"""Benchmark the harness: (a) adlab's training epoch against a hand-written PyTorch loop on the same MLP,
(b) batches by tensor indexing against a per-row DataLoader. Prints figures; `--json` prints one JSON object.

    python scripts/bench_harness.py [--rows 200000] [--batch-size 256] [--epochs 4] [--json]

Data: a synthetic table with CoIL 2000's schema (2 nominal columns, 83 ordinal codes), so the MLP is the
flagship's own (`model=propensity` defaults) and the row count is large enough for stable epoch times.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")

import pandas as pd  # noqa: E402
import torch  # noqa: E402

from adlab.data.synthetic import write_coil_like  # noqa: E402
from adlab.harness.configs import compose  # noqa: E402
from adlab.train import train  # noqa: E402


def make_table(folder: Path, rows: int, seed: int = 0) -> Path:
    """CoIL-shaped synthetic customers (80% official train) with a learnable purchase signal."""
    write_coil_like(
        folder, train_rows=int(rows * 0.8), test_rows=rows - int(rows * 0.8), subtypes=40, seed=seed
    )
    return folder


def harness_epochs(data_dir: Path, output_dir: Path, batch_size: int, epochs: int):
    """Run the real `train()` on the flagship experiment; returns (epoch times, datamodule, model config)."""
    overrides = [
        "experiment=propensity_coil",
        # one network's epochs (not the preset's five cross-fitted folds)
        "fit=plain",
        f"paths.data_dir={data_dir}",
        f"paths.log_dir={output_dir.parent}",
        f"data.batch_size={batch_size}",
        f"trainer.max_epochs={epochs}",
        "callbacks.early_stopping=null",
        "+callbacks.epoch_timer._target_=adlab.harness.callbacks.EpochTimer",
        "baselines=none",
        "extras.print_config=false",
    ]
    cfg = compose("train", overrides, output_dir)
    # the harness prints its metrics table on stdout; keep stdout for this script's figures
    with contextlib.redirect_stdout(sys.stderr):
        train(cfg)
    logged = pd.read_csv(output_dir / "csv" / "metrics.csv")
    return logged["time/train_epoch_seconds"].dropna().tolist(), cfg


def hand_loop_epochs(cfg, batch_size: int, epochs: int) -> list[float]:
    """The same model, loss, optimizer and batch size in a plain PyTorch loop over the same tensors."""
    from hydra.utils import instantiate

    datamodule = instantiate(cfg.data, seed=cfg.seed, _convert_="partial")
    datamodule.setup("fit")
    model = instantiate(cfg.model, meta=datamodule.meta, _convert_="partial")
    optimizer = model.configure_optimizers()
    if isinstance(optimizer, dict):
        optimizer = optimizer["optimizer"]
    tensors = datamodule.tensors["train"]
    categorical, numeric, target = tensors["categorical"], tensors["numeric"], tensors["target"]
    times = []
    for epoch in range(epochs):
        start = time.perf_counter()
        model.train()
        order = torch.randperm(len(target), generator=torch.Generator().manual_seed(epoch))
        for begin in range(0, len(order), batch_size):
            index = order[begin : begin + batch_size]
            # exactly the harness's training_step: every ensemble member's loss on the batch
            loss = model.loss(model.member_logits(categorical[index], numeric[index]), target[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        times.append(time.perf_counter() - start)
    return times


def loader_pass_seconds(datamodule, batch_size: int) -> tuple[float, float]:
    """One pass over the training split: tensor-indexed batches vs a per-row Dataset + default collate."""
    tensors = datamodule.tensors["train"]

    class Rows(torch.utils.data.Dataset):
        def __len__(self):
            return len(tensors["target"])

        def __getitem__(self, i):
            return {name: tensor[i] for name, tensor in tensors.items()}

    def timed(loader) -> float:
        start = time.perf_counter()
        for _ in loader:
            pass
        return time.perf_counter() - start

    indexed = datamodule.loader("train")
    indexed.batch_size = batch_size
    per_row = torch.utils.data.DataLoader(Rows(), batch_size=batch_size, shuffle=True)
    return min(timed(indexed) for _ in range(3)), timed(per_row)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1, help="torch threads for both (1 is least noisy)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as scratch:
        data_dir = make_table(Path(scratch) / "data", args.rows)
        # hand loop before and after the harness, so that a change in machine load hits both sides
        harness, cfg = harness_epochs(data_dir, Path(scratch) / "run", args.batch_size, args.epochs)
        hand = hand_loop_epochs(cfg, args.batch_size, args.epochs)[1:]
        harness += harness_epochs(data_dir, Path(scratch) / "run2", args.batch_size, args.epochs)[0]
        hand += hand_loop_epochs(cfg, args.batch_size, args.epochs)[1:]
        from hydra.utils import instantiate

        datamodule = instantiate(cfg.data, seed=cfg.seed, _convert_="partial")
        datamodule.setup("fit")
        indexed, per_row = loader_pass_seconds(datamodule, args.batch_size)
    # medians over both rounds; each hand-loop round drops its first (warm-up) epoch
    harness_epoch = statistics.median(harness)
    hand_epoch = statistics.median(hand)
    figures = {
        "rows_train": int(len(datamodule.tensors["train"]["target"])),
        "batch_size": args.batch_size,
        "threads": torch.get_num_threads(),
        "harness_epoch_s": round(harness_epoch, 4),
        "hand_loop_epoch_s": round(hand_epoch, 4),
        "harness_over_hand_ratio": round(harness_epoch / hand_epoch, 4),
        "tensor_indexing_pass_s": round(indexed, 4),
        "per_row_loader_pass_s": round(per_row, 4),
        "indexing_speedup": round(per_row / indexed, 1),
    }
    if args.json:
        print(json.dumps(figures))
        return
    print(f"training rows {figures['rows_train']}, batch {args.batch_size}, {figures['threads']} threads")
    print(
        f"(a) epoch time: harness {harness_epoch:.3f} s, hand loop {hand_epoch:.3f} s, ratio {figures['harness_over_hand_ratio']:.3f} (goal <= 1.10)"
    )
    print(
        f"(b) batches: tensor indexing {indexed:.3f} s, per-row DataLoader {per_row:.3f} s, speed-up {figures['indexing_speedup']}x (goal >= 20x)"
    )


if __name__ == "__main__":
    sys.exit(main())
