"""Tiny interaction logs with MovieLens' schema (user_id, item_id, rating, timestamp) and its side tables."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from adlab.data.sources.interactions import generate_interactions


@pytest.fixture(scope="session")
def movielens_like(tmp_path_factory) -> dict[str, Path]:
    """60 generated users' ratings of 40 films (CSV), a film table with titles and genres, a user table."""
    folder = tmp_path_factory.mktemp("recommendation")
    ratings, items, users = generate_interactions(60, 40, seed=0)
    paths = {
        "ratings": folder / "ratings.csv",
        "items": folder / "items.csv",
        "users": folder / "users.parquet",
    }
    ratings.to_csv(paths["ratings"], index=False)
    items.to_csv(paths["items"], index=False)
    users.to_parquet(paths["users"])
    return paths


def write_log(path: Path, rows: list[tuple], columns=("user_id", "item_id", "rating", "timestamp")) -> Path:
    """A small CSV log from explicit rows."""
    pd.DataFrame(rows, columns=list(columns)).to_csv(path, index=False)
    return path
