"""Write a run's figures and tables under its directory and hand them to every logger that takes them."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import lightning as L


def run_dir(trainer: L.Trainer) -> Path:
    """The run's output directory (the trainer's `default_root_dir`)."""
    return Path(trainer.default_root_dir)


def _wandb_loggers(trainer: L.Trainer) -> list[Any]:
    from lightning.pytorch.loggers import WandbLogger

    return [logger for logger in trainer.loggers if isinstance(logger, WandbLogger)]


def save_figure(trainer: L.Trainer, figure: Any, name: str) -> Path:
    """Save a matplotlib figure as `plots/<name>.png` and log it to W&B as an image; closes the figure."""
    import matplotlib.pyplot as plt

    path = run_dir(trainer) / "plots" / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(figure)
    for logger in _wandb_loggers(trainer):
        logger.log_image(key=f"plots/{name}", images=[str(path)])
    return path


def save_image_file(trainer: L.Trainer, path: Path, name: str) -> Path:
    """Log an already written PNG (e.g. a torchvision image grid) to W&B under `plots/<name>`."""
    for logger in _wandb_loggers(trainer):
        logger.log_image(key=f"plots/{name}", images=[str(path)])
    return path


def save_table(trainer: L.Trainer, rows: list[dict[str, Any]], name: str) -> Path:
    """Write rows as `<name>.csv` in the run directory and log them to W&B as a table."""
    path = run_dir(trainer) / f"{name}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = list(rows[0]) if rows else []
    with open(path, "w", newline="", encoding="utf-8") as stream:
        writer = csv.DictWriter(stream, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    for logger in _wandb_loggers(trainer):
        logger.log_table(
            key=f"tables/{name}", columns=columns, data=[[row[c] for c in columns] for row in rows]
        )
    return path
