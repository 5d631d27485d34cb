"""Benchmark the customer value preset on CDNOW beside its baselines: one table over seeds.

    .venv-peers/bin/python scripts/bench_value.py [--seeds 1 2 3 4 5] [--split val] [--json] [OVERRIDE ...]

Each seed is one `adlab-train experiment=value_cdnow seed=S` run, composed like the CLI and passed to
`adlab.train.train`: the ZILN network is fitted on the seed's train customers and selected on its val
customers; the baselines (BG/NBD + Gamma-Gamma, boosting, the naive spend rate) are fitted on the same train
customers in the same run. Every figure is measured on the seed's `--split` customers (20% of the 23570
each): test by default; `val` runs with `test=false` (the network is never tested) and reads only val
figures, for choosing the preset's values (extra arguments are overrides, e.g. `model.members=8`); the
baselines' test figures still land in each temporary run's metrics.json (the harness scores both splits),
unread.
Reported per method: the mean and standard deviation over seeds of normalized Gini, Spearman, top-decile
capture, decile MAPE, total-spend error (signed) and AUROC of "buys again", then the goal of issue 18:
the model's Gini and Spearman at least 1.05x the best baseline's, |total-spend error| within 5%, decile
MAPE below every baseline's. BG/NBD needs pymc-marketing (`make peers`, then run with .venv-peers);
without it that row is missing. Needs `adlab-data fetch cdnow` (or `--data-dir`).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")

from _bench import parse_args, train_run  # noqa: E402
from _summary import mean_std_cell, metrics_over_seeds  # noqa: E402

METRICS = ("normalized_gini", "spearman", "top10_capture", "decile_mape", "total_spend_error", "auroc")
METHODS = {
    "ziln": "",
    "bgnbd": "baseline/bgnbd/",
    "boosting": "baseline/boosting/",
    "naive": "baseline/naive/",
}


def run_seed(
    seed: int, data_dir: Path, log_dir: Path, extra: list[str], split: str = "test"
) -> dict[str, dict[str, float]]:
    """One value_cdnow run; method -> `split` metric -> value (methods that did not run are left out)."""
    overrides = [
        *(["test=false"] if split == "val" else []),
        "experiment=value_cdnow",
        f"seed={seed}",
        f"paths.data_dir={data_dir}",
        f"paths.log_dir={log_dir}",
        "extras.print_config=false",
        "callbacks.progress_bar=null",
        *extra,
    ]
    _, metrics = train_run(overrides, log_dir / f"seed_{seed}")
    results = {}
    for method, prefix in METHODS.items():
        values = {name: metrics.get(f"{prefix}{split}/{name}") for name in METRICS}
        if all(value is not None for value in values.values()):
            results[method] = {name: float(value) for name, value in values.items()}
    return results


def summarise(runs: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, dict[str, float]]]:
    """method -> metric -> {"mean", "std", "seeds"} over the runs that have the method."""
    summary: dict[str, dict[str, dict[str, float]]] = {}
    for method in METHODS:
        present = [run[method] for run in runs if method in run]
        if present:
            summary[method] = metrics_over_seeds(present, METRICS)
    return summary


def goal(summary: dict[str, dict[str, dict[str, float]]]) -> dict[str, object]:
    """Issue 18's goal, checked on the means over seeds."""
    model = {name: summary["ziln"][name]["mean"] for name in METRICS}
    baselines = {m: {n: v["mean"] for n, v in s.items()} for m, s in summary.items() if m != "ziln"}
    best_gini = max(b["normalized_gini"] for b in baselines.values())
    best_spearman = max(b["spearman"] for b in baselines.values())
    return {
        "gini_ratio": model["normalized_gini"] / best_gini,
        "spearman_ratio": model["spearman"] / best_spearman,
        "gini_and_spearman_at_least_1.05x": model["normalized_gini"] >= 1.05 * best_gini
        and model["spearman"] >= 1.05 * best_spearman,
        "total_spend_error_within_5%": abs(model["total_spend_error"]) <= 0.05,
        "decile_mape_below_every_baseline": all(
            model["decile_mape"] < b["decile_mape"] for b in baselines.values()
        ),
        "baselines": sorted(baselines),
    }


def print_table(
    summary: dict[str, dict[str, dict[str, float]]], checks: dict[str, object], wall: float, split: str
) -> None:
    seeds = max(v["seeds"] for s in summary.values() for v in s.values())
    print(f"CDNOW {split} customers, mean ± std over {seeds} seed(s); wall time {wall:.0f} s")
    print(f"{'method':<10}" + "".join(f"{name:>22}" for name in METRICS))
    for method, scores in summary.items():
        cells = "".join(mean_std_cell(scores[n]) for n in METRICS)
        print(f"{method:<10}{cells}")
    print(
        f"goal: Gini {checks['gini_ratio']:.3f}x and Spearman {checks['spearman_ratio']:.3f}x the best baseline "
        f"(>= 1.05x: {checks['gini_and_spearman_at_least_1.05x']}); |total-spend error| <= 5%: "
        f"{checks['total_spend_error_within_5%']}; decile MAPE below every baseline: "
        f"{checks['decile_mape_below_every_baseline']} (baselines: {', '.join(checks['baselines'])})"
    )


def main() -> None:
    args = parse_args(
        __doc__, "bench_value", "val: test=false, val figures only", "model.sequence_encoder=gru"
    )
    started = time.perf_counter()
    runs = [run_seed(seed, args.data_dir, args.log_dir, args.overrides, args.split) for seed in args.seeds]
    wall = time.perf_counter() - started
    summary = summarise(runs)
    checks = goal(summary)
    if args.json:
        print(
            json.dumps(
                {
                    "split": args.split,
                    "overrides": args.overrides,
                    "seeds": args.seeds,
                    "wall_seconds": wall,
                    "runs": runs,
                    "summary": summary,
                    "goal": checks,
                }
            )
        )
    else:
        print_table(summary, checks, wall, args.split)


if __name__ == "__main__":
    main()
