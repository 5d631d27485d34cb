"""Registry datasets: CoIL 2000 prepared from the official UCI files gives the same table layout."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from adlab.data.datasets.coil2000 import COLUMNS, prepare_coil2000
from adlab.errors import AdlabError


def _write_uci(folder, train_buyers=348, test_buyers=238):
    rng = np.random.default_rng(0)
    train = rng.integers(0, 10, size=(5822, 86))
    train[:, -1] = 0
    train[:train_buyers, -1] = 1
    test = rng.integers(0, 10, size=(4000, 85))
    targets = np.zeros(4000, dtype=int)
    targets[:test_buyers] = 1
    np.savetxt(folder / "ticdata2000.txt", train, fmt="%d", delimiter="\t")
    np.savetxt(folder / "ticeval2000.txt", test, fmt="%d", delimiter="\t")
    np.savetxt(folder / "tictgts2000.txt", targets, fmt="%d")


def test_coil_from_official_uci_files(tmp_path):
    _write_uci(tmp_path)
    staging = tmp_path / "staging"
    staging.mkdir()
    prepare_coil2000(tmp_path, staging)
    table = pd.read_parquet(staging / "coil2000.parquet")
    assert list(table.columns) == ["customer_id", "split", *COLUMNS, "CARAVAN"]
    assert table.groupby("split")["CARAVAN"].agg(["count", "sum"]).to_dict() == {
        "count": {"test": 4000, "train": 5822},
        "sum": {"test": 238, "train": 348},
    }
    assert pd.api.types.is_string_dtype(table["MOSTYPE"]) and table["PPERSAUT"].dtype == np.float64


def test_coil_counts_are_checked(tmp_path):
    _write_uci(tmp_path, test_buyers=200)
    with pytest.raises(AdlabError, match=r"expected 5822/348/4000/238"):
        prepare_coil2000(tmp_path, tmp_path)


@pytest.mark.parametrize("name", ["log.parquet", "log.pq"])
def test_a_log_read_as_parquet_under_either_name_adlab_score_takes(tmp_path, name):
    from adlab.data.sources.base import read_log

    frame = pd.DataFrame({"customer_id": ["a", "b"], "amount": [1.5, 2.0]})
    frame.to_parquet(tmp_path / name)
    pd.testing.assert_frame_equal(read_log(tmp_path / name, "input"), frame)
