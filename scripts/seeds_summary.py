"""Mean ± std of the test metrics of a multirun's jobs (the seeds protocol).

    adlab-train experiment=propensity_coil -m seed=1,2,3,4,5 hydra.sweep.dir=outputs/coil_seeds
    python scripts/seeds_summary.py outputs/coil_seeds [--metric top20_hits]

Reads `<dir>/*/metrics.json` (and each job's seed from `.hydra/config.yaml`), prints one row per
metric for the model and each baseline (std is the sample standard deviation, n - 1), then the
per-seed values of `--metric`. Jobs that differ in more than the seed (a multirun such as
`seed=1,2,3,4,5 model.ema_decay=0.95,0.99`, read from `.hydra/overrides.yaml`) get one table each.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

import yaml


def _read_yaml(path: Path) -> Any:
    """The content of a YAML file, None when there is no such file."""
    return yaml.safe_load(path.read_text()) if path.is_file() else None


def load_settings(directory: Path) -> list[tuple[str, str, dict[str, float]]]:
    """(setting, seed or job folder name, metrics) of every finished job under `directory`, in setting
    then seed order; the setting is the job's command-line overrides other than the seed."""
    runs = []
    for path in sorted(directory.glob("*/metrics.json")):
        hydra = path.parent / ".hydra"
        config = _read_yaml(hydra / "config.yaml") or {}
        overrides = _read_yaml(hydra / "overrides.yaml") or []
        setting = " ".join(o for o in overrides if not o.lstrip("+~").startswith("seed="))
        seed = config.get("seed")
        runs.append(
            (setting, str(seed) if seed is not None else path.parent.name, json.loads(path.read_text()))
        )
    return sorted(runs, key=lambda run: (run[0], len(run[1]), run[1]))


def summarise(
    runs: list[tuple[str, dict[str, float]]], stage: str = "test"
) -> dict[str, dict[str, list[float]]]:
    """scorer ("model" or baseline name) -> metric -> values over runs, for keys of `stage`."""
    table: dict[str, dict[str, list[float]]] = {}
    for _, metrics in runs:
        for key, value in metrics.items():
            parts = key.split("/")
            if parts[0] == stage and len(parts) == 2:
                scorer, name = "model", parts[1]
            elif parts[0] == "baseline" and len(parts) == 4 and parts[2] == stage:
                scorer, name = parts[1], parts[3]
            else:
                continue
            table.setdefault(scorer, {}).setdefault(name, []).append(float(value))
    return table


def _mean_std(values: list[float]) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.4g} ± {std:.2g}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path, help="a multirun directory (hydra.sweep.dir)")
    parser.add_argument("--metric", default="top20_hits", help="metric listed per seed")
    parser.add_argument("--stage", default="test", choices=("val", "test"))
    args = parser.parse_args()
    runs = load_settings(args.directory)
    if not runs:
        raise SystemExit(f"{args.directory}: no */metrics.json found")
    settings = list(dict.fromkeys(setting for setting, _, _ in runs))
    for setting in settings:
        if len(settings) > 1:
            print(f"== {setting or '(no overrides)'}")
        print_table([(seed, metrics) for s, seed, metrics in runs if s == setting], args)
        if len(settings) > 1:
            print()


def print_table(runs: list[tuple[str, dict[str, float]]], args: argparse.Namespace) -> None:
    """The mean ± std table of `runs` (one setting), then `args.metric` per seed."""
    table = summarise(runs, args.stage)
    scorers = ["model", *sorted(s for s in table if s != "model")]
    names = sorted({name for scorer in table.values() for name in scorer})
    print(f"{len(runs)} runs in {args.directory} ({args.stage}; mean ± std)")
    print("metric".ljust(22) + "".join(scorer.rjust(20) for scorer in scorers))
    for name in names:
        cells = [_mean_std(table[s][name]) if name in table.get(s, {}) else "" for s in scorers]
        print(name.ljust(22) + "".join(cell.rjust(20) for cell in cells))
    print(f"\n{args.metric} per seed")
    for seed, metrics in runs:
        values = [metrics.get(f"{args.stage}/{args.metric}")]
        values += [metrics.get(f"baseline/{s}/{args.stage}/{args.metric}") for s in scorers[1:]]
        print(
            f"seed {seed}: "
            + "  ".join(f"{s}={v:g}" for s, v in zip(scorers, values, strict=True) if v is not None)
        )


if __name__ == "__main__":
    main()
