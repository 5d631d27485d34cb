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

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from adlab.data.features import DataMeta, TransactionsFeatures, TransactionsMeta
from adlab.data.sources.base import BuiltData, NewData
from adlab.errors import AdlabError

PERIODS = ("week", "month")
REFUNDS = ("net", "drop", "error")
SEPARATORS = {"comma": ",", "semicolon": ";", "tab": "\t", "whitespace": r"\s+"}
SEQUENCE_CHANNELS = ("log_spend", "bought", "active")
# raw calibration statistics handed to baselines (BG/NBD's x, t_x, T in days; Gamma-Gamma's mean spend)
CALIBRATION_COLUMNS = (
    "frequency",
    "recency_days",
    "tenure_days",
    "repeat_mean_spend",
    "total_spend",
    "orders",
)
_CURRENCY = re.compile(r"[$€£¥₹\s]|[A-Z]{3}")
_PLAIN_NUMBER = re.compile(r"^[-+]?(\d+(\.\d*)?|\.\d+)$")
_GROUPED_NUMBER = re.compile(r"^[-+]?\d{1,3}(,\d{3})+(\.\d*)?$")


def parse_amounts(values: pd.Series, column: str) -> np.ndarray:
    """Amounts as float64: numbers, or strings such as "$1,234.50", "1234.5 EUR" and "(12.00)" (negative).

    A comma is read only as a thousands separator ("1,234"); "12,50" and any other text is refused with
    `AdlabError` naming the column and the first such value (a decimal comma is ambiguous).
    """
    if pd.api.types.is_bool_dtype(values):
        raise AdlabError(f"amount column '{column}' holds true/false values; expected numeric amounts")
    if pd.api.types.is_numeric_dtype(values):
        amounts = values.to_numpy(dtype=np.float64)
    else:
        text = values.astype("string").str.strip()
        negative = text.str.startswith("(", na=False) & text.str.endswith(")", na=False)
        cleaned = text.str.strip("()").str.replace(_CURRENCY, "", regex=True)
        valid = cleaned.str.match(_PLAIN_NUMBER) | cleaned.str.match(_GROUPED_NUMBER)
        bad = ~valid.fillna(False) & text.notna()
        if bad.any():
            first = values[bad.to_numpy()].iloc[0]
            raise AdlabError(
                f"amount column '{column}' has {int(bad.sum())} non-numeric values (first: {first!r}); "
                "expected numbers such as 12.5 or $1,234.50"
            )
        amounts = pd.to_numeric(cleaned.str.replace(",", "", regex=False)).to_numpy(dtype=np.float64)
        amounts = np.where(negative.fillna(False).to_numpy(), -np.abs(amounts), amounts)
    missing = ~np.isfinite(amounts)
    if missing.any():
        raise AdlabError(f"amount column '{column}' has {int(missing.sum())} missing or infinite values")
    return amounts


