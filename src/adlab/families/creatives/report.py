"""Pictures of a creatives GAN: a fixed-noise grid every epoch, and after testing a class-by-sample grid,
a latent interpolation strip and the per-class diversity figure (mode-collapse check).

Every file goes through `adlab.harness.artifacts` (under `plots/` and to W&B when it is on).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch
from PIL import Image
from torch import Tensor

from adlab.harness.artifacts import run_dir, save_figure, save_image_file, save_table


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _tile(images: Tensor) -> Tensor:
    """`(rows, cols, c, h, w) uint8` -> one `(rows * h, cols * w, c)` uint8 picture (1-pixel gaps)."""
    from torchvision.utils import make_grid

    rows, cols = images.shape[:2]
    grid = make_grid(images.reshape(rows * cols, *images.shape[2:]), nrow=cols, padding=1, pad_value=255)
    return grid.permute(1, 2, 0)


def class_grid_figure(images: Tensor, classes: list[str], title: str = "") -> Any:
    """Rows of samples `(classes, per_class, c, h, w) uint8`, each row labelled with its class name."""
    plt = _pyplot()
    rows, cols, _, height, _ = images.shape
    picture = _tile(images).numpy()
    figure, axis = plt.subplots(figsize=(1 + 0.45 * cols, 0.45 * rows + 0.3))
    axis.imshow(picture[:, :, 0] if picture.shape[2] == 1 else picture, cmap="gray", vmin=0, vmax=255)
    axis.set_yticks([(height + 1) * r + height / 2 for r in range(rows)], classes, fontsize=8)
    axis.set_xticks([])
    if title:
        axis.set_title(title, fontsize=9)
    return figure


def write_figure(figure: Any, path: Path) -> Path:
    """Save a figure as a PNG at `path` and close it (outside a trainer, e.g. `adlab-generate`)."""
    figure.savefig(path, dpi=110, bbox_inches="tight")
    _pyplot().close(figure)
    return path


def diversity_figure(rows: list[dict[str, Any]], collapse_ratio: float) -> Any:
    """Bars of real and generated per-class feature spread; classes below `collapse_ratio` x real in red
    (a class with fewer than two images on a side has no bar on that side)."""
    plt = _pyplot()

    def heights(column: str) -> list[float]:
        return [float("nan") if row[column] is None else row[column] for row in rows]

    names = [row["class"] for row in rows]
    positions = torch.arange(len(rows)).float()
    figure, axis = plt.subplots(figsize=(max(5, 0.7 * len(rows)), 3.2))
    axis.bar(positions - 0.2, heights("diversity_real"), 0.4, color="#999999", label="real (test)")
    colours = ["#d62728" if row["collapsed"] else "#1f77b4" for row in rows]
    axis.bar(positions + 0.2, heights("diversity_generated"), 0.4, color=colours, label="generated")
    axis.set_xticks(positions.tolist(), names, rotation=35, ha="right", fontsize=8)
    axis.set_ylabel("RMS distance between two images\n(evaluator features)", fontsize=8)
    collapsed = [row["class"] for row in rows if row["collapsed"]]
    verdict = (
        f"mode collapse (< {collapse_ratio:.0%} of real): {', '.join(collapsed)}"
        if collapsed
        else "no class collapsed"
    )
    axis.set_title(f"Per-class diversity — {verdict}", fontsize=9)
    axis.legend(fontsize=8)
    return figure


class CreativePlots(L.Callback):
    """Sample pictures of a `CreativesModule` (attached by the module itself).

    - every training epoch: `plots/samples_epoch_<k>.png`, the same noise and classes each time
      (rows: classes, `per_class` columns), so the epochs can be compared picture by picture;
    - after testing: `plots/class_grid.png`, `plots/interpolation.png`, `plots/diversity.png` and
      `diversity.csv` (per class: image counts, real and generated spread, their ratio (empty below two
      images a side), the collapse flag, CAS).

    Args:
        per_class: samples per class in the grids.
        seed: seed of the fixed noise.
    """

    def __init__(self, per_class: int = 10, seed: int = 1234):
        self.per_class = per_class
        self.seed = seed

    def _grid(self, pl_module: L.LightningModule, seed: int) -> Tensor:
        labels = pl_module.grid_labels(self.per_class)
        images = pl_module.sample(labels, pl_module.noise(len(labels), seed)).cpu()
        return images.view(len(pl_module.classes), self.per_class, *images.shape[1:])

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero or trainer.sanity_checking:
            return
        picture = _tile(self._grid(pl_module, self.seed)).numpy()
        name = f"samples_epoch_{trainer.current_epoch:03d}"
        path = run_dir(trainer) / "plots" / f"{name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(picture[:, :, 0] if picture.shape[2] == 1 else picture).save(path)
        save_image_file(trainer, path, name)

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        classes = list(pl_module.classes)
        grid = self._grid(pl_module, self.seed + 1)
        save_figure(
            trainer,
            class_grid_figure(grid, classes, "class-conditional samples (EMA generator)"),
            "class_grid",
        )
        strip = pl_module.interpolation(steps=self.per_class, seed=self.seed + 2).cpu()
        save_figure(
            trainer,
            class_grid_figure(strip, classes, "latent interpolation (slerp), per class"),
            "interpolation",
        )
        report = pl_module.test_report
        if report.get("classes"):
            save_figure(trainer, diversity_figure(report["classes"], report["collapse_ratio"]), "diversity")
            save_table(trainer, report["classes"], "diversity")
