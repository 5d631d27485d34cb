"""What a job prints and records besides training: baselines, the metrics table, the config tree."""

from __future__ import annotations

from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig
from rich.console import Console
from rich.table import Table

from adlab.errors import AdlabError
from adlab.harness.fit import FitStrategy


def run_baselines(cfg: DictConfig, datamodule: Any, strategy: FitStrategy) -> dict[str, float]:
    """Fit every configured baseline on the data module's split; keys `baseline/<name>/<stage>/<metric>`.

    Each baseline is fitted the way the job's fit strategy fits (`strategy.evaluate_baseline`: on the train
    split for `fit=plain`, cross-fitted for the propensity family's `fit=crossfit`).
    """
    results: dict[str, float] = {}
    for name, baseline_cfg in (cfg.get("baselines") or {}).items():
        if baseline_cfg is None:
            continue
        baseline = instantiate(baseline_cfg)
        try:
            scores = strategy.evaluate_baseline(baseline, datamodule)
        except AdlabError as error:
            raise AdlabError(f"baselines.{name}: {error}") from None
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


def maybe_print_config(cfg: DictConfig) -> None:
    """Print the config tree when `extras.print_config` is on."""
    if cfg.get("extras") and cfg.extras.get("print_config"):
        from adlab.harness.rich_utils import print_config_tree

        print_config_tree(cfg)
