"""The transactions source: calibration features, holdout target, no leakage, formats, bad inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from adlab.data.datamodule import MarketingDataModule
from adlab.data.features import DataMeta, TransactionsFeatures, TransactionsMeta
from adlab.data.sources.transactions import CALIBRATION_COLUMNS, TransactionsSource, parse_amounts
from adlab.errors import AdlabError
from tests.families.value.conftest import CUTOFF, HOLDOUT_END

LOG = pd.DataFrame(
    {
        "customer": ["a", "a", "a", "a", "b", "b", "c"],
        "day": [
            "2021-01-01",
            "2021-01-01",
            "2021-01-11",
            "2021-02-10",
            "2021-01-20",
            "2021-03-01",
            "2021-01-31",
        ],
        "amount": [10.0, 5.0, 20.0, 30.0, 7.0, 40.0, 12.0],
    }
)


def _source(path: Path, **options) -> TransactionsSource:
    settings = dict(
        customer="customer", date="day", amount="amount", cutoff="2021-01-31", holdout_end="2021-03-01"
    )
    return TransactionsSource(str(path), **{**settings, **options})


def _write(tmp_path: Path, frame: pd.DataFrame, name: str = "log.csv") -> Path:
    path = tmp_path / name
    frame.to_csv(path, index=False) if name.endswith(".csv") else frame.to_parquet(path)
    return path


def test_features_and_target_of_a_hand_made_log(tmp_path):
    raw = _source(_write(tmp_path, LOG)).load()
    assert list(raw.customers) == ["a", "b", "c"]
    features = pd.DataFrame(raw.features, columns=raw.feature_names, index=raw.customers)
    # a: orders on Jan 1 (10 + 5, one order) and Jan 11; Feb 10 is in the holdout
    assert features.loc["a", "frequency"] == 1 and features.loc["a", "orders"] == 2
    assert features.loc["a", "recency_days"] == 10 and features.loc["a", "tenure_days"] == 30
    assert features.loc["a", "days_since_last"] == 20 and features.loc["a", "total_spend"] == 35
    assert features.loc["a", "repeat_mean_spend"] == 20 and features.loc["a", "first_order_spend"] == 15
    assert features.loc["a", "mean_gap_days"] == 10
    # c bought once, on the cutoff day (included in calibration)
    assert features.loc["c", "frequency"] == 0 and features.loc["c", "tenure_days"] == 0
    np.testing.assert_allclose(raw.target, [30.0, 40.0, 0.0])
    np.testing.assert_array_equal(raw.labels, [1, 1, 0])
    assert raw.holdout_days == 29 and raw.calibration_days == 31


def test_nothing_after_the_cutoff_reaches_the_features(transactions_csv, tmp_path):
    log = pd.read_csv(transactions_csv)
    before = _source_on(transactions_csv).load()
    changed = log.copy()
    after = changed["date"] > CUTOFF
    changed.loc[after, "amount"] = changed.loc[after, "amount"] * 10 + 1000
    extra = pd.DataFrame({"customer_id": ["C00000"], "date": [HOLDOUT_END], "amount": [5.0], "quantity": [1]})
    changed = pd.concat([changed, extra])
    again = _source_on(_write(tmp_path, changed)).load()
    np.testing.assert_array_equal(before.customers, again.customers)
    np.testing.assert_array_equal(before.features, again.features)
    np.testing.assert_array_equal(before.sequence, again.sequence)
    assert not np.array_equal(before.target, again.target)


def _source_on(path: Path, **options) -> TransactionsSource:
    settings = dict(
        customer="customer_id",
        date="date",
        amount="amount",
        quantity="quantity",
        cutoff=CUTOFF,
        holdout_end=HOLDOUT_END,
    )
    return TransactionsSource(str(path), **{**settings, **options})


def test_data_module_splits_stratified_and_scales_on_train(transactions_csv):
    datamodule = MarketingDataModule(_source_on(transactions_csv), seed=3)
    datamodule.setup("fit")
    meta = datamodule.meta
    assert isinstance(meta, TransactionsMeta) and meta.calibration_columns == list(CALIBRATION_COLUMNS)
    assert DataMeta.from_dict(meta.to_dict()) == meta
    rows = {stage: len(t["target"]) for stage, t in datamodule.tensors.items()}
    assert sum(rows.values()) == 200 and rows["train"] == 120
    rates = [float((t["target"] > 0).float().mean()) for t in datamodule.tensors.values()]
    assert max(rates) - min(rates) < 0.05
    train = datamodule.tensors["train"]["features"].double()
    np.testing.assert_allclose(train.mean(0).numpy()[train.std(0).numpy() > 0], 0, atol=1e-5)
    assert datamodule.tensors["test"]["sequence"].shape[1:] == (meta.periods, 3)
    assert TransactionsFeatures.from_dict(datamodule.features.to_dict()) == datamodule.features


def test_date_formats_currency_strings_and_refunds(tmp_path):
    frame = LOG.assign(
        day=pd.to_datetime(LOG["day"]).dt.strftime("%d/%m/%Y"),
        amount=["$10.00", "$5", "$1,020.00", "(30.00)", "7", "40 EUR", "€12"],
    )
    raw = _source(_write(tmp_path, frame), dayfirst=True).load()
    features = pd.DataFrame(raw.features, columns=raw.feature_names, index=raw.customers)
    assert features.loc["a", "total_spend"] == 1035
    # a's holdout line is a refund of 30: the net holdout spend is floored at zero
    np.testing.assert_allclose(raw.target, [0.0, 40.0, 0.0])
    compact = LOG.assign(day=pd.to_datetime(LOG["day"]).dt.strftime("%Y%m%d"))
    np.testing.assert_array_equal(
        _source(_write(tmp_path, compact)).load().features, _source(_write(tmp_path, LOG)).load().features
    )
    parquet = _source(_write(tmp_path, LOG.assign(day=pd.to_datetime(LOG["day"])), "log.parquet")).load()
    np.testing.assert_array_equal(parquet.features, _source(_write(tmp_path, LOG)).load().features)
    with pytest.raises(AdlabError, match="12,50"):
        parse_amounts(pd.Series(["12,50"]), "amount")
    refunds = LOG.assign(amount=[10.0, -5.0, 20.0, 30.0, 7.0, 40.0, 12.0])
    with pytest.raises(AdlabError, match="negative amounts"):
        _source(_write(tmp_path, refunds), refunds="error").load()
    netted = pd.DataFrame(_source(_write(tmp_path, refunds)).load().features, columns=raw.feature_names)
    assert netted.loc[0, "refunds"] == 1 and netted.loc[0, "refund_spend"] == 5
    dropped = pd.DataFrame(
        _source(_write(tmp_path, refunds), refunds="drop").load().features, columns=raw.feature_names
    )
    assert dropped.loc[0, "total_spend"] == 30 and dropped.loc[0, "refunds"] == 0


def _one_line_error(tmp_path: Path, frame: pd.DataFrame, match: str, **options) -> None:
    with pytest.raises(AdlabError, match=match) as caught:
        _source(_write(tmp_path, frame), **options).load()
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("column", ["customer", "day", "amount"])
def test_a_missing_column_is_named(tmp_path, column):
    _one_line_error(tmp_path, LOG.drop(columns=[column]), f"'{column}' column")


def test_unparseable_dates_are_named(tmp_path):
    _one_line_error(
        tmp_path, LOG.assign(day=[*LOG["day"][:-1], "yesterday"]), "date column 'day'.*'yesterday'"
    )


def test_a_cutoff_outside_the_data_is_refused(tmp_path):
    _one_line_error(
        tmp_path, LOG, "cutoff=2020-01-31 is outside the data", cutoff="2020-01-31", holdout_end="2021-03-01"
    )


def test_an_empty_holdout_window_is_refused(tmp_path):
    early = LOG[LOG["day"] <= "2021-01-31"].assign(day=lambda f: f["day"].replace("2021-01-01", "2021-01-02"))
    frame = pd.concat([early, pd.DataFrame({"customer": ["z"], "day": ["2021-03-01"], "amount": [1.0]})])
    _one_line_error(tmp_path, frame, "holdout window .* holds no transactions", holdout_end="2021-02-20")


def test_non_numeric_amounts_are_named(tmp_path):
    _one_line_error(
        tmp_path,
        LOG.assign(amount=[*LOG["amount"][:-1].astype(str), "twelve"]),
        "amount column 'amount'.*'twelve'",
    )


def test_a_new_log_is_built_with_the_runs_scaling(transactions_csv):
    source = _source_on(transactions_csv)
    datamodule = MarketingDataModule(source, seed=3)
    datamodule.setup("fit")
    new = source.build_new(datamodule.meta, datamodule.features.to_dict(), labelled=True)
    test_rows = datamodule.splits["test"]
    np.testing.assert_array_equal(new.row_ids[test_rows], datamodule.row_ids("test")[1])
    assert datamodule.row_ids("test")[0] == "customer_id"
    for name in ("features", "sequence", "target"):
        np.testing.assert_array_equal(
            new.tensors[name][test_rows].numpy(), datamodule.tensors["test"][name].numpy()
        )


def test_a_holdout_end_before_the_cutoff_is_refused(tmp_path):
    _one_line_error(tmp_path, LOG, "holdout_end=2021-01-01: expected a date after", holdout_end="2021-01-01")


def test_monthly_spend_sequence(tmp_path):
    raw = _source(_write(tmp_path, LOG), period="month").load()
    # a: January spend 35 (the cutoff's month, the last period); one period only (the data start in January)
    assert raw.sequence.shape == (3, 1, 3)
    np.testing.assert_allclose(raw.sequence[0, -1], [np.log1p(35.0), 1.0, 1.0], rtol=1e-6)
