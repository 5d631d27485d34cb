"""`adlab-compare DIR... [--ledger FILE]`: a leaderboard of runs, by experiment, grouped by the overrides
that differ.

Reads every `metrics.json` below the given directories (single runs and multiruns) with the run's
`.hydra/overrides.yaml` and `.hydra/config.yaml`, or the lines of a results ledger. Runs are first split by
experiment (the preset's `experiment_name`), and each experiment's table shows only the metrics its runs
report. Within an experiment, runs that differ only by `seed` fall in one group, so a multirun
`seed=1,2,3,4,5 model.ema_decay=0.95,0.99` gives two groups of five runs. Each group gets n, mean and sample
standard deviation of the chosen metrics (a single run shows its value alone); `--baselines` adds a row per
baseline beside the model (`baseline/<name>/<stage>/<metric>`, fitted in the same runs), `--per-seed` lists
the first metric run by run. Writes `leaderboard.csv`, `leaderboard.md` and `leaderboard.png` (metric by
group with error bars), and with `--html` one self-contained `leaderboard.html` holding the tables, the
chart and every run's plots, into `--out` (default: beside the first directory, `<DIR>-compare/`, or beside
the ledger, `compare/`).

    adlab-train -m experiment=propensity_coil seed=1,2,3,4,5 hydra.sweep.dir=outputs/coil_seeds
    adlab-compare outputs/coil_seeds --metrics top20_hits,auroc --baselines --per-seed --html
"""

from __future__ import annotations

import argparse
import base64
import html
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
# experiment of a run whose config and overrides name none
DEFAULT_EXPERIMENT = "default"


@dataclass
class Run:
    """One finished run: where it is, the overrides it was launched with, its seed and metrics."""

    source: str
    overrides: list[str]
    seed: Any
    metrics: dict[str, float] = field(default_factory=dict)
    experiment: str = DEFAULT_EXPERIMENT


def _bare(override: str) -> str:
    """An override without Hydra's add/delete prefix (`+seed=2` -> `seed=2`)."""
    return override.lstrip("+~")


def _seed_of(overrides: list[str], config: dict[str, Any]) -> Any:
    for override in overrides:
        if _bare(override).startswith("seed="):
            return _bare(override).split("=", 1)[1]
    return config.get("seed")


