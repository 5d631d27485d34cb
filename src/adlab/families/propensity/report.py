"""The marketing report of a propensity scorer: gains/lift chart, calibration plot, decile table, calibration.

Runs when the selected checkpoint is tested (`adlab-train` and `adlab-eval`), on the val and test rows the
trainer serves the module, and writes into the run directory:
`plots/gains_lift.png`, `plots/calibration.png` (also W&B images), `decile_table.csv` (also a W&B table),
and logs `test/ece_calibrated` / `test/log_loss_calibrated` when a calibrator is fitted on val.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import numpy as np
import torch
from torchmetrics.functional.classification import binary_calibration_error

from adlab.harness.artifacts import pyplot, save_figure, save_table
from adlab.metrics.calibration import fit_calibrator, log_loss, reliability_bins
from adlab.metrics.ranking import cumulative_gains, decile_table


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
    plt = pyplot()

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
    plt = pyplot()

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

    It reads the rows the trainer serves the module: the test rows of `trainer.test`, and the val rows of
    the `trainer.validate` before it (adlab-train and adlab-eval validate the checkpoint they test; the
    module keeps one report, so those rows carry over). Without a validation first, nothing is calibrated.
    Batches are dicts holding `categorical`, `numeric` and `target` (the propensity batch contract).

    Args:
        calibration: None, "temperature" or "isotonic": a calibrator fitted on the val split's scores.
        top_fraction: share of customers contacted, marked on the gains chart.
    """

    def __init__(self, calibration: str | None = "temperature", top_fraction: float = 0.2):
        self.calibration = calibration
        self.top_fraction = top_fraction
        self._val: list[dict[str, torch.Tensor]] = []
        self._test: list[dict[str, torch.Tensor]] = []

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn == "validate":
            self._val = []

    def on_validation_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if trainer.state.fn == "validate":  # not the validations inside a fit: their weights are not tested
            self._val.append(_inputs(batch))

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._test = []

    def on_test_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self._test.append(_inputs(batch))

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._test:
            return
        # every process gathers the whole test split, so all ranks compute (and log) the same values
        test = _all_rows(pl_module, self._test)
        logits = score_split(pl_module, test)
        targets = test["target"].cpu().numpy()
        probabilities = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
        curves = {"model": reliability_bins(probabilities, targets)}
        val = _all_rows(pl_module, self._val) if self._val else None
        if self.calibration and val is not None and len(np.unique(val["target"].cpu().numpy())) == 2:
            val_targets = val["target"].cpu().numpy()
            # a cross-fitted ensemble trained on its val rows: fit on their out-of-fold scores instead
            # (scores of single fold networks, a little wider than the merged mean the calibrator is applied
            # to); its validation checked that the val rows are the pool rows it stored them for, in order
            out_of_fold = getattr(pl_module, "out_of_fold_logits", None)
            val_scores = (
                out_of_fold.detach().cpu().numpy()[: len(val_targets)]
                if out_of_fold is not None
                else score_split(pl_module, val)
            )
            calibrator = fit_calibrator(self.calibration, val_scores, val_targets)
            calibrated = calibrator(logits)
            curves[f"{self.calibration} (fitted on val)"] = reliability_bins(calibrated, targets)
            pl_module.log("test/ece_calibrated", _ece(calibrated, targets))
            pl_module.log("test/log_loss_calibrated", log_loss(calibrated, targets))
        if trainer.is_global_zero:
            save_figure(trainer, gains_lift_figure(logits, targets, self.top_fraction), "gains_lift")
            save_figure(trainer, calibration_figure(curves), "calibration")
            save_table(trainer, decile_table(logits, targets), "decile_table")


def _inputs(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {name: batch[name].detach() for name in ("categorical", "numeric", "target")}


def _all_rows(
    pl_module: L.LightningModule, batches: list[dict[str, torch.Tensor]]
) -> dict[str, torch.Tensor]:
    """One split's rows from the batches this process served, in the split's order; under distributed
    evaluation, every process's (each served the interleaved shard `rank, rank + world, ...`, padded to
    equal length by repeating the first rows, which then stand at the end)."""
    rows = {name: torch.cat([batch[name] for batch in batches]) for name in batches[0]}
    if pl_module.trainer.world_size == 1:
        return rows
    gathered = pl_module.all_gather(rows)  # name -> (world, rows per process, ...)
    return {name: t.transpose(0, 1).reshape(-1, *t.shape[2:]) for name, t in gathered.items()}
