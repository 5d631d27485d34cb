"""The marketing report of a propensity scorer: gains/lift chart, calibration plot, decile table, calibration.

Runs when the selected checkpoint is tested (`adlab-train` and `adlab-eval`), on the data module's val and
test tensors, and writes into the run directory:
`plots/gains_lift.png`, `plots/calibration.png` (also W&B images), `decile_table.csv` (also a W&B table),
and logs `test/ece_calibrated` / `test/log_loss_calibrated` when a calibrator is fitted on val.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import numpy as np
import torch
from torchmetrics.functional.classification import binary_calibration_error

from adlab.calibration import fit_calibrator, log_loss, reliability_bins
from adlab.metrics.ranking import cumulative_gains, decile_table
from adlab.utils.artifacts import save_figure, save_table


@torch.no_grad()
def score_split(
    module: L.LightningModule, tensors: dict[str, torch.Tensor], batch_size: int = 8192
) -> np.ndarray:
    """Logits `(n,)` of a propensity module on one split's in-memory tensors (eval mode, no gradients)."""
    was_training = module.training
    module.eval()
    outputs = []
    for start in range(0, len(tensors["target"]), batch_size):
        part = slice(start, start + batch_size)
        categorical = tensors["categorical"][part].to(module.device)
        numeric = tensors["numeric"][part].to(module.device)
        outputs.append(module(categorical, numeric).float().cpu())
    module.train(was_training)
    return torch.cat(outputs).numpy() if outputs else np.zeros(0, dtype=np.float32)


def _ece(probabilities: np.ndarray, targets: np.ndarray) -> float:
    # the same estimator (10 equal-width bins, L1) as the `ece` metric of PropensityMetrics
    return float(
        binary_calibration_error(
            torch.as_tensor(probabilities).float(), torch.as_tensor(targets).long(), n_bins=10
        )
    )


def gains_lift_figure(scores: np.ndarray, targets: np.ndarray, top_fraction: float) -> Any:
    """Cumulative gains (left) and cumulative lift (right) against the share of customers contacted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    contacted, captured = cumulative_gains(scores, targets)
    rate = float(np.mean(targets)) if len(targets) else 0.0
    perfect = np.minimum(contacted / max(rate, 1e-12), 1.0)
    figure, (gains, lift) = plt.subplots(1, 2, figsize=(10, 4))
    gains.plot(contacted, captured, label="model")
    gains.plot(contacted, perfect, linestyle=":", label="perfect")
    gains.plot([0, 1], [0, 1], linestyle="--", color="grey", label="random")
    gains.axvline(top_fraction, color="black", linewidth=0.6)
    gains.set(
        xlabel="share of customers contacted", ylabel="share of buyers reached", title="Cumulative gains"
    )
    gains.legend(loc="lower right")
    depth = contacted[1:]
    lift.plot(depth, captured[1:] / depth)
    lift.axhline(1.0, linestyle="--", color="grey")
    lift.axvline(top_fraction, color="black", linewidth=0.6)
    lift.set(xlabel="share of customers contacted", ylabel="cumulative lift", title="Lift", xlim=(0, 1))
    return figure


def calibration_figure(curves: dict[str, list[dict[str, float]]]) -> Any:
    """Reliability diagram: observed buyer rate against mean predicted probability, one line per curve
    (each point a tenth of the test customers)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(5, 5))
    top = 0.0
    for label, rows in curves.items():
        predicted = [row["predicted"] for row in rows]
        observed = [row["observed"] for row in rows]
        axis.plot(predicted, observed, marker="o", label=label)
        top = max(top, *predicted, *observed)
    top = min(1.0, top * 1.1) or 1.0
    axis.plot([0, top], [0, top], linestyle="--", color="grey", label="perfectly calibrated")
    axis.set(
        xlabel="mean predicted probability", ylabel="observed buyer rate", title="Calibration (test, deciles)"
    )
    axis.set(xlim=(0, top), ylim=(0, top))
    axis.legend(loc="upper left")
    return figure


class PropensityReport(L.Callback):
    """Marketing outputs of the tested checkpoint (see the module docstring).

    Args:
        calibration: None, "temperature" or "isotonic": a calibrator fitted on the val split's scores.
        top_fraction: share of customers contacted, marked on the gains chart.
    """

    def __init__(self, calibration: str | None = "temperature", top_fraction: float = 0.2):
        self.calibration = calibration
        self.top_fraction = top_fraction

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        tensors = getattr(trainer.datamodule, "tensors", None) if trainer.datamodule is not None else None
        if not tensors or "test" not in tensors:
            return
        # every process holds the whole test split in memory, so all ranks compute (and log) the same values
        logits = score_split(pl_module, tensors["test"])
        targets = tensors["test"]["target"].numpy()
        probabilities = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
        curves = {"model": reliability_bins(probabilities, targets)}
        if self.calibration and "val" in tensors and len(np.unique(tensors["val"]["target"].numpy())) == 2:
            # a cross-fitted ensemble trained on its val rows: fit on their out-of-fold scores instead
            # (scores of single fold networks, a little wider than the merged mean the calibrator is applied to)
            out_of_fold = getattr(pl_module, "out_of_fold_logits", None)
            if out_of_fold is not None:
                pl_module.check_val_rows(len(tensors["val"]["target"]))
            val_scores = (
                out_of_fold.detach().cpu().numpy()
                if out_of_fold is not None
                else score_split(pl_module, tensors["val"])
            )
            calibrator = fit_calibrator(self.calibration, val_scores, tensors["val"]["target"].numpy())
            calibrated = calibrator(logits)
            curves[f"{self.calibration} (fitted on val)"] = reliability_bins(calibrated, targets)
            pl_module.log("test/ece_calibrated", _ece(calibrated, targets))
            pl_module.log("test/log_loss_calibrated", log_loss(calibrated, targets))
        if trainer.is_global_zero:
            save_figure(trainer, gains_lift_figure(logits, targets, self.top_fraction), "gains_lift")
            save_figure(trainer, calibration_figure(curves), "calibration")
            save_table(trainer, decile_table(logits, targets), "decile_table")