def _experiment_of(overrides: list[str], config: dict[str, Any]) -> str:
    """The run's experiment: its config's `experiment_name`, else its `experiment=` override."""
    name = config.get("experiment_name")
    if name:
        return str(name)
    for override in overrides:
        if _bare(override).startswith("experiment="):
            return _bare(override).split("=", 1)[1]
    return DEFAULT_EXPERIMENT


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
            overrides, config = list(overrides or []), config or {}
            runs.append(
                Run(
                    str(run_dir),
                    overrides,
                    _seed_of(overrides, config),
                    metrics,
                    _experiment_of(overrides, config),
                )
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
        overrides = entry.get("overrides", [])
        runs.append(
            Run(
                entry.get("run_dir", f"{path}:{number}"),
                overrides,
                entry.get("seed"),
                entry.get("metrics", {}),
                _experiment_of(overrides, {"experiment_name": entry.get("experiment")}),
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


def by_experiment(runs: list[Run]) -> dict[str, list[Run]]:
    """Runs by experiment, experiments in order of name."""
    experiments: dict[str, list[Run]] = {}
    for run in runs:
        experiments.setdefault(run.experiment, []).append(run)
    return dict(sorted(experiments.items()))


def reported(runs: list[Run], metrics: list[str]) -> list[str]:
    """The metrics of `metrics` that some run reports, for its model or a baseline, in the given order."""
    keys = {key for run in runs for key in run.metrics if run.metrics[key] is not None}
    keys |= {f"{k.split('/')[2]}/{'/'.join(k.split('/')[3:])}" for k in keys if k.startswith("baseline/")}
    return [metric for metric in metrics if metric in keys]


def leaderboard(runs: list[Run], metrics: list[str], baselines: bool = False) -> list[dict[str, Any]]:
    """One row per experiment, group and scorer: `experiment`, `group`, `scorer`, `n`, `seeds`, and
    `<metric>_mean`, `<metric>_std`, `<metric>_n` for each metric of `metrics` the experiment's runs report.

    The scorer is `model`, and with `baselines` also each baseline found in the runs. Experiments come in
    order of name; within one, groups are ordered by their model's mean of the experiment's first metric,
    highest first, and the model comes first within a group.
    """
    rows = []
    for experiment, members_of_experiment in by_experiment(runs).items():
        shown = reported(members_of_experiment, metrics)
        scorers = [MODEL, *(baseline_names(members_of_experiment, shown) if baselines else [])]
        blocks = []
        for key, members in grouped(members_of_experiment).items():
            block = []
            for scorer in scorers:
                row: dict[str, Any] = {
                    "experiment": experiment,
                    "group": key,
                    "scorer": scorer,
                    "n": len(members),
                    "seeds": ",".join(str(m.seed) for m in members),
                }
                for metric in shown:
                    name = metric_key(metric, scorer)
                    values = [float(m.metrics[name]) for m in members if m.metrics.get(name) is not None]
                    mean, std = mean_std(values) if values else (float("nan"), float("nan"))
                    row[f"{metric}_mean"], row[f"{metric}_std"], row[f"{metric}_n"] = mean, std, len(values)
                if scorer == MODEL or any(row[f"{m}_n"] for m in shown):
                    block.append(row)
            blocks.append(block)
        if shown:
            first = f"{shown[0]}_mean"
            blocks.sort(
                key=lambda b: (math.isnan(b[0][first]), -b[0][first] if not math.isnan(b[0][first]) else 0)
            )
        rows += [row for block in blocks for row in block]
    return rows


def shown_metrics(rows: list[dict[str, Any]], metrics: list[str]) -> dict[str, list[str]]:
    """Each experiment of the leaderboard with the metrics its table shows."""
    experiments: dict[str, list[str]] = {}
    for row in rows:
        experiments.setdefault(row["experiment"], [m for m in metrics if f"{m}_mean" in row])
    return experiments


def per_seed(runs: list[Run], metric: str, scorers: list[str]) -> list[dict[str, Any]]:
    """One row per run, groups in order: `group`, `seed` and the value of `metric` for each scorer."""
    rows = []
    for key, members in grouped(runs).items():
        for run in members:
            row: dict[str, Any] = {"group": key, "seed": run.seed}
            row.update({scorer: run.metrics.get(metric_key(metric, scorer)) for scorer in scorers})
            rows.append(row)
    return rows


def cell(row: dict[str, Any], metric: str) -> str:
    """`mean ± std` of a metric, the value alone for one run, empty when no run reports it."""
    count = row.get(f"{metric}_n", 0)
    if not count:
        return ""
    mean = f"{row[f'{metric}_mean']:.4g}"
    return mean if count == 1 else f"{mean} ± {row[f'{metric}_std']:.2g}"


def _markdown(rows: list[dict[str, Any]], metrics: list[str]) -> str:
    """One table per experiment, with the metrics that experiment's runs report."""
    parts = []
    for experiment, shown in shown_metrics(rows, metrics).items():
        lines = [f"experiment: {experiment}", "", "| group | scorer | n | " + " | ".join(shown) + " |"]
        lines.append("|" + "---|" * (3 + len(shown)))
        for row in (r for r in rows if r["experiment"] == experiment):
            cells = [cell(row, m) for m in shown]
            lines.append(f"| {row['group']} | {row['scorer']} | {row['n']} | " + " | ".join(cells) + " |")
        parts.append("\n".join(lines) + "\n")
    return "\n".join(parts)


def _per_seed_markdown(rows: list[dict[str, Any]], metric: str, scorers: list[str]) -> str:
    lines = [f"{metric} per seed", "", "| group | seed | " + " | ".join(scorers) + " |"]
    lines.append("|" + "---|" * (2 + len(scorers)))
    for row in rows:
        cells = ["" if row[s] is None else f"{row[s]:g}" for s in scorers]
        lines.append(f"| {row['group']} | {row['seed']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _figure(rows: list[dict[str, Any]], metrics: list[str], path: Path) -> None:
    """Bar charts of each experiment's metrics by group (error bars: sample standard deviation)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    experiments = shown_metrics(rows, metrics)
    columns = max((len(shown) for shown in experiments.values()), default=1) or 1
    heights = [0.45 * sum(r["experiment"] == e for r in rows) + 1.5 for e in experiments] or [2.0]
    figure, axes = plt.subplots(
        len(heights),
        columns,
        figsize=(4 + 3 * columns, sum(heights)),
        squeeze=False,
        gridspec_kw={"height_ratios": heights},
    )
    for line, (experiment, shown) in zip(axes, experiments.items(), strict=False):
        own = [r for r in rows if r["experiment"] == experiment]
        labels = [r["group"] if r["scorer"] == MODEL else f"{r['group']} [{r['scorer']}]" for r in own]
        for axis, metric in zip(line, shown, strict=False):
            errors = [0.0 if math.isnan(r[f"{metric}_std"]) else r[f"{metric}_std"] for r in own]
            axis.barh(labels, [r[f"{metric}_mean"] for r in own], xerr=errors, capsize=3)
            axis.set_xlabel(metric)
            axis.set_title(experiment, fontsize=9, loc="left")
            axis.invert_yaxis()
        for axis in line[len(shown) :]:
            axis.axis("off")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _image_tag(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _html(rows: list[dict[str, Any]], metrics: list[str], runs: list[Run], chart: Path) -> str:
    """One self-contained page: each experiment's table, the chart, and every run's plots (images inline)."""
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>adlab leaderboard</title><style>",
        "body{font-family:sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin:1em 0}",
        "td,th{border:1px solid #ccc;padding:4px 8px}td.num{text-align:right}th{background:#f4f4f4}",
        "img{max-width:100%}.plots img{max-width:420px;margin:4px}details{margin:.5em 0}",
        "</style></head><body><h1>Leaderboard</h1>",
    ]
    experiments = shown_metrics(rows, metrics)
    for experiment, shown in experiments.items():
        parts.append(f"<h2>{html.escape(experiment)}</h2><table><tr><th>group</th><th>scorer</th><th>n</th>")
        parts += [f"<th>{html.escape(m)}</th>" for m in shown]
        parts.append("</tr>")
        for row in (r for r in rows if r["experiment"] == experiment):
            parts.append(
                f"<tr><td>{html.escape(row['group'])}</td><td>{html.escape(row['scorer'])}</td>"
                f"<td class='num'>{row['n']}</td>"
                + "".join(f"<td class='num'>{html.escape(cell(row, m))}</td>" for m in shown)
                + "</tr>"
            )
        parts.append("</table>")
    parts.append(_image_tag(chart, "leaderboard chart"))
    parts.append("<h2>Runs</h2>")
    for experiment, members in by_experiment(runs).items():
        parts.append(f"<h3>{html.escape(experiment)}</h3>")
        for key, group in grouped(members).items():
            for run in group:
                plots = sorted(Path(run.source, "plots").glob("*.png")) if Path(run.source).is_dir() else []
                title = f"{key} · seed {run.seed} · {run.source}"
                body = "".join(_image_tag(plot, plot.stem) for plot in plots) or "<p>no plots</p>"
                parts.append(
                    f"<details><summary>{html.escape(title)}</summary><div class='plots'>{body}</div></details>"
                )
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_outputs(
    rows: list[dict[str, Any]],
    metrics: list[str],
    out: Path,
    extra_markdown: str = "",
    runs: list[Run] | None = None,
) -> dict[str, Path]:
    """leaderboard.csv, leaderboard.md (followed by `extra_markdown`) and leaderboard.png in `out`; with
    `runs`, also leaderboard.html (tables, chart and the runs' plots in one file)."""
    import pandas as pd

    out.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out / "leaderboard.csv", "md": out / "leaderboard.md", "png": out / "leaderboard.png"}
    pd.DataFrame(rows).to_csv(paths["csv"], index=False)
    paths["md"].write_text(_markdown(rows, metrics) + (f"\n{extra_markdown}" if extra_markdown else ""))
    _figure(rows, metrics, paths["png"])
    if runs is not None:
        paths["html"] = out / "leaderboard.html"
        paths["html"].write_text(_html(rows, metrics, runs, paths["png"]), encoding="utf-8")
    return paths


def default_out(dirs: list[Path], ledger: Path | None) -> Path:
    """Where the leaderboard goes without `--out`: beside the one directory compared (`<DIR>-compare`),
    else beside the first directory or the ledger (`compare/`)."""
    if len(dirs) == 1 and ledger is None:
        directory = dirs[0].absolute()
        return directory.parent / f"{directory.name}-compare"
    first = dirs[0].absolute() if dirs else ledger.absolute()
    return first.parent / "compare"


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
        "--html",
        action="store_true",
        help="also write leaderboard.html: tables, chart and every run's plots in one self-contained page",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="folder for leaderboard.{csv,md,png,html} (default: beside DIR as <DIR>-compare, or beside the "
        "ledger as compare/)",
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
        out = args.out or default_out(args.dirs, args.ledger)
        paths = write_outputs(rows, metrics, out, seeds, runs if args.html else None)
    except AdlabError as error:
        fail(str(error))
    from adlab.harness.report import print_outputs

    print(_markdown(rows, metrics), end="")
    if seeds:
        print(f"\n{seeds}", end="")
    print()
    print_outputs(
        None, {"table": paths["md"], "csv": paths["csv"], "chart": paths["png"], "page": paths.get("html")}
    )


if __name__ == "__main__":
    main()
