"""What a job prints and records besides training: baselines, the metrics table, where outputs went, the
config tree."""

from __future__ import annotations

import io
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.utils import instantiate
from omegaconf import DictConfig
from rich.console import Console
from rich.table import Table

from adlab.errors import AdlabError

if TYPE_CHECKING:  # the fit strategies import Lightning; adlab-compare prints with this module without it
    from adlab.harness.fit import FitStrategy

log = logging.getLogger(__name__)
# what a job prints on stdout as its result is also kept in its log file (configs/hydra/default.yaml)
results_log = logging.getLogger("adlab.results")


def run_baselines(cfg: DictConfig, datamodule: Any, strategy: FitStrategy) -> dict[str, float]:
    """Fit every configured baseline on the data module's split; keys `baseline/<name>/<stage>/<metric>`.

    Each baseline is fitted the way the job's fit strategy fits (`strategy.evaluate_baseline`: on the train
    split for `fit=plain`, cross-fitted for the propensity family's `fit=crossfit`).
    """
    results: dict[str, float] = {}
    configured = {n: c for n, c in (cfg.get("baselines") or {}).items() if c is not None}
    for number, (name, baseline_cfg) in enumerate(configured.items(), start=1):
        log.info("baseline %d/%d: fitting %s ...", number, len(configured), name)
        started = time.perf_counter()
        baseline = instantiate(baseline_cfg)
        try:
            scores = strategy.evaluate_baseline(baseline, datamodule)
        except AdlabError as error:
            raise AdlabError(f"baselines.{name}: {error}") from None
        log.info(
            "baseline %d/%d: %s done in %.1f s", number, len(configured), name, time.perf_counter() - started
        )
        for key, value in scores.items():
            results[f"baseline/{name}/{key}"] = value
    return results


def _number(value: Any) -> str:
    value = float(value)
    return f"{value:.0f}" if value.is_integer() and abs(value) >= 1 else f"{value:.4f}"


def print_metrics_table(metrics: dict[str, Any], stage: str = "test") -> None:
    """One table: the model's `<stage>/<metric>` beside each baseline's value of the same metric."""
    prefix = f"{stage}/"
    names = sorted(k[len(prefix) :] for k in metrics if k.startswith(prefix))
    if not names:
        return
    baselines = sorted({k.split("/")[1] for k in metrics if k.startswith("baseline/")})
    table = Table(title=f"{stage} metrics")
    table.add_column("metric")
    table.add_column("model", justify="right")
    for baseline in baselines:
        table.add_column(baseline, justify="right")
    for name in names:
        row = [name, _number(metrics[prefix + name])]
        row += [
            _number(metrics[k]) if (k := f"baseline/{b}/{stage}/{name}") in metrics else "" for b in baselines
        ]
        table.add_row(*row)
    Console().print(table)
    results_log.info("\n%s", _plain_text(table))


def _plain_text(renderable: Any) -> str:
    """A rich renderable as plain text (no colours), for the log file."""
    console = Console(file=io.StringIO(), width=120, no_color=True, color_system=None)
    console.print(renderable)
    return console.file.getvalue().rstrip()


def log_file() -> Path | None:
    """The job's log file (`<run dir>/<task>.log`), when logging writes one."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            return Path(handler.baseFilename)
    return None


def _shown(path: Path) -> str:
    """A path as the user can paste it: relative to the working directory when below it."""
    path = Path(path).absolute()
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


RUN_FILES = {
    "metrics": "metrics.json",
    "predictions": "predictions.parquet",
    "predictions (csv)": "predictions.csv",
    "ratings": "ratings.csv",
    "best checkpoint": "checkpoints/best.ckpt",
    "last checkpoint": "checkpoints/last.ckpt",
}


def print_outputs(
    run_dir: str | Path | None, outputs: dict[str, str | Path | None] | None = None
) -> dict[str, Path]:
    """End a job with one short block saying where it wrote what; return the block's entries.

    The block lists the run folder, the run files that exist in it (`RUN_FILES`, `plots/`), each of
    `outputs` (name -> path) that is not None, and the job's log file. Printed on stdout and kept in the
    log file.
    """
    entries: dict[str, Path] = {}
    if run_dir is not None:
        run_dir = Path(run_dir)
        entries["run folder"] = run_dir
        for name, relative in RUN_FILES.items():
            if (run_dir / relative).is_file():
                entries[name] = run_dir / relative
        if (run_dir / "plots").is_dir():
            entries["plots"] = run_dir / "plots"
    entries.update({name: Path(path) for name, path in (outputs or {}).items() if path is not None})
    job_log = log_file()
    if job_log is not None and job_log.is_file():
        entries["log"] = job_log
    width = max(map(len, entries), default=0) + 1
    lines = []
    for name, path in entries.items():
        shown = _shown(path) + (os.sep if path.is_dir() else "")
        if name == "plots":
            shown += f" ({sum(1 for p in path.iterdir() if p.suffix == '.png')} png)"
        lines.append(f"{name + ':':<{width}} {shown}")
    text = "\n".join(lines)
    print(text, flush=True)
    results_log.info("\n%s", text)
    return entries


def log_metrics_to_loggers(loggers: list[Any], metrics: dict[str, Any]) -> None:
    """Hand metrics computed outside Lightning (the baselines') to every logger of the job (W&B, MLflow,
    TensorBoard, CSV), so that they sit beside the model's."""
    plain = {key: float(value) for key, value in metrics.items() if value is not None}
    if not plain:
        return
    for logger in loggers:
        logger.log_metrics(plain)
        logger.save()


def maybe_print_config(cfg: DictConfig) -> None:
    """Print the config tree when `extras.print_config` is on."""
    if cfg.get("extras") and cfg.extras.get("print_config"):
        from adlab.harness.rich_utils import print_config_tree

        print_config_tree(cfg)
