"""Benchmark the ad-copy family on the clothing-reviews titles: val bits per character of the character
n-gram baseline, the LSTM and the GPT presets, their test-time generation metrics, and GPT generation speed
on CPU with and without the attention cache. Prints figures; `--json` prints one JSON object.

    adlab-data fetch clothing_reviews
    python scripts/bench_copy.py --minutes 4 [--gpt-overrides trainer=gpu ...] [--json]

Each model trains for at most `--minutes` (Lightning's max_time), then its best checkpoint (val/bpc) is
tested once; the n-gram baseline runs in the LSTM job (same split: the split depends only on the seed).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.core.global_hydra import GlobalHydra  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from omegaconf import open_dict  # noqa: E402

from adlab.families.copywriting.decoding import DecodingOptions, sample_copy  # noqa: E402
from adlab.harness.checkpoints import load_module  # noqa: E402
from adlab.harness.configs import config_dir, register_resolvers  # noqa: E402
from adlab.train import train  # noqa: E402

VAL_EVERY_STEPS = 50
GENERATION_KEYS = (
    "distinct_1",
    "distinct_2",
    "self_bleu",
    "novelty",
    "length_pass_rate",
    "keyword_inclusion",
)


def run_experiment(experiment: str, output_dir: Path, minutes: float, overrides: list[str]) -> dict:
    """`adlab-train experiment=<experiment>` for at most `minutes`; returns its metrics.json."""
    register_resolvers()
    GlobalHydra.instance().clear()
    seconds = int(minutes * 60)
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose(
            config_name="train",
            overrides=[
                f"experiment={experiment}",
                f"trainer.max_time=00:00:{seconds // 60:02d}:{seconds % 60:02d}",
                "trainer.max_epochs=1000",
                # a time budget may end inside the first epoch: validate (and checkpoint) every N steps
                "trainer.min_epochs=0",
                f"+trainer.val_check_interval={VAL_EVERY_STEPS}",
                "trainer.check_val_every_n_epoch=null",
                "extras.print_config=false",
                "callbacks.progress_bar=null",
                *overrides,
            ],
            return_hydra_config=True,
        )
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(output_dir)
        cfg.hydra.runtime.cwd = os.getcwd()
        cfg.hydra.job.num = 0
    HydraConfig().set_config(cfg)
    started = time.perf_counter()
    train(cfg)
    metrics = json.loads((output_dir / "metrics.json").read_text())
    metrics["time/job_seconds"] = time.perf_counter() - started
    return metrics


def generation_speed(
    checkpoint: Path, prompts: int, max_chars: int, use_cache: bool, repeats: int = 2
) -> float:
    """Tokens sampled per second on CPU for `prompts` texts of up to `max_chars` characters (best of repeats)."""
    model = load_module(checkpoint, "cpu")
    rng = np.random.default_rng(0)
    batch = [model._prompt(ids, None) for ids in model.condition_ids({}, prompts, rng)]
    options = DecodingOptions(max_chars=max_chars, use_cache=use_cache)
    best = 0.0
    for repeat in range(repeats):
        started = time.perf_counter()
        _, sampled = sample_copy(
            model.net, model.tokenizer, batch, options, torch.Generator().manual_seed(repeat)
        )
        best = max(best, sampled / (time.perf_counter() - started))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=4.0, help="training time per neural model")
    parser.add_argument(
        "--output-dir", type=Path, default=None, help="where the runs go (default: a temp dir)"
    )
    parser.add_argument("--lstm-overrides", nargs="*", default=[], help="extra overrides of the LSTM job")
    parser.add_argument("--gpt-overrides", nargs="*", default=[], help="extra overrides of the GPT job")
    parser.add_argument("--speed-prompts", type=int, default=32, help="texts per generation-speed batch")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    root = args.output_dir or Path(tempfile.mkdtemp(prefix="bench_copy_"))
    lstm = run_experiment("copy_lstm", root / "copy_lstm", args.minutes, args.lstm_overrides)
    gpt = run_experiment("copy_gpt", root / "copy_gpt", args.minutes, ["baselines=none", *args.gpt_overrides])
    torch.set_num_threads(args.threads or torch.get_num_threads())
    checkpoint = root / "copy_gpt" / "checkpoints" / "best.ckpt"
    speed = {
        "gpt_cached": generation_speed(checkpoint, args.speed_prompts, 30, use_cache=True),
        "gpt_uncached": generation_speed(checkpoint, args.speed_prompts, 30, use_cache=False),
        "lstm": generation_speed(
            root / "copy_lstm" / "checkpoints" / "best.ckpt", args.speed_prompts, 30, True
        ),
    }
    ngram = lstm["baseline/ngram/val/bpc"]
    result = {
        "device": "cuda" if any("gpu" in o for o in args.gpt_overrides) else "cpu",
        "torch_threads": torch.get_num_threads(),
        "train_minutes_per_model": args.minutes,
        "ngram_order": lstm.get("baseline/ngram/val/order"),
        "ngram_val_bpc": ngram,
        "ngram_test_bpc": lstm["baseline/ngram/test/bpc"],
        "lstm_val_bpc": lstm["val/bpc"],
        "lstm_test_bpc": lstm["test/bpc"],
        "gpt_val_bpc": gpt["val/bpc"],
        "gpt_test_bpc": gpt["test/bpc"],
        "gpt_over_ngram_val_bpc": gpt["val/bpc"] / ngram,
        "lstm_over_ngram_val_bpc": lstm["val/bpc"] / ngram,
        "lstm_generation": {key: lstm.get(f"test/{key}") for key in GENERATION_KEYS},
        "gpt_generation": {key: gpt.get(f"test/{key}") for key in GENERATION_KEYS},
        "generation_tokens_per_second_cpu": speed,
        "fit_seconds": {"lstm": lstm.get("time/fit_seconds"), "gpt": gpt.get("time/fit_seconds")},
        "runs": str(root),
        "command": " ".join(["python", *sys.argv]),
    }
    if args.json:
        print(json.dumps(result))
        return
    for key, value in result.items():
        print(f"{key:>34}: {value}")


if __name__ == "__main__":
    main()
