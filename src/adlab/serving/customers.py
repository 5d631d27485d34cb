"""`CustomerScorer`: customers' purchase logs in, one answer per customer out, from an exported customer
value or segments package alone (no family code, no training data, no torch).

The package (`adlab-export` of a value or segments checkpoint; `adlab.harness.customer_export`) says in
`preprocessing.json` how the log is read (`log`: columns, date format, refunds), the cutoff, the features
in graph order and the spend sequence's shape. The scorer validates the log with the same code as
training (`adlab.data.customer_features`), computes each customer's features as of the cutoff (or a later
`as_of` day: the model then forecasts the same window length after it), runs the graph and answers:

- value: `predicted_spend`, `buy_probability` (ZILN head), and `decile` (1 = best) and `tier` (A/B/C) when
  the package carries the thresholds of its run's test customers (`rating`);
- segments: `segment`, `segment_name`, `distance` (to the segment's centre in the embedding).

Customers with no purchase on or before the as-of day are not scored (`CustomerScores.not_scored`).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from adlab.data.customer_features import LogFormat, customer_summary, validate_log
from adlab.errors import AdlabError
from adlab.serving.backends import load_backend
from adlab.serving.package import GRAPH_MAX_ROWS, ModelPackage, load_package

# preprocessing.json's `inputs_from` for these packages (written by harness/customer_export.py)
CUSTOMERS_FORMAT = "customers-from-transactions"
TASKS = ("customer_value", "customer_segments")
_DAY = re.compile(r"\d{4}-?\d{2}-?\d{2}", re.ASCII)


@dataclass
class CustomerScores:
    """One answer per scored customer, columns in output order.

    Attributes:
        customers: `(n,)` customer ids (strings), sorted.
        columns: name -> `(n,)` values (floats, ints or strings); a non-finite float is a value the graph's
            float32 arithmetic could not hold (counted in `overflowed`).
        not_scored: customers of the log without a purchase on or before `as_of`.
        as_of: the day the features were computed at.
        overflowed: customers whose answer holds a non-finite value.
    """

    customers: np.ndarray
    columns: dict[str, np.ndarray]
    not_scored: list[str]
    as_of: pd.Timestamp
    overflowed: list[str] = field(default_factory=list)

    def frame(self, id_name: str) -> pd.DataFrame:
        """The answers as a table: the customer column (named `id_name`), then `columns`."""
        return pd.DataFrame({id_name: self.customers, **self.columns})

    def records(self) -> list[dict[str, Any]]:
        """The answers as JSON objects `{"customer": id, column: value ...}` (non-finite floats as null)."""
        names = list(self.columns)
        values = [self.columns[name].tolist() for name in names]
        return [
            {"customer": customer, **{n: _json_value(v[i]) for n, v in zip(names, values, strict=True)}}
            for i, customer in enumerate(self.customers.tolist())
        ]


def _json_value(value: Any) -> Any:
    missing = value is None or value is pd.NA or (isinstance(value, float) and not np.isfinite(value))
    return None if missing else value


def _blanked(values: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """`values` with `rows` missing (NaN for floats, None otherwise: an object column)."""
    if values.dtype.kind == "f":
        return np.where(rows, np.nan, values)
    blanked = values.astype(object)
    blanked[rows] = None
    return blanked


class CustomerScorer:
    """Rate or segment customers from their purchase log with an exported package.

    Args:
        package: an export of a `ValueModule` or a `SegmentModule` trained on transactions.
        threads: graph runtime intra-op threads.
        allow_torchscript: run a TorchScript package's code (see `load_backend`).
    """

    def __init__(self, package: ModelPackage, threads: int = 1, allow_torchscript: bool = False):
        pre = package.preprocessing
        if pre.get("inputs_from") != CUSTOMERS_FORMAT or pre.get("task") not in TASKS:
            raise AdlabError(
                f"model={package.directory}: not a package of customers from transactions (its preprocessing "
                f"describes task {pre.get('task')!r}); expected an export of a value or segments checkpoint"
            )
        self.package = package
        self.task: str = pre["task"]
        self.log_format = LogFormat(**pre["log"])
        self.separator: str | None = pre.get("separator")
        self.cutoff = pd.Timestamp(pre["cutoff"])
        self.features = [feature["name"] for feature in pre["features"]]
        sequence = pre["sequence"]
        self.reads_sequence = bool(sequence["read"])
        self.period, self.periods = str(sequence["period"]), int(sequence["periods"])
        self.outputs = list(pre["outputs"])
        self.rating: dict[str, Any] | None = pre.get("rating")
        self.segment_names: list[str] = list((pre.get("segments") or {}).get("names") or [])
        self.backend = load_backend(package, threads, allow_torchscript)

    @property
    def model_version(self) -> str:
        return self.package.model_version

    @property
    def columns(self) -> dict[str, str]:
        """Role -> column name of the log columns the model reads (customer, date, amount[, quantity, product])."""
        return self.log_format.columns

    def answer_columns(self) -> list[str]:
        """The names of the per-customer answers, in output order."""
        if self.task == "customer_segments":
            return ["segment", "segment_name", "distance"]
        names = ["predicted_spend"] + (["buy_probability"] if "buy_probability" in self.outputs else [])
        return names + (["decile", "tier"] if self.rating else [])

    def as_of_day(self, as_of: Any, what: str = "as_of") -> pd.Timestamp:
        """`as_of` (a day as YYYY-MM-DD or YYYYMMDD, or None for the package's cutoff) as a timestamp;
        `AdlabError` naming `what` otherwise."""
        if as_of is None:
            return self.cutoff
        text = str(as_of) if isinstance(as_of, (str, int)) and not isinstance(as_of, bool) else ""
        try:
            day = pd.Timestamp(text) if _DAY.fullmatch(text) else None
        except ValueError:
            day = None
        if day is None:
            raise AdlabError(f"{what}={as_of!r}: expected a day such as {self.cutoff.date()}")
        return day

    def validated_log(self, frame: pd.DataFrame, where: str, iso_dates: bool = False) -> pd.DataFrame:
        """A frame of raw log lines validated as training read its log; `iso_dates` reads dates as ISO days
        whatever the training file's format (JSON requests)."""
        log_format = self.log_format
        if iso_dates:
            log_format = dataclasses.replace(log_format, date_format=None, dayfirst=False)
        return validate_log(
            frame,
            log_format,
            where,
            column_hint="expected the columns of the training log",
            date_hint=f"the model reads dates as {self._date_rule()}",
            refund_hint="the model was trained with refunds=error",
        )

    def _date_rule(self) -> str:
        if self.log_format.date_format:
            return repr(self.log_format.date_format)
        return "day-first dates" if self.log_format.dayfirst else "ISO dates or YYYYMMDD"

    def score_log(self, log: pd.DataFrame, as_of: pd.Timestamp | None = None) -> CustomerScores:
        """Answers for every customer of a validated log (`validated_log`) with a purchase on or before
        `as_of` (default: the package's cutoff)."""
        as_of = self.cutoff if as_of is None else as_of
        summary, sequence = customer_summary(
            log,
            as_of,
            self.period,
            self.periods,
            has_quantity=bool(self.log_format.quantity),
            has_product=bool(self.log_format.product),
        )
        customers = summary.index.to_numpy().astype(str)
        not_scored = sorted(set(log["customer"].unique()) - set(customers))
        inputs = [summary[self.features].to_numpy(np.float32)]
        if self.reads_sequence:
            inputs.append(np.ascontiguousarray(sequence, dtype=np.float32))
        outputs = self._run(inputs) if len(customers) else [np.zeros(0, np.float32) for _ in self.outputs]
        columns = self._answers(dict(zip(self.outputs, outputs, strict=True)))
        bad = ~np.all([np.isfinite(v) for v in outputs if v.dtype.kind == "f"], axis=0)
        if bad.any():  # inputs far outside training overflow float32: no answer rather than a made-up one
            columns = {name: _blanked(values, bad) for name, values in columns.items()}
        return CustomerScores(customers, columns, not_scored, as_of, customers[bad].tolist())

    def _run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        """The graph over every customer, in calls of at most `GRAPH_MAX_ROWS` rows."""
        rows = len(inputs[0])
        parts = [
            self.backend.run_raw([x[i : i + GRAPH_MAX_ROWS] for x in inputs])
            for i in range(0, rows, GRAPH_MAX_ROWS)
        ]
        return [np.concatenate([part[j] for part in parts]) for j in range(len(self.outputs))]

    def _answers(self, outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The graph's outputs as the answer columns (names, segment names, decile and tier)."""
        if self.task == "customer_segments":
            segment = outputs["segment"].astype(np.int64)
            return {
                "segment": segment,
                "segment_name": np.asarray([self.segment_names[s] for s in segment], dtype=object),
                "distance": outputs["distance"].astype(np.float64).round(4),
            }
        spend = outputs["predicted_spend"].astype(np.float64)
        columns = {"predicted_spend": spend.round(2)}
        if "buy_probability" in outputs:
            columns["buy_probability"] = outputs["buy_probability"].astype(np.float64).round(4)
        if self.rating:
            columns["decile"], columns["tier"] = rate(spend, self.rating)
        return columns

    def describe(self) -> dict[str, Any]:
        """What `/metadata` states about the log a request carries and the answers."""
        rules = [
            f"each customer's features are computed from their lines dated on or before as_of (default the "
            f"training cutoff {self.cutoff.date()}); the forecast is for the "
            f"{self.package.preprocessing.get('holdout_days')} days after it"
            if self.task == "customer_value"
            else f"each customer's features are computed from their lines dated on or before as_of (default "
            f"the training cutoff {self.cutoff.date()})",
            "lines of one customer on one day are one purchase day; negative amounts are refunds "
            f"(refunds={self.log_format.refunds})",
            "customers with no purchase on or before as_of are listed in not_scored",
        ]
        if self.task == "customer_value":
            rules.append(
                "decile (1 = best) and tier (A/B/C) place a customer's predicted spend among the run's test "
                "customers"
                if self.rating
                else "no decile or tier: the package carries no reference customers"
            )
        return {
            "task": self.task,
            "columns": self.columns,
            "date_format": self.log_format.date_format,
            "cutoff": str(self.cutoff.date()),
            "features": self.features,
            "answers": self.answer_columns(),
            "segments": self.segment_names or None,
            "rating": self.rating,
            "rules": rules,
        }


def rate(spend: np.ndarray, rating: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """`(decile (n,) int64, tier (n,) str)` of predicted spends against a package's reference thresholds:
    decile 1 + the number of decile thresholds above the spend; tier A from the first tier threshold up, B
    from the second, C below."""
    deciles = np.asarray(rating["decile_thresholds"], dtype=np.float64)
    tiers = np.asarray(rating["tier_thresholds"], dtype=np.float64)
    decile = 1 + (spend[:, None] < deciles[None, :]).sum(axis=1)
    tier = np.where(spend >= tiers[0], "A", np.where(spend >= tiers[1], "B", "C")).astype(object)
    return decile.astype(np.int64), tier


def load_customer_scorer(
    path: str | Path, threads: int = 1, what: str = "model", allow_torchscript: bool = False
) -> CustomerScorer:
    """Open a package directory as a customer scorer; `AdlabError` naming `what` otherwise."""
    return CustomerScorer(load_package(path, what), threads, allow_torchscript)
