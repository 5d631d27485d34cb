"""The exported customer value model: raw calibration features in, expected spend and probability of
buying out, and the rating's cut points beside the graph.

Graph inputs: `features (batch, F) float32` raw calibration features (the graph scales them) and, for a
model with a GRU, `sequence (batch, periods, 3) float32`. Outputs: `predicted_spend (batch,) float32`
(expected spend in the holdout window) and, for the ZILN head, `buy_probability (batch,) float32`.
`preprocessing.json` holds how to compute the inputs from a raw purchase log
(`adlab.harness.customer_export`) and, under `rating`, the tiers and the predicted spend that opens each
decile and tier among the run's test customers (from `predictions.parquet` beside the tested checkpoint),
so that one new customer gets a decile without a batch to rank against.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from torch import Tensor, nn

from adlab.harness.checkpoints import StoredRun
from adlab.harness.customer_export import (
    ScaledFeatures,
    customers_preprocessing,
    example_inputs,
    stored_scaling,
)
from adlab.harness.exporting import ExportSpec

TASK = "customer_value"


class ValueGraph(nn.Module):
    """A `ValueModule` with its feature scaling: raw features (and sequence) -> expected spend (and
    probability of buying), the mean over the ensemble's members as in `predict_value`."""

    def __init__(self, module: nn.Module, scaling: ScaledFeatures):
        super().__init__()
        self.module = module
        self.scaling = scaling

    def forward(self, features: Tensor, sequence: Tensor | None = None) -> tuple[Tensor, ...]:
        spend, probability = self.module.predict_value(self.scaling(features), sequence)
        return (spend,) if probability is None else (spend, probability)


def reference_rating(stored: StoredRun, tiers: list[float]) -> dict[str, Any] | None:
    """The predicted spend that opens deciles 1-9 and tiers A and B among the run's test customers, read
    from `predictions.parquet` beside `best.ckpt` (the checkpoint the run tested); None for another
    checkpoint or when the run wrote no predictions."""
    run = stored.path.resolve().parent.parent
    path = run / "predictions.parquet"
    if stored.path.name != "best.ckpt" or not path.is_file():
        return None
    spend = pd.read_parquet(path, columns=["predicted_spend"])["predicted_spend"].to_numpy(np.float64)
    spend = spend[np.isfinite(spend)]
    if len(spend) < 10:
        return None
    return {
        "reference": f"predicted spend of the run's {len(spend)} test customers ({Path(path).name})",
        "tiers": list(tiers),
        # a customer is in decile 1 + the number of these thresholds above their predicted spend
        "decile_thresholds": [float(np.quantile(spend, 1 - d / 10)) for d in range(1, 10)],
        # tier A from the first threshold up, B from the second, C below
        "tier_thresholds": [float(np.quantile(spend, 1 - share)) for share in tiers],
    }


def value_spec(module: Any, stored: StoredRun) -> ExportSpec:
    """The spec `adlab-export` writes for a `ValueModule` rebuilt from `stored`."""
    meta, scaling = stored_scaling(stored, "the value model")
    reads_sequence = bool(module.use_sequence)
    graph = ValueGraph(module.eval(), ScaledFeatures(scaling)).eval()
    inputs = example_inputs(scaling, meta, reads_sequence)
    outputs = {
        "predicted_spend": f"(batch,) float32: expected spend in the {meta.holdout_days} days after the cutoff"
    }
    if module.head == "ziln":
        outputs["buy_probability"] = "(batch,) float32: probability of any purchase in those days"
    preprocessing = customers_preprocessing(stored, TASK, reads_sequence, outputs)
    preprocessing["rating"] = reference_rating(stored, list(module.tiers))
    names = ["features", "sequence"][: len(inputs)]
    return ExportSpec(graph, inputs, names, list(outputs), preprocessing)