def parse_dates(values: pd.Series, column: str, date_format: str | None, dayfirst: bool) -> pd.Series:
    """Dates as datetime64 (day precision).

    `date_format` None reads ISO 8601 ("1997-01-31", with or without a time) and 8-digit `%Y%m%d`
    ("19970131"); `dayfirst=True` reads "31/01/1997" and "31.01.1997"; otherwise `date_format` is a
    strftime pattern. Unparseable values raise `AdlabError` naming the column and the first bad value.
    """
    text = values.astype("string").str.strip()
    if text.isna().any():
        raise AdlabError(f"date column '{column}' has {int(text.isna().sum())} missing values")
    if date_format is None and not dayfirst and text.str.fullmatch(r"\d{8}").all():
        date_format = "%Y%m%d"
    try:
        if date_format is not None:
            parsed = pd.to_datetime(text, format=date_format)
        elif dayfirst:
            parsed = pd.to_datetime(text, dayfirst=True, format="mixed")
        else:
            parsed = pd.to_datetime(text, format="ISO8601")
    except (ValueError, TypeError):
        parsed = pd.to_datetime(
            text,
            format=date_format or ("mixed" if dayfirst else "ISO8601"),
            dayfirst=dayfirst,
            errors="coerce",
        )
        first = values[parsed.isna().to_numpy()].iloc[0] if parsed.isna().any() else text.iloc[0]
        how = (
            f"format {date_format!r}"
            if date_format
            else ("day-first dates" if dayfirst else "ISO dates such as 1997-01-31, or 19970131")
        )
        raise AdlabError(
            f"date column '{column}' has values that are not dates (first: {first!r}); expected {how} "
            "(set data.source.date_format or data.source.dayfirst=true)"
        ) from None
    if getattr(parsed.dt, "tz", None) is not None:
        parsed = parsed.dt.tz_localize(None)
    return parsed.dt.normalize()


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
        path = Path(self.path)
        if not path.is_file():
            raise AdlabError(f"data.source.path={path}: file not found")
        try:
            if ".parquet" in "".join(path.suffixes).lower():
                frame = pd.read_parquet(path)
            else:
                separator = SEPARATORS[self.separator] if self.separator else None
                frame = pd.read_csv(
                    path, sep=separator, dtype=str, engine="python" if separator != "," else "c"
                )
        except pd.errors.EmptyDataError:
            raise AdlabError(
                f"data.source.path={path}: the file is empty, expected a header and rows"
            ) from None
        except (UnicodeDecodeError, ValueError, OSError, pd.errors.ParserError) as error:
            first = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise AdlabError(
                f"data.source.path={path}: could not read the transactions ({first[:160]})"
            ) from None
        if len(frame) == 0:
            raise AdlabError(f"data.source.path={path}: the file has a header but no rows")
        return frame

    def transactions(self) -> pd.DataFrame:
        """The validated log: `customer str, date datetime64, amount float64[, quantity, product]`."""
        frame = self.read_frame()
        wanted = {**self.columns, "quantity": self.quantity, "product": self.product}
        missing = [f"{role} '{name}'" for role, name in wanted.items() if name and name not in frame.columns]
        if missing:
            raise AdlabError(
                f"data.source.path={self.path}: no {', '.join(missing)} column; the file has "
                f"{list(frame.columns)[:20]} (set data.source.customer/date/amount)"
            )
        customers = frame[self.columns["customer"]]
        if customers.isna().any():
            raise AdlabError(
                f"customer column '{self.columns['customer']}' has {int(customers.isna().sum())} missing values"
            )
        log = pd.DataFrame(
            {
                "customer": customers.astype(str).str.strip().to_numpy(),
                "date": parse_dates(
                    frame[self.columns["date"]], self.columns["date"], self.date_format, self.dayfirst
                ).to_numpy(),
                "amount": parse_amounts(frame[self.columns["amount"]], self.columns["amount"]),
            }
        )
        if self.quantity:
            log["quantity"] = parse_amounts(frame[self.quantity], self.quantity)
        if self.product:
            log["product"] = frame[self.product].astype(str).to_numpy()
        refunds = log["amount"] < 0
        if refunds.any() and self.refunds == "error":
            raise AdlabError(
                f"amount column '{self.columns['amount']}' has {int(refunds.sum())} negative amounts (refunds); "
                "set data.source.refunds=net or drop"
            )
        if self.refunds == "drop":
            log = log[~refunds].reset_index(drop=True)
        return log

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

    def _summarise(self, log: pd.DataFrame, periods: int, calibration_days: int) -> TransactionsRaw:
        """Per-customer features, sequence and holdout spend of a validated log."""
        calibration_log = log[log["date"] <= self.cutoff]
        holdout_log = log[(log["date"] > self.cutoff) & (log["date"] <= self.holdout_end)]
        summary = calibration_features(
            calibration_log, self.cutoff, has_quantity=bool(self.quantity), has_product=bool(self.product)
        )
        customers = summary.index.to_numpy()
        holdout_spend = holdout_log.groupby("customer")["amount"].sum()
        # a net refund of a calibration purchase in the holdout is not negative value to forecast
        target = holdout_spend.reindex(customers, fill_value=0.0).clip(lower=0.0).to_numpy(dtype=np.float64)
        sequence = spend_sequence(calibration_log, customers, self.cutoff, self.period, periods)
        return TransactionsRaw(
            customers=customers.astype(str),
            features=summary.to_numpy(dtype=np.float64),
            feature_names=list(summary.columns),
            calibration=summary[list(CALIBRATION_COLUMNS)].to_numpy(dtype=np.float64),
            sequence=sequence,
            target=target,
            labels=(target > 0).astype(np.int64),
            calibration_days=calibration_days,
            holdout_days=int((self.holdout_end - self.cutoff).days),
            id_name=self.columns["customer"],
        )

    def build_new(self, meta: DataMeta, preprocessing: dict[str, Any], labelled: bool) -> NewData:
        """A new purchase log's customers built with a trained run's scaling (`adlab-eval` and
        `adlab-predict` with `data.source.path=FILE`): features as of the run's cutoff, nothing refitted.

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
        raw = self._summarise(log, meta.periods, meta.calibration_days)
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
        notes = (
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


def period_index(dates: pd.Series, cutoff: pd.Timestamp, period: str) -> pd.Series:
    """Periods before the cutoff: 0 for the week (month) ending at the cutoff, 1 for the one before ..."""
    if period == "week":
        return (cutoff - dates).dt.days // 7
    return (cutoff.year - dates.dt.year) * 12 + (cutoff.month - dates.dt.month)


def calibration_features(
    log: pd.DataFrame, cutoff: pd.Timestamp, has_quantity: bool = False, has_product: bool = False
) -> pd.DataFrame:
    """Per-customer features from transactions dated on or before `cutoff` (the caller filters; refunds
    have negative amounts). Days are counted back from the cutoff. Index: customer id, sorted.

    Columns: the BG/NBD summary (`frequency` = repeat purchase days, `recency_days` = first to last
    purchase, `tenure_days` = first purchase to cutoff), monetary value (total, mean, max, first, last,
    spread of order spend; `repeat_mean_spend` = Gamma-Gamma's mean spend of the repeat orders),
    inter-purchase gaps (mean, spread, last, and days since the last purchase over the mean gap), recent
    activity (orders and spend in the last 30 and 90 days), the spend rate per day of tenure, refunds,
    and optionally units and distinct products. Undefined values (gaps of one-order customers) are 0.
    """
    if (log["date"] > cutoff).any():
        raise ValueError("calibration_features: transactions after the cutoff")
    refunds = log[log["amount"] < 0]
    purchases = log[log["amount"] >= 0]
    orders = (
        purchases.groupby(["customer", "date"], as_index=False)["amount"]
        .sum()
        .sort_values(["customer", "date"])
    )
    orders["days_before"] = (cutoff - orders["date"]).dt.days
    orders["gap"] = orders.groupby("customer")["date"].diff().dt.days
    orders["repeat"] = orders.groupby("customer").cumcount() > 0
    grouped = orders.groupby("customer")
    count = grouped.size()
    first, last = grouped["days_before"].max(), grouped["days_before"].min()
    total = grouped["amount"].sum()
    recent30 = orders[orders["days_before"] < 30].groupby("customer")
    recent90 = orders[orders["days_before"] < 90].groupby("customer")
    repeat = orders[orders["repeat"]].groupby("customer")["amount"].mean()
    frame = pd.DataFrame(
        {
            "frequency": count - 1,
            "recency_days": first - last,
            "tenure_days": first,
            "days_since_last": last,
            "total_spend": total,
            "mean_order_spend": grouped["amount"].mean(),
            "max_order_spend": grouped["amount"].max(),
            "first_order_spend": grouped["amount"].first(),
            "last_order_spend": grouped["amount"].last(),
            "std_order_spend": grouped["amount"].std(ddof=0),
            "repeat_mean_spend": repeat,
            "mean_gap_days": grouped["gap"].mean(),
            "std_gap_days": grouped["gap"].std(ddof=0),
            "last_gap_days": grouped["gap"].last(),
            "orders_last_30_days": recent30.size(),
            "orders_last_90_days": recent90.size(),
            "spend_last_90_days": recent90["amount"].sum(),
        }
    )
    frame = frame.fillna({c: 0.0 for c in frame.columns})
    frame["overdue"] = np.where(
        frame["mean_gap_days"] > 0, frame["days_since_last"] / frame["mean_gap_days"].clip(lower=1), 0.0
    )
    frame["spend_per_day"] = frame["total_spend"] / (frame["tenure_days"] + 1)
    frame["orders"] = count
    frame["refunds"] = refunds.groupby("customer").size().reindex(frame.index, fill_value=0)
    frame["refund_spend"] = -refunds.groupby("customer")["amount"].sum().reindex(frame.index, fill_value=0.0)
    if has_quantity:
        units = purchases.groupby("customer")["quantity"].sum().reindex(frame.index, fill_value=0.0)
        frame["units"] = units
        frame["units_per_order"] = units / count
    if has_product:
        frame["distinct_products"] = (
            purchases.groupby("customer")["product"].nunique().reindex(frame.index, fill_value=0)
        )
    return frame.astype(np.float64).sort_index()


def spend_sequence(
    log: pd.DataFrame, customers: np.ndarray, cutoff: pd.Timestamp, period: str, periods: int
) -> np.ndarray:
    """`(len(customers), periods, 3)` float32: per period (oldest first, the cutoff's period last)
    log1p of the net spend (refunds subtract, floored at 0), whether the customer bought, and whether
    the customer had made a first purchase by then ("active")."""
    row = pd.Series(np.arange(len(customers)), index=customers)
    steps = period_index(log["date"], cutoff, period)
    kept = log.assign(step=steps.to_numpy(), row=row.reindex(log["customer"]).to_numpy())
    kept = kept[kept["step"] < periods]
    spend = np.zeros((len(customers), periods), dtype=np.float64)
    bought = np.zeros((len(customers), periods), dtype=np.float32)
    position = periods - 1 - kept["step"].to_numpy()
    np.add.at(spend, (kept["row"].to_numpy(), position), kept["amount"].to_numpy())
    purchases = kept["amount"].to_numpy() >= 0
    bought[kept["row"].to_numpy()[purchases], position[purchases]] = 1.0
    first_step = period_index(log[log["amount"] >= 0].groupby("customer")["date"].min(), cutoff, period)
    first_position = periods - 1 - first_step.reindex(customers).to_numpy()
    active = (np.arange(periods)[None, :] >= first_position[:, None]).astype(np.float32)
    sequence = np.stack([np.log1p(np.clip(spend, 0, None)).astype(np.float32), bought, active], axis=2)
    return sequence


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
