"""Transactions source: a purchase log (customer, date, amount) cut into a calibration and a holdout window.

One row per customer who bought on or before `cutoff`. From that customer's transactions up to the cutoff
(inclusive) it builds calibration features (recency, frequency, monetary value, tenure, inter-purchase
statistics, recent activity) and the spend sequence by week or month; the target is the customer's spend
in the holdout window `(cutoff, holdout_end]` (zero for most). Nothing dated after the cutoff reaches
the features. Customers are split stratified on "bought in the holdout" (`labels`).

A purchase is a customer's day with a non-negative amount (several lines on one day are one order);
negative amounts are refunds, handled by `refunds`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from adlab.data.customer_features import (
    CALIBRATION_COLUMNS,
    PERIODS,
    REFUNDS,
    SEQUENCE_CHANNELS,
    LogFormat,
    customer_summary,
    parse_amounts,
    parse_dates,
    period_index,
    validate_log,
)
from adlab.data.features import DataMeta, TransactionsFeatures, TransactionsMeta
from adlab.data.sources.base import SEPARATORS, BuiltData, NewData, read_log
from adlab.errors import AdlabError

# re-exported: callers of the source keep importing them from here
__all__ = [
    "CALIBRATION_COLUMNS",
    "SEQUENCE_CHANNELS",
    "TransactionsSource",
    "generate_transactions",
    "parse_amounts",
    "parse_dates",
    "period_index",
]


def _day(value: str, name: str) -> pd.Timestamp:
    try:
        return pd.Timestamp(str(value)).normalize()
    except ValueError:
        raise AdlabError(f"data.source.{name}={value!r}: expected an ISO date such as 1997-09-30") from None


@dataclass
class TransactionsRaw:
    """One row per customer who bought on or before the cutoff (the split's unit).

    Attributes:
        customers: `(n,)` customer ids as strings, in row order.
        features: `(n, F)` float64 calibration features, named by `feature_names`.
        calibration: `(n, C)` float64 raw statistics for baselines (`CALIBRATION_COLUMNS`).
        sequence: `(n, periods, 3)` float32 per-period channels, oldest period first, the cutoff's last.
        target: `(n,)` float64 spend in the holdout window (zero when the customer bought nothing).
        labels: `(n,)` 0/1 "bought in the holdout", for stratification.
        id_name: the customer column's name (`row_ids` are the customers: per-row predictions are keyed by them).
    """

    customers: np.ndarray
    features: np.ndarray
    feature_names: list[str]
    calibration: np.ndarray
    sequence: np.ndarray
    target: np.ndarray
    labels: np.ndarray
    calibration_days: int
    holdout_days: int
    id_name: str = "customer"

    @property
    def row_ids(self) -> np.ndarray:
        """The customers, for `MarketingDataModule.row_ids` (predictions keyed by customer)."""
        return self.customers


class TransactionsSource:
    """Read a purchase log (CSV or parquet) and build per-customer calibration features and holdout spend.

    Args:
        path: CSV, text or parquet file, one line per transaction.
        customer: the customer id column.
        date: the transaction date column.
        amount: the amount column (numbers or currency strings; negative = refund).
        cutoff: last day of the calibration window (ISO date, inclusive): features see transactions up to it.
        holdout_end: last day of the holdout window (ISO date, inclusive): the target is the spend in
            `(cutoff, holdout_end]`.
        quantity: optional units column (adds total and mean units per order).
        product: optional product column (adds the number of distinct products bought).
        date_format: strftime pattern of the dates; None reads ISO 8601 or `%Y%m%d`.
        dayfirst: read dates such as 31/01/1997 (day first) when `date_format` is None.
        refunds: negative amounts: "net" (subtracted from spend; counted as refund features), "drop"
            (ignored) or "error" (refused).
        period: "week" or "month": the step of the spend sequence, counted back from the cutoff.
        max_periods: the sequence covers at most this many periods before the cutoff (older ones only
            reach the summary features).
        separator: for CSV and text files: "comma", "semicolon", "tab", "whitespace" or None (sniffed).
        name: dataset name for reports.
    """

    def __init__(
        self,
        path: str,
        customer: str,
        date: str,
        amount: str,
        cutoff: str,
        holdout_end: str,
        quantity: str | None = None,
        product: str | None = None,
        date_format: str | None = None,
        dayfirst: bool = False,
        refunds: str = "net",
        period: str = "week",
        max_periods: int = 104,
        separator: str | None = "comma",
        name: str = "transactions",
    ):
        if refunds not in REFUNDS:
            raise AdlabError(f"data.source.refunds={refunds!r}: expected one of {REFUNDS}")
        if period not in PERIODS:
            raise AdlabError(f"data.source.period={period!r}: expected one of {PERIODS}")
        if separator is not None and separator not in SEPARATORS:
            raise AdlabError(
                f"data.source.separator={separator!r}: expected one of {sorted(SEPARATORS)} or null"
            )
        if int(max_periods) < 1:
            raise AdlabError(f"data.source.max_periods={max_periods}: expected at least 1")
        self.path = str(path)
        self.columns = {"customer": customer, "date": date, "amount": amount}
        self.quantity, self.product = quantity, product
        # parsed when read (`cutoff`, `holdout_end`), so that building the source reads nothing
        self._cutoff, self._holdout_end = cutoff, holdout_end
        self.date_format, self.dayfirst = date_format, bool(dayfirst)
        self.refunds, self.period, self.max_periods = refunds, period, int(max_periods)
        self.separator = separator
        self.name = name

    @property
    def cutoff(self) -> pd.Timestamp:
        """The last day of the calibration window."""
        return _day(self._cutoff, "cutoff")

    @property
    def holdout_end(self) -> pd.Timestamp:
        """The last day of the holdout window (after the cutoff)."""
        end = _day(self._holdout_end, "holdout_end")
        if end <= self.cutoff:
            raise AdlabError(
                f"data.source.holdout_end={self._holdout_end}: expected a date after "
                f"data.source.cutoff={self._cutoff}"
            )
        return end

    # ------------------------------------------------------------------ reading
    def read_frame(self) -> pd.DataFrame:
        """The file as a frame of strings (CSV) or typed columns (parquet); `AdlabError` when unreadable."""
        return read_log(self.path, "data.source.path", self.separator)

    @property
    def log_format(self) -> LogFormat:
        """How the log is read (columns, dates, refunds): what an exported package repeats for new logs."""
        return LogFormat(
            **self.columns,
            quantity=self.quantity,
            product=self.product,
            date_format=self.date_format,
            dayfirst=self.dayfirst,
            refunds=self.refunds,
        )

    def transactions(self) -> pd.DataFrame:
        """The validated log: `customer str, date datetime64, amount float64[, quantity, product]`."""
        return validate_log(self.read_frame(), self.log_format, f"data.source.path={self.path}")

    def _check_window(self, log: pd.DataFrame) -> None:
        first, last = log["date"].min(), log["date"].max()
        span = f"the data's dates run from {first.date()} to {last.date()}"
        if not first <= self.cutoff < last:
            raise AdlabError(f"data.source.cutoff={self.cutoff.date()} is outside the data: {span}")
        if self.holdout_end > last:
            raise AdlabError(
                f"data.source.holdout_end={self.holdout_end.date()} is after the data's last date "
                f"({last.date()}): the holdout spend would be cut short; expected a date up to {last.date()}"
            )
        holdout = (log["date"] > self.cutoff) & (log["date"] <= self.holdout_end)
        if not holdout.any():
            raise AdlabError(
                f"the holdout window ({self.cutoff.date()}, {self.holdout_end.date()}] holds no transactions; "
                f"expected a later data.source.holdout_end ({span})"
            )

    # ------------------------------------------------------------------ features
    def load(self) -> TransactionsRaw:
        """Read, validate and summarise the log per customer (see the module docstring)."""
        log = self.transactions()
        self._check_window(log)
        start = log["date"].min()
        periods = min(
            self.max_periods, period_index(pd.Series([start]), self.cutoff, self.period).iloc[0] + 1
        )
        return self._summarise(log, periods, int((self.cutoff - start).days) + 1)

    def _summarise(
        self, log: pd.DataFrame, periods: int, calibration_days: int, labelled: bool = True
    ) -> TransactionsRaw:
        """Per-customer features, sequence and holdout spend of a validated log (without `labelled`, no
        holdout window is read: the target is zero and `holdout_end` may even precede the cutoff)."""
        end = self.holdout_end if labelled else self.cutoff
        holdout_log = log[(log["date"] > self.cutoff) & (log["date"] <= end)]
        summary, sequence = customer_summary(
            log, self.cutoff, self.period, periods, bool(self.quantity), bool(self.product)
        )
        customers = summary.index.to_numpy()
        holdout_spend = holdout_log.groupby("customer")["amount"].sum()
        # a net refund of a calibration purchase in the holdout is not negative value to forecast
        target = holdout_spend.reindex(customers, fill_value=0.0).clip(lower=0.0).to_numpy(dtype=np.float64)
        return TransactionsRaw(
            customers=customers.astype(str),
            features=summary.to_numpy(dtype=np.float64),
            feature_names=list(summary.columns),
            calibration=summary[list(CALIBRATION_COLUMNS)].to_numpy(dtype=np.float64),
            sequence=sequence,
            target=target,
            labels=(target > 0).astype(np.int64),
            calibration_days=calibration_days,
            holdout_days=int((end - self.cutoff).days),
            id_name=self.columns["customer"],
        )

    def build_new(self, meta: DataMeta, preprocessing: dict[str, Any], labelled: bool) -> NewData:
        """A new purchase log's customers built with a trained run's scaling (`adlab-eval` and
        `adlab-predict` with `data.source.path=FILE`): features as of the run's cutoff, or of a later
        `data.source.cutoff` given to adlab-predict (customers rated as of that day), nothing refitted.

        Every customer with a purchase on or before the cutoff is scored; with `labelled` the log must also
        cover the holdout window, whose spend becomes the target.
        """
        if not isinstance(meta, TransactionsMeta):
            raise AdlabError(
                f"data.source: a transactions log cannot be scored by a model of {meta.kind} data"
            )
        scaling = TransactionsFeatures.from_dict(preprocessing)
        log = self.transactions()
        if labelled:
            self._check_window(log)
        elif not (log["date"] <= self.cutoff).any():
            raise AdlabError(
                f"data.source.path={self.path}: no transaction on or before the model's cutoff "
                f"{self.cutoff.date()} (the file starts {log['date'].min().date()}); expected purchase "
                "histories up to the cutoff"
            )
        raw = self._summarise(log, meta.periods, meta.calibration_days, labelled)
        missing = [name for name in scaling.names if name not in raw.feature_names]
        if missing:
            raise AdlabError(
                f"data.source.path={self.path}: cannot compute the features {missing} the model was trained "
                "on; expected the same columns as the training log (quantity, product)"
            )
        columns = [raw.feature_names.index(name) for name in scaling.names]
        tensors = {
            "features": torch.from_numpy(scaling.transform(raw.features[:, columns])),
            "sequence": torch.from_numpy(raw.sequence),
            "calibration": torch.from_numpy(raw.calibration),
            "customer": torch.arange(len(raw.customers)),
        }
        if labelled:
            tensors["target"] = torch.from_numpy(raw.target.astype(np.float32))
        later = log.loc[log["date"] > self.cutoff, "customer"].nunique() - int(
            np.isin(raw.customers, log.loc[log["date"] > self.cutoff, "customer"].unique()).sum()
        )
        notes = [
            f"features as of {self.cutoff.date()}; predicted spend is for the {meta.holdout_days} days after it"
        ]
        notes += (
            [f"{later} customers whose first purchase is after the cutoff are not scored"] if later else []
        )
        return NewData(tensors=tensors, row_ids=raw.customers, id_name=raw.id_name, notes=notes)

    def build(self, raw: TransactionsRaw, splits: dict[str, np.ndarray]) -> BuiltData:
        """Scale the features with statistics of the train customers only; tensors per split.

        Batch contract (rows = customers): `features (rows, F) float32` (signed log1p, standardised),
        `sequence (rows, periods, 3) float32`, `calibration (rows, C) float64` (raw statistics for
        baselines), `target (rows,) float32` holdout spend, `customer (rows,) int64` row of the customer in
        `raw.customers`.
        """
        scaling = TransactionsFeatures.fit(raw.feature_names, raw.features[splits["train"]])
        features = scaling.transform(raw.features)
        tensors = {
            stage: {
                "features": torch.from_numpy(features[rows].astype(np.float32)),
                "sequence": torch.from_numpy(raw.sequence[rows]),
                "calibration": torch.from_numpy(raw.calibration[rows]),
                "target": torch.from_numpy(raw.target[rows].astype(np.float32)),
                "customer": torch.from_numpy(np.asarray(rows, dtype=np.int64)),
            }
            for stage, rows in splits.items()
        }
        meta = TransactionsMeta(
            dataset=self.name,
            rows={stage: int(len(rows)) for stage, rows in splits.items()},
            features=list(raw.feature_names),
            calibration_columns=list(CALIBRATION_COLUMNS),
            sequence_channels=list(SEQUENCE_CHANNELS),
            periods=int(raw.sequence.shape[1]),
            period=self.period,
            cutoff=str(self.cutoff.date()),
            holdout_end=str(self.holdout_end.date()),
            calibration_days=raw.calibration_days,
            holdout_days=raw.holdout_days,
        )
        return BuiltData(tensors=tensors, meta=meta, state=scaling)


def generate_transactions(
    customers: int = 200, seed: int = 0, start: str = "2020-01-01", days: int = 360
) -> pd.DataFrame:
    """A purchase log with the schema `customer_id, date (ISO), amount, quantity` for tests and notebooks.

    Customers arrive in the first sixth of the `days`, then buy as in BG/NBD: at a Gamma-distributed rate
    until they drop out (after each purchase with a Beta-distributed probability); order values are
    Gamma-distributed around a lognormal customer mean. With the defaults a cutoff at day 180
    (2020-06-29) leaves about a third of the customers buying in the holdout.
    """
    generator = np.random.default_rng(seed)
    first_day = pd.Timestamp(start)
    rows = []
    for index in range(customers):
        rate = generator.gamma(0.8, 1 / 25)  # purchases per day while active
        dropout = generator.beta(1.0, 4.0)
        mean_value = np.exp(generator.normal(3.3, 0.5))
        day = float(generator.integers(0, max(days // 6, 1)))
        while day < days:
            quantity = 1 + generator.poisson(1.0)
            amount = round(float(generator.gamma(4.0, mean_value / 4.0)), 2)
            rows.append(
                (
                    f"C{index:05d}",
                    (first_day + pd.Timedelta(days=int(day))).date().isoformat(),
                    amount,
                    quantity,
                )
            )
            if generator.random() < dropout:
                break
            day += generator.exponential(1 / max(rate, 1e-6))
    return pd.DataFrame(rows, columns=["customer_id", "date", "amount", "quantity"])
