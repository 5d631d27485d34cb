"""The interactions source: leave-one-out and time splits without leakage, filters, and bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from adlab.data.datamodule import MarketingDataModule
from adlab.data.sources.interactions import InteractionsSource
from adlab.errors import AdlabError
from tests.families.recommendation.conftest import write_log

COLUMNS = {"user": "user_id", "item": "item_id", "time": "timestamp"}


def _module(path, **options) -> MarketingDataModule:
    module = MarketingDataModule(InteractionsSource(str(path), **{**COLUMNS, **options}), split="official")
    module.setup()
    return module


def _items(module, stage, user_id, name):
    """A user's row of one split's tensor, as item ids (padding dropped)."""
    features = module.features
    user = features.user_ids.index(str(user_id)) + 1
    row = int(np.flatnonzero(module.tensors[stage]["user"].numpy() == user)[-1])
    values = module.tensors[stage][name][row]
    values = [int(values)] if values.ndim == 0 else [int(v) for v in values if v > 0]
    return [features.item_ids[v - 1] for v in values]


def test_leave_one_out_holds_out_the_last_two_and_leaks_nothing(tmp_path):
    # user a: items 1..5 in time order (file order shuffled); user b: 2 items; user c: 1 item
    rows = [("a", 3, 4, 30), ("a", 1, 5, 10), ("a", 5, 3, 50), ("a", 2, 4, 20), ("a", 4, 1, 40)]
    rows += [("b", 7, 5, 100), ("b", 6, 4, 60), ("c", 9, 2, 5)]
    module = _module(write_log(tmp_path / "log.csv", [(u, i, r, str(t)) for u, i, r, t in rows]))
    assert _items(module, "test", "a", "target") == ["5"] and _items(module, "test", "a", "history") == [
        "1",
        "2",
        "3",
        "4",
    ]
    assert _items(module, "val", "a", "target") == ["4"] and _items(module, "val", "a", "seen") == [
        "1",
        "2",
        "3",
    ]
    assert _items(module, "test", "a", "seen") == ["1", "2", "3", "4"]
    # the train example of a: items 1, 2 -> 3; b (two items) has a test example, no val example
    assert _items(module, "train", "a", "target") == ["3"] and _items(module, "train", "a", "history") == [
        "1",
        "2",
    ]
    assert _items(module, "test", "b", "target") == ["7"] and module.meta.rows == {
        "train": 1,
        "val": 1,
        "test": 2,
    }
    assert module.meta.dropped == {"single_interaction_users": 1}
    # popularity and the stored histories count train interactions only
    popularity = dict(zip(module.features.item_ids, module.features.popularity, strict=True))
    assert popularity["4"] == popularity["5"] == popularity["7"] == 0 and popularity["1"] == 1
    assert "9" in module.features.item_ids  # the dropped user's item stays in the catalogue


def test_train_windows_make_every_train_interaction_a_target_once(tmp_path):
    rows = [("u", item, 5, item) for item in range(1, 13)]  # 12 items: 10 train, val, test
    module = _module(write_log(tmp_path / "log.csv", rows), max_length=3)
    train = module.tensors["train"]
    targets = sorted(int(t) for t in train["target"])
    slots = {int(i) for row in train["history"] for i in row[1:] if i > 0} | set(targets)
    assert len(targets) == 3 and slots == set(range(2, 11))  # items 2..10 are each predicted in some window
    assert (
        _module(write_log(tmp_path / "log.csv", rows), max_length=3, train_windows=False).meta.rows["train"]
        == 1
    )


def test_time_split_cuts_at_the_two_moments(tmp_path):
    rows = [
        ("a", 1, 5, "2020-01-01"),
        ("a", 2, 5, "2020-01-02"),
        ("a", 3, 5, "2020-02-01"),
        ("a", 4, 5, "2020-03-02"),
    ]
    rows += [("b", 1, 5, "2020-01-05"), ("b", 3, 5, "2020-01-06"), ("b", 2, 5, "2020-03-05")]
    module = _module(
        write_log(tmp_path / "log.csv", rows), split="time", val_start="2020-02-01", test_start="2020-03-01"
    )
    assert module.meta.rows == {"train": 2, "val": 1, "test": 2}
    assert _items(module, "val", "a", "target") == ["3"] and _items(module, "test", "a", "seen") == [
        "1",
        "2",
        "3",
    ]
    assert _items(module, "test", "b", "history") == ["1", "3"]


def test_string_ids_ratings_threshold_repeats_and_k_core(tmp_path):
    rows = [
        ("ann", "shoe", 5, 1),
        ("ann", "hat", 2, 2),
        ("ann", "bag", 4, 3),
        ("ann", "shoe", 5, 4),
        ("ann", "sock", 5, 5),
    ]
    rows += [
        ("bob", "shoe", 4, 1),
        ("bob", "bag", 5, 2),
        ("bob", "sock", 4, 3),
        ("cy", "hat", 5, 1),
        ("cy", "cap", 5, 2),
    ]
    rows += [("ann", "belt", 5, 6), ("bob", "belt", 4, 4)]
    path = write_log(tmp_path / "log.csv", rows)
    module = _module(path, rating="rating", min_rating=4)
    assert module.meta.dropped == {"below_min_rating": 1, "repeats": 1}
    assert module.features.item_ids == sorted(["bag", "belt", "cap", "hat", "shoe", "sock"])
    cored = _module(path, core=2)
    assert "cap" not in cored.features.item_ids and cored.features.user_ids == ["ann", "bob"]


def test_attribute_tables_titles_and_cold_items(movielens_like, tmp_path):
    items = pd.read_csv(movielens_like["items"])
    cold = pd.DataFrame({"item_id": [999], "title": ["Never Rated"], "genre": ["Drama"]})
    pd.concat([items, cold]).to_csv(tmp_path / "items.csv", index=False)
    module = _module(
        movielens_like["ratings"],
        items_path=str(tmp_path / "items.csv"),
        item_attributes=["genre"],
        item_title="title",
        users_path=str(movielens_like["users"]),
        user_attributes=["gender"],
    )
    features, meta = module.features, module.meta
    assert features.item_ids[-1] == "999" and features.title(meta.items) == "Never Rated"
    assert features.popularity[-1] == 0 and features.item_codes[-1] != [0]
    assert meta.item_cardinalities == [5] and meta.user_cardinalities == [3]
    assert module.tensors["test"]["user_features"].shape == (meta.rows["test"], 1)


@pytest.mark.parametrize(
    ("rows", "options", "message"),
    [
        ([("a", 1, 5, 1)], {"time": "when"}, "no time 'when' column"),
        (
            [("a", 1, 5, "yesterday"), ("a", 2, 5, "2020-01-01")],
            {},
            "time column 'timestamp' has values that are not times (first: 'yesterday')",
        ),
        ([("a", 1, 5, 1), ("a", 1, 5, 1), ("a", 2, 5, 2)], {}, "1 duplicate rows"),
        ([("a", 1, 5, 1), ("b", 2, 5, 1)], {}, "no user has two interactions"),
        (
            [("a", 1, "good", 1), ("a", 2, 5, 2)],
            {"rating": "rating"},
            "rating column 'rating' has 1 values that are not numbers",
        ),
    ],
)
def test_bad_logs_fail_on_one_line_naming_the_input(tmp_path, rows, options, message):
    path = write_log(tmp_path / "log.csv", rows)
    with pytest.raises(AdlabError, match=message.replace("(", r"\(").replace(")", r"\)")):
        _module(path, **options)


def test_duplicates_can_be_dropped_and_a_random_split_is_refused(tmp_path, movielens_like):
    path = write_log(
        tmp_path / "log.csv", [("a", 1, 5, 1), ("a", 1, 5, 1), ("a", 2, 5, 2), ("a", 3, 5, 3), ("a", 4, 5, 4)]
    )
    assert _module(path, duplicates="drop").meta.dropped == {"duplicates": 1}
    source = InteractionsSource(str(movielens_like["ratings"]), **COLUMNS)
    module = MarketingDataModule(source, split=[0.6, 0.2, 0.2])
    with pytest.raises(AdlabError, match="expected data.split=official"):
        module.setup()
