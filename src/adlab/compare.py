"""`adlab-compare DIR... [--ledger FILE]`: a leaderboard of runs, grouped by the overrides that differ.

Reads every `metrics.json` below the given directories (single runs and multiruns) with the run's
`.hydra/overrides.yaml`, or the lines of a results ledger. Runs that differ only by `seed` fall in one
group, so a multirun `seed=1,2,3,4,5 model.ema_decay=0.95,0.99` gives two groups of five runs. Each group
gets n, mean and sample standard deviation of the chosen metrics; `--baselines` adds a row per baseline
beside the model (`baseline/<name>/<stage>/<metric>`, fitted in the same runs), `--per-seed` lists the
first metric run by run. Writes `leaderboard.csv`, `leaderboard.md` and `leaderboard.png` (metric by
group with error bars) into `--out`.

    adlab-train -m experiment=propensity_coil seed=1,2,3,4,5 hydra.sweep.dir=outputs/coil_seeds
    adlab-compare outputs/coil_seeds --metrics top20_hits,auroc --baselines --per-seed
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from adlab.cli import fail
from adlab.errors import AdlabError

IGNORED_PREFIXES = ("seed=", "hydra.", "hydra/", "paths.", "extras.", "callbacks.progress_bar", "logger")
# the row of the trained model; baselines' rows carry their own name
MODEL = "model"
STAGES = ("test", "val")


@dataclass
class Run:
    """One finished run: where it is, the overrides it was launched with, its seed and metrics."""

    source: str
    overrides: list[str]
    seed: Any
    metrics: dict[str, float] = field(default_factory=dict)


def _bare(override: str) -> str:
    """An override without Hydra's add/delete prefix (`+seed=2` -> `seed=2`)."""
    return override.lstrip("+~")


def _seed_of(overrides: list[str], config: dict[str, Any]) -> Any:
    for override in overrides:
        if _bare(override).startswith("seed="):
            return _bare(override).split("=", 1)[1]
    return config.get("seed")


def _seed_order(seed: Any) -> tuple[int, float, str]:
    """Sort key putting seeds in numeric order (2 before 10), other values after them."""
    try:
        return (0, float(seed), "")
    except (TypeError, ValueError):
        return (1, 0.0, str(seed))


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
    kept = (o for o in run.overrides if not _bare(o).startswith(IGNORED_PREFIXES))
    return " ".join(sorted(kept)) or "(defaults)"


def metric_keys(names: list[str], stage: str) -> list[str]:
    """Full metric keys: a bare name gets the stage (`auroc` -> `test/auroc`), a full key is kept."""
    return [name if "/" in name else f"{stage}/{name}" for name in names]


def metric_key(metric: str, scorer: str) -> str:
    """The key of `metric` (`test/auroc`) for a scorer: itself for the model, its baseline key otherwise."""
    if scorer == MODEL:
        return metric
    stage, name = metric.split("/", 1)
    return f"baseline/{scorer}/{stage}/{name}"


def baseline_names(runs: list[Run], metrics: list[str]) -> list[str]:
    """The baselines that report at least one of `metrics` in some run, sorted by name."""
    names = {key.split("/")[1] for run in runs for key in run.metrics if key.startswith("baseline/")}
    return sorted(n for n in names if any(metric_key(m, n) in r.metrics for m in metrics for r in runs))


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def grouped(runs: list[Run]) -> dict[str, list[Run]]:
    """Runs by `group_key`, each group in seed order."""
    groups: dict[str, list[Run]] = {}
    for run in runs:
        groups.setdefault(group_key(run), []).append(run)
    return {key: sorted(members, key=lambda r: _seed_order(r.seed)) for key, members in groups.items()}


def leaderboard(runs: list[Run], metrics: list[str], baselines: bool = False) -> list[dict[str, Any]]:
    """One row per group and scorer: `group`, `scorer`, `n`, `seeds`, and `<metric>_mean`, `<metric>_std`,
    `<metric>_n` for each metric.

    The scorer is `model`, and with `baselines` also each baseline found in the runs. Groups are ordered by
    their model's mean of the first metric, highest first; within a group the model comes first.
    """
    scorers = [MODEL, *(baseline_names(runs, metrics) if baselines else [])]
    blocks = []
    for key, members in grouped(runs).items():
        block = []
        for scorer in scorers:
            row: dict[str, Any] = {
                "group": key,
                "scorer": scorer,
                "n": len(members),
                "seeds": ",".join(str(m.seed) for m in members),
            }
            for metric in metrics:
                name = metric_key(metric, scorer)
                values = [float(m.metrics[name]) for m in members if m.metrics.get(name) is not None]
                mean, std = mean_std(values) if values else (float("nan"), float("nan"))
                row[f"{metric}_mean"], row[f"{metric}_std"], row[f"{metric}_n"] = mean, std, len(values)
            if scorer == MODEL or any(row[f"{m}_n"] for m in metrics):
                block.append(row)
        blocks.append(block)
    first = f"{metrics[0]}_mean"
    blocks.sort(key=lambda b: (math.isnan(b[0][first]), -b[0][first] if not math.isnan(b[0][first]) else 0))
    return [row for block in blocks for row in block]


