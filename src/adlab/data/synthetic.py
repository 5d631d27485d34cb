"""Tiny tables with real datasets' schemas, for tests, notebooks and benchmarks (never for results)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def coil_like_table(
    train_rows: int = 600, test_rows: int = 300, subtypes: int = 12, seed: int = 0
) -> pd.DataFrame:
    """A CoIL-2000-shaped table: customer_id, split (train/test), MOSTYPE and MOSHOOFD labels, 83 ordinal
    codes NUM00..NUM82 in 0-9, and CARAVAN 0/1 drawn from a known logistic model of NUM00, NUM01 and one subtype."""
    rng = np.random.default_rng(seed)
    rows = train_rows + test_rows
    subtype = rng.choice([f"subtype {i}" for i in range(subtypes)], rows)
    codes = rng.integers(0, 10, size=(rows, 83)).astype(float)
    logit = -2.6 + 0.35 * (codes[:, 0] - 4.5) + 0.25 * (codes[:, 1] - 4.5) + (subtype == "subtype 3") * 1.0
    frame = pd.DataFrame(codes, columns=[f"NUM{i:02d}" for i in range(83)])
    frame.insert(0, "customer_id", np.arange(1, rows + 1))
    frame.insert(1, "split", np.where(np.arange(rows) < train_rows, "train", "test"))
    frame.insert(2, "MOSTYPE", subtype)
    frame.insert(3, "MOSHOOFD", rng.choice([f"type {i}" for i in range(5)], rows))
    frame["CARAVAN"] = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int)
    return frame


def write_coil_like(data_dir: str | Path, **options) -> Path:
    """Write `coil_like_table(**options)` where the coil2000 config reads it: `<data_dir>/coil2000/coil2000.parquet`."""
    path = Path(data_dir) / "coil2000" / "coil2000.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    coil_like_table(**options).to_parquet(path, index=False)
    return path
