"""Tiny purchase logs and tables with the schema of real ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from adlab.data.sources.transactions import generate_transactions

CUTOFF, HOLDOUT_END = "2020-06-29", "2020-12-25"


@pytest.fixture(scope="session")
def segments_csv(tmp_path_factory) -> Path:
    """300 generated customers' purchases over 360 days of 2020 (cutoff day 180)."""
    path = tmp_path_factory.mktemp("segments") / "transactions.csv"
    generate_transactions(300, seed=0).to_csv(path, index=False)
    return path