def per_seed(runs: list[Run], metric: str, scorers: list[str]) -> list[dict[str, Any]]:
    """One row per run, groups in order: `group`, `seed` and the value of `metric` for each scorer."""
    rows = []
    for key, members in grouped(runs).items():
        for run in members:
            row: dict[str, Any] = {"group": key, "seed": run.seed}
            row.update({scorer: run.metrics.get(metric_key(metric, scorer)) for scorer in scorers})
            rows.append(row)
    return rows


def _markdown(rows: list[dict[str, Any]], metrics: list[str]) -> str:
    header = "| group | scorer | n | " + " | ".join(metrics) + " |"
    lines = [header, "|" + "---|" * (3 + len(metrics))]
    for row in rows:
        cells = [f"{row[f'{m}_mean']:.4g} ± {row[f'{m}_std']:.2g}" for m in metrics]
        lines.append(f"| {row['group']} | {row['scorer']} | {row['n']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _per_seed_markdown(rows: list[dict[str, Any]], metric: str, scorers: list[str]) -> str:
    lines = [f"{metric} per seed", "", "| group | seed | " + " | ".join(scorers) + " |"]
    lines.append("|" + "---|" * (2 + len(scorers)))
    for row in rows:
        cells = ["" if row[s] is None else f"{row[s]:g}" for s in scorers]
        lines.append(f"| {row['group']} | {row['seed']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_outputs(
    rows: list[dict[str, Any]], metrics: list[str], out: Path, extra_markdown: str = ""
) -> dict[str, Path]:
    """leaderboard.csv, leaderboard.md (followed by `extra_markdown`) and leaderboard.png in `out`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    out.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out / "leaderboard.csv", "md": out / "leaderboard.md", "png": out / "leaderboard.png"}
    pd.DataFrame(rows).to_csv(paths["csv"], index=False)
    paths["md"].write_text(_markdown(rows, metrics) + (f"\n{extra_markdown}" if extra_markdown else ""))
    figure, axes = plt.subplots(
        1, len(metrics), figsize=(4 + 3 * len(metrics), 0.5 * len(rows) + 2), squeeze=False
    )
    labels = [r["group"] if r["scorer"] == MODEL else f"{r['group']} [{r['scorer']}]" for r in rows]
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
        "--metrics",
        default=None,
        help="comma-separated metrics, full keys (test/auroc) or names of --stage (auroc); "
        "default: every metric of --stage",
    )
    parser.add_argument(
        "--stage", default="test", choices=STAGES, help="stage of bare metric names and the default metrics"
    )
    parser.add_argument(
        "--baselines", action="store_true", help="add a row per baseline fitted in the same runs"
    )
    parser.add_argument("--per-seed", action="store_true", help="list the first metric run by run")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("outputs/compare"),
        help="folder for leaderboard.{csv,md,png} (default: outputs/compare)",
    )
    args = parser.parse_args(argv)
    try:
        if not args.dirs and args.ledger is None:
            raise AdlabError("give run directories or --ledger FILE")
        runs = runs_from_ledger(args.ledger) if args.ledger else []
        runs += runs_from_dirs(args.dirs)
        if not runs:
            raise AdlabError(f"no metrics.json found under {', '.join(map(str, args.dirs))}")
        metrics = (
            metric_keys(args.metrics.split(","), args.stage)
            if args.metrics
            else sorted({k for r in runs for k in r.metrics if k.startswith(f"{args.stage}/")})
        )
        if not metrics:
            raise AdlabError(f"--stage {args.stage}: no {args.stage}/ metric in any run")
        found = {key for run in runs for key in run.metrics}
        found |= {"/".join(k.split("/")[2:]) for k in found if k.startswith("baseline/")}
        missing = [m for m in metrics if m not in found]
        if missing:
            raise AdlabError(f"--metrics {','.join(missing)}: not in any run's metrics")
        rows = leaderboard(runs, metrics, baselines=args.baselines)
        seeds = ""
        if args.per_seed:
            scorers = list(dict.fromkeys(row["scorer"] for row in rows))
            seeds = _per_seed_markdown(per_seed(runs, metrics[0], scorers), metrics[0], scorers)
        paths = write_outputs(rows, metrics, args.out, seeds)
    except AdlabError as error:
        fail(str(error))
    print(_markdown(rows, metrics), end="")
    if seeds:
        print(f"\n{seeds}", end="")
    print(f"wrote {paths['csv']}, {paths['md']}, {paths['png']}")


if __name__ == "__main__":
    main()
