"""Write a run's figures and tables under its directory and hand them to every logger that takes them
(W&B, MLflow, TensorBoard; the CSV logger holds metrics only)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import lightning as L


def run_dir(trainer: L.Trainer) -> Path:
    """The run's output directory (the trainer's `default_root_dir`)."""
    return Path(trainer.default_root_dir)


def _loggers(trainer: L.Trainer, kind: str) -> list[Any]:
    """The trainer's loggers of one kind: `wandb`, `mlflow` or `tensorboard`."""
    from lightning.pytorch.loggers import MLFlowLogger, TensorBoardLogger, WandbLogger

    types = {"wandb": WandbLogger, "mlflow": MLFlowLogger, "tensorboard": TensorBoardLogger}
    return [logger for logger in trainer.loggers if isinstance(logger, types[kind])]


def _log_image_file(trainer: L.Trainer, path: Path, name: str) -> None:
    """A PNG to W&B (image), MLflow (artifact under `plots/`) and TensorBoard (image), as `plots/<name>`."""
    for logger in _loggers(trainer, "wandb"):
        logger.log_image(key=f"plots/{name}", images=[str(path)])
    for logger in _loggers(trainer, "mlflow"):
        logger.experiment.log_artifact(logger.run_id, str(path), artifact_path="plots")
    tensorboards = _loggers(trainer, "tensorboard")
    if tensorboards:
        import matplotlib.image

        pixels = matplotlib.image.imread(path)  # (height, width, channels) float in [0, 1]
        for logger in tensorboards:
            logger.experiment.add_image(
                f"plots/{name}", pixels, global_step=trainer.global_step, dataformats="HWC"
            )


def pyplot() -> Any:
    """matplotlib's `pyplot` on the Agg backend (files only, no display), for a report's figures."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(trainer: L.Trainer, figure: Any, name: str) -> Path:
    """Save a matplotlib figure as `plots/<name>.png` and log it to every logger that takes images
    (W&B, MLflow, TensorBoard); closes the figure."""
    import matplotlib.pyplot as plt

    path = run_dir(trainer) / "plots" / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(figure)
    _log_image_file(trainer, path, name)
    return path


def save_image_file(trainer: L.Trainer, path: Path, name: str) -> Path:
    """Log an already written PNG (e.g. a torchvision image grid) under `plots/<name>` to every logger
    that takes images."""
    _log_image_file(trainer, path, name)
    return path


def save_table(trainer: L.Trainer, rows: list[dict[str, Any]], name: str) -> Path:
    """Write rows as `<name>.csv` in the run directory and log them: a table to W&B, the CSV file to
    MLflow (under `tables/`), a Markdown table to TensorBoard's text tab."""
    path = run_dir(trainer) / f"{name}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = list(rows[0]) if rows else []
    with open(path, "w", newline="", encoding="utf-8") as stream:
        writer = csv.DictWriter(stream, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    for logger in _loggers(trainer, "wandb"):
        logger.log_table(
            key=f"tables/{name}", columns=columns, data=[[row[c] for c in columns] for row in rows]
        )
    for logger in _loggers(trainer, "mlflow"):
        logger.experiment.log_artifact(logger.run_id, str(path), artifact_path="tables")
    for logger in _loggers(trainer, "tensorboard"):
        lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        lines += ["| " + " | ".join(str(row[c]) for c in columns) + " |" for row in rows]
        logger.experiment.add_text(f"tables/{name}", "\n".join(lines), global_step=trainer.global_step)
    return path
