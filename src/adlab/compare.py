"""`adlab-compare DIR... [--ledger FILE]`: a leaderboard of runs, grouped by the overrides that differ.

Reads every `metrics.json` below the given directories (single runs and multiruns) with the run's
`.hydra/overrides.yaml`, or the lines of a results ledger. Runs that differ only by `seed` fall in one
group; each group gets n, mean and standard deviation of the chosen metrics. Writes `leaderboard.csv`,
`leaderboard.md` and `leaderboard.png` (metric by group with error bars) into `--out`.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from adlab.errors import AdlabError

IGNORED_PREFIXES = ("seed=", "hydra.", "hydra/", "paths.", "extras.", "callbacks.progress_bar", "logger")


@dataclass
class Run:
    """One finished run: where it is, the overrides it was launched with, its seed and metrics."""

    source: str
    overrides: list[str]
    seed: Any
    metrics: dict[str, float] = field(default_factory=dict)


def _seed_of(overrides: list[str], config: dict[str, Any]) -> Any:
    for override in overrides:
        if override.startswith("seed="):
            return override.split("=", 1)[1]
    return config.get("seed")


def runs_from_dirs(directories: list[Path]) -> list[Run]:
    """Every run below `directories` that wrote a metrics.json."""
    runs = []
    for directory in directories:
        if not directory.exists():
            raise AdlabError(f"{directory}: no such run or multirun directory")
        for metrics_path in sorted(directory.rglob("metrics.json")):
            run_dir = metrics_path.parent
            overrides_path = run_dir / ".hydra" / "overrides.yaml"
            config_path = run_dir / ".hydra" / "config.yaml"
            overrides = yaml.safe_load(overrides_path.read_text()) if overrides_path.is_file() else []
            config = yaml.safe_load(config_path.read_text()) if config_path.is_file() else {}
            try:
                metrics = json.loads(metrics_path.read_text())
            except json.JSONDecodeError:
                raise AdlabError(f"{metrics_path}: not valid JSON") from None
            runs.append(
                Run(str(run_dir), list(overrides or []), _seed_of(overrides or [], config or {}), metrics)
            )
    return runs


def runs_from_ledger(path: Path) -> list[Run]:
    """Every line of a results ledger written by adlab-train."""
    if not path.is_file():
        raise AdlabError(f"--ledger {path}: file not found")
    runs = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            raise AdlabError(f"--ledger {path}: line {number} is not JSON") from None
        runs.append(
            Run(
                entry.get("run_dir", f"{path}:{number}"),
                entry.get("overrides", []),
                entry.get("seed"),
                entry.get("metrics", {}),
            )
        )
    return runs


def group_key(run: Run) -> str:
    """The run's overrides without seed, paths and display options: runs differing only by seed share it."""
    return " ".join(sorted(o for o in run.overrides if not o.startswith(IGNORED_PREFIXES))) or "(defaults)"


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def leaderboard(runs: list[Run], metrics: list[str]) -> list[dict[str, Any]]:
    """One row per group: `group`, `n`, `seeds`, and `<metric>_mean` / `<metric>_std` for each metric."""
    groups: dict[str, list[Run]] = {}
    for run in runs:
        groups.setdefault(group_key(run), []).append(run)
    rows = []
    for key, members in groups.items():
        row: dict[str, Any] = {
            "group": key,
            "n": len(members),
            "seeds": ",".join(str(m.seed) for m in members),
        }
        for metric in metrics:
            values = [float(m.metrics[metric]) for m in members if m.metrics.get(metric) is not None]
            mean, std = mean_std(values) if values else (float("nan"), float("nan"))
            row[f"{metric}_mean"], row[f"{metric}_std"], row[f"{metric}_n"] = mean, std, len(values)
        rows.append(row)
    first = f"{metrics[0]}_mean"
    return sorted(rows, key=lambda r: (math.isnan(r[first]), -r[first] if not math.isnan(r[first]) else 0))


def _markdown(rows: list[dict[str, Any]], metrics: list[str]) -> str:
    header = "| group | n | " + " | ".join(metrics) + " |"
    lines = [header, "|" + "---|" * (2 + len(metrics))]
    for row in rows:
        cells = [f"{row[f'{m}_mean']:.4g} ± {row[f'{m}_std']:.2g}" for m in metrics]
        lines.append(f"| {row['group']} | {row['n']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_outputs(rows: list[dict[str, Any]], metrics: list[str], out: Path) -> dict[str, Path]:
    """leaderboard.csv, leaderboard.md and leaderboard.png in `out`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    out.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out / "leaderboard.csv", "md": out / "leaderboard.md", "png": out / "leaderboard.png"}
    pd.DataFrame(rows).to_csv(paths["csv"], index=False)
    paths["md"].write_text(_markdown(rows, metrics))
    figure, axes = plt.subplots(
        1, len(metrics), figsize=(4 + 3 * len(metrics), 0.5 * len(rows) + 2), squeeze=False
    )
    labels = [r["group"] for r in rows]
    for axis, metric in zip(axes[0], metrics, strict=True):
        axis.barh(
            labels, [r[f"{metric}_mean"] for r in rows], xerr=[r[f"{metric}_std"] for r in rows], capsize=3
        )
        axis.set_xlabel(metric)
        axis.invert_yaxis()
    figure.tight_layout()
    figure.savefig(paths["png"], dpi=110)
    plt.close(figure)
    return paths


def main(argv: list[str] | None = None) -> None:
    """Console entry point (`adlab-compare`)."""
    parser = argparse.ArgumentParser(prog="adlab-compare", description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="*", type=Path, help="run or multirun directories")
    parser.add_argument(
        "--ledger", type=Path, default=None, help="read a results ledger (ledger.jsonl) instead"
    )
    parser.add_argument(
        "--metrics", default=None, help="comma-separated metric keys (default: every test/ metric)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("outputs/compare"),
        help="folder for leaderboard.{csv,md,png} (default: outputs/compare)",
    )
    args = parser.parse_args(argv)
    from adlab.cli import fail

    try:
        if not args.dirs and args.ledger is None:
            raise AdlabError("give run directories or --ledger FILE")
        runs = runs_from_ledger(args.ledger) if args.ledger else []
        runs += runs_from_dirs(args.dirs)
        if not runs:
            raise AdlabError(f"no metrics.json found under {', '.join(map(str, args.dirs))}")
        metrics = (
            args.metrics.split(",")
            if args.metrics
            else sorted({k for r in runs for k in r.metrics if k.startswith("test/")})
        )
        missing = [m for m in metrics if not any(m in r.metrics for r in runs)]
        if missing:
            raise AdlabError(f"--metrics {','.join(missing)}: not in any run's metrics")
        rows = leaderboard(runs, metrics)
        paths = write_outputs(rows, metrics, args.out)
    except AdlabError as error:
        fail(str(error))
    print(_markdown(rows, metrics), end="")
    print(f"wrote {paths['csv']}, {paths['md']}, {paths['png']}")


if __name__ == "__main__":
    main()
