"""The family-free parts of exporting a model of customers' transactions (the value and segments families).

Such a package's graph takes each customer's raw calibration features (and, when the model reads it, the
spend sequence) as of a cutoff day and does the feature scaling itself; `preprocessing.json` says how to
compute those inputs from a raw purchase log: the log's columns and date format, the refunds rule, the
cutoff, the features in graph order with their definitions, the sequence's period and length. The
serving side (`adlab.serving.customers`) computes them with `adlab.data.customer_features`, which imports
neither torch nor any family.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from adlab.data.customer_features import FEATURE_DEFINITIONS, LogFormat
from adlab.data.features import TransactionsFeatures, TransactionsMeta
from adlab.errors import AdlabError
from adlab.harness.checkpoints import StoredRun
from adlab.harness.exporting import preprocessing_header
from adlab.serving.customers import CUSTOMERS_FORMAT

EXAMPLE_ROWS = 64  # customers in the parity check's example inputs


class ScaledFeatures(nn.Module):
    """The transactions source's feature scaling inside the graph (`TransactionsFeatures.transform`):
    raw features `(batch, F) float32` -> `sign(x) * log1p(|x|)`, standardised with the train customers'
    mean and scale -> `(batch, F) float32`."""

    def __init__(self, scaling: TransactionsFeatures):
        super().__init__()
        self.register_buffer("mean", torch.tensor(scaling.mean, dtype=torch.float32))
        self.register_buffer("scale", torch.tensor(scaling.scale, dtype=torch.float32))

    def forward(self, features: Tensor) -> Tensor:
        logged = torch.sign(features) * torch.log1p(features.abs())
        return (logged - self.mean) / self.scale


def stored_scaling(stored: StoredRun, what: str) -> tuple[TransactionsMeta, TransactionsFeatures]:
    """The run's transactions meta and fitted scaling; `AdlabError` naming `what` for another kind of data."""
    if not isinstance(stored.meta, TransactionsMeta):
        raise AdlabError(
            f"ckpt_path={stored.path}: {what} of {stored.meta.kind} data cannot be exported yet; expected a "
            "model of transactions data"
        )
    return stored.meta, TransactionsFeatures.from_dict(stored.preprocessing)


def stored_log_format(stored: StoredRun) -> tuple[LogFormat, str | None]:
    """How the run's purchase log was read (`LogFormat`) and its separator, from the stored data config."""
    source = stored.config.get("data", {}).get("source", {})
    fields = ("customer", "date", "amount", "quantity", "product", "date_format", "dayfirst", "refunds")
    missing = [name for name in ("customer", "date", "amount") if not source.get(name)]
    if missing:
        raise AdlabError(
            f"ckpt_path={stored.path}: its config names no {missing} column of the purchase log; expected a "
            "run of the transactions source"
        )
    log_format = LogFormat(**{name: source[name] for name in fields if name in source})
    return log_format, source.get("separator")


def example_inputs(
    scaling: TransactionsFeatures, meta: TransactionsMeta, reads_sequence: bool, seed: int = 0
) -> tuple[Tensor, ...]:
    """Raw features (and sequences) for tracing and the parity check, `EXAMPLE_ROWS` customers: standard
    normal scaled values mapped back through the scaling (what train customers look like), and zeros."""
    generator = torch.Generator().manual_seed(seed)
    count = len(scaling.names)
    scaled = torch.randn(EXAMPLE_ROWS, count, generator=generator, dtype=torch.float64)
    logged = scaled * torch.tensor(scaling.scale, dtype=torch.float64) + torch.tensor(
        scaling.mean, dtype=torch.float64
    )
    features = (torch.sign(logged) * torch.expm1(logged.abs())).float()
    features[0] = 0.0
    if not reads_sequence:
        return (features,)
    periods, channels = int(meta.periods), len(meta.sequence_channels)
    sequence = torch.zeros(EXAMPLE_ROWS, periods, channels)
    bought = (torch.rand(EXAMPLE_ROWS, periods, generator=generator) < 0.2).float()
    sequence[..., 0] = bought * torch.rand(EXAMPLE_ROWS, periods, generator=generator) * 6
    sequence[..., 1] = bought
    sequence[..., 2] = (torch.cumsum(bought, dim=1) > 0).float()
    return features, sequence


def customers_preprocessing(
    stored: StoredRun, task: str, reads_sequence: bool, outputs: dict[str, str]
) -> dict[str, Any]:
    """`preprocessing.json` of a customers package: everything that turns a raw purchase log into the graph's
    inputs, and what the graph answers (`outputs`: name -> shape, dtype and meaning)."""
    meta, scaling = stored_scaling(stored, task)
    log_format, separator = stored_log_format(stored)
    count = len(scaling.names)
    inputs = {
        "features": f"(batch, {count}) float32: each customer's raw calibration features as of the cutoff, "
        "in `features` order (unscaled: the graph scales them)"
    }
    if reads_sequence:
        inputs["sequence"] = (
            f"(batch, {meta.periods}, {len(meta.sequence_channels)}) float32: per {meta.period} before the "
            f"cutoff (oldest first, the cutoff's {meta.period} last), the channels `sequence.channels`"
        )
    return {
        **preprocessing_header(meta.kind),
        "task": task,
        "inputs_from": CUSTOMERS_FORMAT,
        "log": log_format.to_dict(),
        "separator": separator,
        "cutoff": meta.cutoff,
        "holdout_days": meta.holdout_days,
        # graph order; `kind` and `name` as every package's metadata lists features
        "features": [
            {"name": name, "kind": "numeric", "definition": FEATURE_DEFINITIONS.get(name, "")}
            for name in scaling.names
        ],
        "scaling": {
            "transform": "sign(x) * log1p(|x|), then (x - mean) / scale, per feature",
            "mean": list(scaling.mean),
            "scale": list(scaling.scale),
        },
        "sequence": {
            "read": reads_sequence,
            "period": meta.period,
            "periods": int(meta.periods),
            "channels": list(meta.sequence_channels),
        },
        "inputs": inputs,
        "outputs": outputs,
        "in_graph": ["the feature scaling", "the network"],
        "outside_graph": [
            "reading the log as `log` says (dates, amounts, refunds); lines of one customer and day are one "
            "purchase day (negative lines are refunds)",
            "each customer's features from their lines dated on or before the cutoff "
            "(adlab.data.customer_features.customer_summary); later lines are ignored",
            "customers without a line on or before the cutoff are not scored",
        ],
    }
