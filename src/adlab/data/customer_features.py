"""Per-customer features of a purchase log in pandas alone (no torch): what the transactions source
(`adlab.data.sources.transactions`) builds for training and what a served customers package
(`adlab.serving.customers`) computes for new customers, from one copy of the code.

A log is read as `LogFormat` says (columns, date format, refunds), validated (`validate_log`), then summarised
per customer as of a cutoff day (`customer_summary`): calibration features (`calibration_features`) and
the spend sequence (`spend_sequence`). Nothing dated after the cutoff reaches either.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from adlab.errors import AdlabError, excerpt

PERIODS = ("week", "month")
REFUNDS = ("net", "drop", "error")
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
# what each calibration feature is, for readers of an exported package (`preprocessing.json`)
FEATURE_DEFINITIONS = {
    "frequency": "repeat purchase days: purchase days (a customer's non-negative lines of one day) minus one",
    "recency_days": "days from the first to the last purchase day",
    "tenure_days": "days from the first purchase day to the cutoff",
    "days_since_last": "days from the last purchase day to the cutoff",
    "total_spend": "sum of the purchase days' spend",
    "mean_order_spend": "mean spend per purchase day",
    "max_order_spend": "largest spend of a purchase day",
    "first_order_spend": "spend of the first purchase day",
    "last_order_spend": "spend of the last purchase day",
    "std_order_spend": "standard deviation (ddof 0) of spend per purchase day",
    "repeat_mean_spend": "mean spend of the purchase days after the first (0 without any)",
    "mean_gap_days": "mean days between consecutive purchase days (0 for one purchase day)",
    "std_gap_days": "standard deviation (ddof 0) of those gaps (0 for one purchase day)",
    "last_gap_days": "days between the last two purchase days (0 for one purchase day)",
    "orders_last_30_days": "purchase days fewer than 30 days before the cutoff",
    "orders_last_90_days": "purchase days fewer than 90 days before the cutoff",
    "spend_last_90_days": "spend of those purchase days",
    "overdue": "days_since_last / max(mean_gap_days, 1) when mean_gap_days > 0, else 0",
    "spend_per_day": "total_spend / (tenure_days + 1)",
    "orders": "purchase days",
    "refunds": "lines with a negative amount",
    "refund_spend": "minus the sum of the negative amounts",
    "units": "sum of the quantity column over non-negative lines",
    "units_per_order": "units / orders",
    "distinct_products": "distinct values of the product column over non-negative lines",
}
_CURRENCY = re.compile(r"[$€£¥₹\s]|[A-Z]{3}")
_PLAIN_NUMBER = re.compile(r"^[-+]?(\d+(\.\d*)?|\.\d+)$")
_GROUPED_NUMBER = re.compile(r"^[-+]?\d{1,3}(,\d{3})+(\.\d*)?$")


@dataclass
class LogFormat:
    """How a purchase log is read: its columns and how dates, amounts and refunds are written.

    Attributes:
        customer: the customer id column.
        date: the transaction date column.
        amount: the amount column (numbers or currency strings; negative = refund).
        quantity: optional units column.
        product: optional product column.
        date_format: strftime pattern of the dates; None reads ISO 8601 or `%Y%m%d`.
        dayfirst: read dates such as 31/01/1997 (day first) when `date_format` is None.
        refunds: negative amounts: "net" (kept: subtracted from spend), "drop" (ignored) or "error" (refused).
    """

    customer: str
    date: str
    amount: str
    quantity: str | None = None
    product: str | None = None
    date_format: str | None = None
    dayfirst: bool = False
    refunds: str = "net"

    @property
    def columns(self) -> dict[str, str]:
        """Role -> column name of the columns the log has (`customer`, `date`, `amount`[, quantity, product])."""
        roles = {"customer": self.customer, "date": self.date, "amount": self.amount}
        optional = {"quantity": self.quantity, "product": self.product}
        return roles | {role: name for role, name in optional.items() if name}

    def to_dict(self) -> dict[str, Any]:
        """Plain containers (what `preprocessing.json` holds)."""
        return dataclasses.asdict(self)


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


def _to_datetime(text: pd.Series, date_format: str | None, dayfirst: bool, errors: str) -> pd.Series:
    """`pd.to_datetime` by `parse_dates`' rules; with `dayfirst` a value that starts with a 4-digit year
    ("2020-01-31", "2020/01/31") is still read year-month-day, never as 2020-31-01."""
    if date_format is not None:
        return pd.to_datetime(text, format=date_format, errors=errors)
    if not dayfirst:
        return pd.to_datetime(text, format="ISO8601", errors=errors)
    year_first = text.str.match(r"\d{4}\D", na=False)
    day_first = pd.to_datetime(text.mask(year_first), dayfirst=True, format="mixed", errors=errors)
    return day_first.where(~year_first, pd.to_datetime(text.where(year_first), format="mixed", errors=errors))


def parse_dates(
    values: pd.Series,
    column: str,
    date_format: str | None,
    dayfirst: bool,
    hint: str = "set data.source.date_format or data.source.dayfirst=true",
) -> pd.Series:
    """Dates as datetime64 (day precision).

    `date_format` None reads ISO 8601 ("1997-01-31", with or without a time) and 8-digit `%Y%m%d`
    ("19970131"); `dayfirst=True` reads "31/01/1997" and "31.01.1997" (and year-first dates as such);
    otherwise `date_format` is a strftime pattern. Unparseable values, time zones mixed in one column and
    years outside 1-9999 raise `AdlabError` naming the column and the first bad value, and `hint` (how to
    read other dates).
    """
    text = values.astype("string").str.strip()
    if text.isna().any():
        raise AdlabError(f"date column '{column}' has {int(text.isna().sum())} missing values")
    if date_format is None and not dayfirst and text.str.fullmatch(r"\d{8}").all():
        date_format = "%Y%m%d"
    how = (
        f"format {date_format!r}"
        if date_format
        else ("day-first dates" if dayfirst else "ISO dates such as 1997-01-31, or 19970131")
    )
    try:
        parsed = _to_datetime(text, date_format, dayfirst, "raise")
    except (ValueError, TypeError):
        try:
            parsed = _to_datetime(text, date_format, dayfirst, "coerce")
        except (ValueError, TypeError) as error:  # time zones mixed, a bad format: raised even when coercing
            reason = excerpt(str(error).split(". ")[0], 120)  # pandas' first sentence, not its advice
            raise AdlabError(
                f"date column '{column}' could not be read as dates ({reason}); expected {how} in one time "
                f"zone ({hint})"
            ) from None
        first = values[parsed.isna().to_numpy()].iloc[0] if parsed.isna().any() else text.iloc[0]
        raise AdlabError(
            f"date column '{column}' has values that are not dates (first: {first!r}); expected {how} ({hint})"
        ) from None
    if not pd.api.types.is_datetime64_any_dtype(parsed):  # year-first and day-first values in two zones
        raise AdlabError(f"date column '{column}' mixes time zones; expected {how} in one time zone ({hint})")
    if getattr(parsed.dt, "tz", None) is not None:
        parsed = parsed.dt.tz_localize(None)
    outside = ((parsed.dt.year < 1) | (parsed.dt.year > 9999)).to_numpy()
    if outside.any():
        raise AdlabError(
            f"date column '{column}' has {int(outside.sum())} dates outside years 1 to 9999 (first: "
            f"{values[outside].iloc[0]!r}); expected {how}"
        )
    return parsed.dt.normalize()


def refuse_nul(ids: pd.Series, column: str, what: str) -> None:
    """`AdlabError` when a text id holds a NUL character: numpy's text arrays drop trailing NULs, so customer
    "7\\x00" would silently become customer "7" (found by scripts/fuzz_readers.py)."""
    nul = ids.str.contains("\x00", regex=False, na=False).to_numpy()
    if nul.any():
        raise AdlabError(
            f"{what} column '{column}' has {int(nul.sum())} ids with a NUL character (first: "
            f"{ids[nul].iloc[0]!r}); expected text ids"
        )


def validate_log(
    frame: pd.DataFrame,
    log_format: LogFormat,
    where: str,
    column_hint: str = "set data.source.customer/date/amount",
    date_hint: str = "set data.source.date_format or data.source.dayfirst=true",
    refund_hint: str = "set data.source.refunds=net or drop",
) -> pd.DataFrame:
    """The validated log of a frame read from a file: `customer str, date datetime64, amount float64[,
    quantity float64, product str]`, refunds handled as `log_format.refunds` says.

    `AdlabError` (prefixed by `where` when it concerns the file as a whole) names a missing column, missing
    customer ids, unparseable dates or amounts, and refunds when they are refused; the hints say what to set.
    """
    missing = [f"{role} '{name}'" for role, name in log_format.columns.items() if name not in frame.columns]
    if missing:
        raise AdlabError(
            f"{where}: no {', '.join(missing)} column; the file has {list(frame.columns)[:20]} ({column_hint})"
        )
    customers = frame[log_format.customer]
    if customers.isna().any():
        raise AdlabError(
            f"customer column '{log_format.customer}' has {int(customers.isna().sum())} missing values"
        )
    customers = customers.astype(str).str.strip()
    refuse_nul(customers, log_format.customer, "customer")
    log = pd.DataFrame(
        {
            "customer": customers.to_numpy(),
            "date": parse_dates(
                frame[log_format.date],
                log_format.date,
                log_format.date_format,
                log_format.dayfirst,
                date_hint,
            ).to_numpy(),
            "amount": parse_amounts(frame[log_format.amount], log_format.amount),
        }
    )
    if log_format.quantity:
        log["quantity"] = parse_amounts(frame[log_format.quantity], log_format.quantity)
    if log_format.product:
        log["product"] = frame[log_format.product].astype(str).to_numpy()
    refunds = log["amount"] < 0
    if refunds.any() and log_format.refunds == "error":
        raise AdlabError(
            f"amount column '{log_format.amount}' has {int(refunds.sum())} negative amounts (refunds); {refund_hint}"
        )
    if log_format.refunds == "drop":
        log = log[~refunds].reset_index(drop=True)
    return log


def customer_summary(
    log: pd.DataFrame,
    cutoff: pd.Timestamp,
    period: str,
    periods: int,
    has_quantity: bool = False,
    has_product: bool = False,
) -> tuple[pd.DataFrame, np.ndarray]:
    """`(features, sequence)` of every customer with a transaction on or before `cutoff`, as of that day:
    the calibration features (index: customer id, sorted; `calibration_features`) and their spend sequence
    `(customers, periods, 3) float32` in the same order (`spend_sequence`). Later transactions are ignored,
    and so is a customer whose only lines by the cutoff are refunds (no purchase to describe)."""
    calibration_log = log[log["date"] <= cutoff]
    buyers = calibration_log.loc[calibration_log["amount"] >= 0, "customer"].unique()
    calibration_log = calibration_log[calibration_log["customer"].isin(buyers)]
    summary = calibration_features(calibration_log, cutoff, has_quantity, has_product)
    sequence = spend_sequence(calibration_log, summary.index.to_numpy(), cutoff, period, periods)
    return summary, sequence


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
