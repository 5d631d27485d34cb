"""Interactions source: a log of (user, item, time) events cut into next-item examples without leakage.

Every example is one user at one moment: the user's items before that moment (`history`, the latest
`max_length` of them) and the item that came next (`target`). The split is by time, never at random:

- `split="leave_one_out"` (default): each user's last interaction is the test target, the one before it
  the val target, everything earlier is train. A user with one interaction cannot be split: such users
  are dropped and counted (`meta.dropped["single_interaction_users"]`); a user with two has no val example.
- `split="time"`: interactions before `val_start` are train; each user's first interaction in
  `[val_start, test_start)` is a val target, the first from `test_start` on a test target.

A val or test example's history holds only what the user did before its target; train examples are cut
from the train interactions alone (windows of `max_length` + 1 items, so that every train interaction
but a user's first is a training target once). Item popularity, the kNN baseline's matrix and each user's
stored history are counted on the train interactions only.

Interactions are ordered by time, ties in file order. Exact duplicate rows (same user, item and time) are
an error unless `duplicates="drop"`; a user's later interactions with an item already seen are dropped
with `repeats="first"` (the default: a seen item is excluded from that user's ranking, so a repeated
target could never be hit).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from adlab.data.customer_features import refuse_nul
from adlab.data.features import MISSING, InteractionsFeatures, InteractionsMeta
from adlab.data.sources.base import SEPARATORS, BuiltData, read_log
from adlab.errors import AdlabError

log = logging.getLogger(__name__)

SPLITS = ("leave_one_out", "time")
REPEATS = ("first", "keep")
DUPLICATES = ("error", "drop")
_NUMBER = re.compile(r"^[-+]?\d+(\.\d*)?$")
_LAST_SECOND = 253_402_300_799  # 9999-12-31T23:59:59 in unix seconds


def parse_times(values: pd.Series, column: str) -> np.ndarray:
    """Event times as int64 unix seconds, from unix seconds (numbers or digit strings), ISO 8601 dates or
    times ("2020-01-31", "2020-01-31T12:00:00Z"), or a datetime column. Only their order matters for
    leave-one-out; `AdlabError` naming the column and the first bad value otherwise."""
    expected = "unix seconds such as 881250949 or ISO dates such as 1997-12-04 or 1997-12-04T15:55:49"
    if pd.api.types.is_datetime64_any_dtype(values):
        parsed = pd.to_datetime(values)
    elif pd.api.types.is_bool_dtype(values):
        raise AdlabError(f"time column '{column}' holds true/false values; expected {expected}")
    elif pd.api.types.is_numeric_dtype(values):
        numbers = values.to_numpy(dtype=np.float64)
        if not np.isfinite(numbers).all():
            raise AdlabError(
                f"time column '{column}' has {int((~np.isfinite(numbers)).sum())} missing values; expected {expected}"
            )
        return _seconds(numbers, values, column, expected)
    else:
        text = values.astype("string").str.strip()
        if text.isna().any():
            raise AdlabError(f"time column '{column}' has {int(text.isna().sum())} missing values")
        if text.str.match(_NUMBER).all():
            return _seconds(pd.to_numeric(text).to_numpy(dtype=np.float64), values, column, expected)
        parsed = pd.to_datetime(text, format="ISO8601", errors="coerce", utc=True)
        if parsed.isna().any():
            first = values[parsed.isna().to_numpy()].iloc[0]
            raise AdlabError(
                f"time column '{column}' has values that are not times (first: {first!r}); expected {expected}"
            )
    if getattr(parsed.dt, "tz", None) is not None:
        parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
    return parsed.to_numpy(dtype="datetime64[s]").astype(np.int64)


def _seconds(numbers: np.ndarray, values: pd.Series, column: str, expected: str) -> np.ndarray:
    """Unix seconds as int64, refusing numbers past year 9999 either way (int64 would wrap them, silently
    reordering the log)."""
    outside = np.abs(numbers) > _LAST_SECOND
    if outside.any():
        raise AdlabError(
            f"time column '{column}' has {int(outside.sum())} numbers beyond year 9999 as unix seconds "
            f"(first: {str(values.iloc[np.flatnonzero(outside)[0]])!r}); expected {expected}"
        )
    return np.floor(numbers).astype(np.int64)


def parse_moment(value: Any, name: str) -> int:
    """A cut of `split="time"` (`data.source.<name>`): unix seconds or an ISO date, as unix seconds."""
    try:
        return int(parse_times(pd.Series([str(value)]), name)[0])
    except AdlabError:
        raise AdlabError(
            f"data.source.{name}={value!r}: expected an ISO date such as 1998-03-01 or unix seconds"
        ) from None


def id_order(ids: np.ndarray) -> np.ndarray:
    """Distinct ids sorted as numbers when they all are (1, 2, 10), else as strings."""
    distinct = np.unique(np.asarray(ids, dtype=str))
    if len(distinct) and all(value.isdigit() for value in distinct):
        return distinct[np.argsort([int(value) for value in distinct], kind="stable")]
    return distinct


def read_ids(values: pd.Series, column: str, what: str) -> np.ndarray:
    """Ids as text, as the catalogue writes them (12.0 -> "12"); `AdlabError` naming `what`'s column when one is
    missing or holds a NUL character."""
    if values.isna().any():
        raise AdlabError(
            f"{what} column '{column}' has {int(values.isna().sum())} missing values; expected ids"
        )
    if pd.api.types.is_float_dtype(values) and (values == np.floor(values)).all():
        values = values.astype(np.int64)  # 12.0 -> "12", as the same id elsewhere
    ids = values.astype(str).str.strip()
    refuse_nul(ids, column, what)
    return ids.to_numpy(dtype=str)


@dataclass
class InteractionsRaw:
    """The filtered log per user and the examples cut from it (the data module splits examples).

    Attributes:
        user_ids: `(users,)` user ids in user order (user index u is `user_ids[u - 1]`).
        item_ids: `(items,)` the catalogue's ids in item order.
        item_titles: titles in item order, or empty.
        items: `(N,)` int64 1-based item index of each interaction, grouped by user, oldest first.
        times: `(N,)` int64 unix seconds of the same.
        offsets: `(users + 1,)` user u's interactions are `items[offsets[u-1]:offsets[u]]`.
        train_end: `(users,)` how many of each user's first interactions are train.
        example_user: `(E,)` 1-based user of each example.
        example_position: `(E,)` position of its target in that user's interactions (its history is what
            comes before).
        official: `(E,)` "train" / "val" / "test".
        labels: `(E,)` zeros (examples are not stratified).
        row_ids: `(E,)` each example's user id; `id_name` "user".
    """

    user_ids: np.ndarray
    item_ids: np.ndarray
    item_titles: list[str]
    items: np.ndarray
    times: np.ndarray
    offsets: np.ndarray
    train_end: np.ndarray
    example_user: np.ndarray
    example_position: np.ndarray
    official: np.ndarray
    labels: np.ndarray
    row_ids: np.ndarray
    user_codes: np.ndarray
    item_codes: np.ndarray
    user_attributes: list[str]
    item_attributes: list[str]
    vocabularies: dict[str, list[str]]
    dropped: dict[str, int] = field(default_factory=dict)
    id_name: str = "user"


class InteractionsSource:
    """Read an interaction log (CSV or parquet; optional user and item attribute tables) and cut it into
    next-item examples (see the module docstring).

    Args:
        path: the log, one line per interaction.
        user: the user id column (any ids; strings are fine).
        item: the item id column.
        time: the time column: unix seconds or ISO dates/times.
        rating: optional rating column; with `min_rating` only interactions rated at least that count
            (implicit feedback from explicit ratings).
        min_rating: the implicit-feedback threshold on `rating` (null: every interaction counts).
        users_path: optional user table (CSV or parquet) keyed by the `user` column.
        user_attributes: its columns read as categories (e.g. [age, gender, occupation]).
        items_path: optional item table keyed by the `item` column; its items without any interaction
            join the catalogue as cold items.
        item_attributes: its columns read as categories (e.g. genre flags).
        item_title: its title column (shown in reports and by adlab-generate).
        split: "leave_one_out" or "time".
        val_start: with `split="time"`, the first moment of the val window (ISO date or unix seconds).
        test_start: with `split="time"`, the first moment of the test window.
        max_length: the most recent items of a history a model reads (slots of `history`).
        train_windows: cut each user's train interactions into consecutive windows of `max_length` + 1
            items (every train interaction is a target once); false keeps only the latest window per user.
        core: k-core filter: repeatedly drop users and items with fewer than `core` interactions (0: off).
        repeats: "first" keeps a user's first interaction with an item, "keep" keeps them all.
        duplicates: exact duplicate rows (same user, item and time): "error" or "drop" (keep one).
        separator: for CSV/text files: "comma", "semicolon", "tab", "whitespace" or null (sniffed).
        name: dataset name for reports.
    """

    def __init__(
        self,
        path: str,
        user: str,
        item: str,
        time: str,
        rating: str | None = None,
        min_rating: float | None = None,
        users_path: str | None = None,
        user_attributes: list[str] | None = None,
        items_path: str | None = None,
        item_attributes: list[str] | None = None,
        item_title: str | None = None,
        split: str = "leave_one_out",
        val_start: str | None = None,
        test_start: str | None = None,
        max_length: int = 50,
        train_windows: bool = True,
        core: int = 0,
        repeats: str = "first",
        duplicates: str = "error",
        separator: str | None = "comma",
        name: str = "interactions",
    ):
        if split not in SPLITS:
            raise AdlabError(f"data.source.split={split!r}: expected one of {SPLITS}")
        if repeats not in REPEATS:
            raise AdlabError(f"data.source.repeats={repeats!r}: expected one of {REPEATS}")
        if duplicates not in DUPLICATES:
            raise AdlabError(f"data.source.duplicates={duplicates!r}: expected one of {DUPLICATES}")
        if separator is not None and separator not in SEPARATORS:
            raise AdlabError(
                f"data.source.separator={separator!r}: expected one of {sorted(SEPARATORS)} or null"
            )
        if int(max_length) < 1:
            raise AdlabError(f"data.source.max_length={max_length}: expected at least 1 item")
        if int(core) < 0:
            raise AdlabError(f"data.source.core={core}: expected 0 (off) or a positive count")
        if min_rating is not None and rating is None:
            raise AdlabError(
                f"data.source.min_rating={min_rating}: needs data.source.rating (the rating column)"
            )
        if (
            (user_attributes and not users_path)
            or (item_attributes and not items_path)
            or (item_title and not items_path)
        ):
            raise AdlabError(
                "data.source.user_attributes / item_attributes / item_title: need the table they are in "
                "(data.source.users_path / items_path)"
            )
        self.val_start = self.test_start = None
        if split == "time":
            if val_start is None or test_start is None:
                raise AdlabError(
                    "data.source.split=time: expected data.source.val_start and data.source.test_start"
                )
            self.val_start = parse_moment(val_start, "val_start")
            self.test_start = parse_moment(test_start, "test_start")
            if self.test_start <= self.val_start:
                raise AdlabError(
                    f"data.source.test_start={test_start}: expected a moment after data.source.val_start={val_start}"
                )
        self.path = str(path)
        self.columns = {"user": user, "item": item, "time": time}
        self.rating, self.min_rating = rating, min_rating
        self.users_path, self.user_attributes = users_path, list(user_attributes or [])
        self.items_path, self.item_attributes = items_path, list(item_attributes or [])
        self.item_title = item_title
        self.split = split
        self.max_length = int(max_length)
        self.train_windows = bool(train_windows)
        self.core = int(core)
        self.repeats, self.duplicates = repeats, duplicates
        self.separator = separator
        self.name = name

    # ------------------------------------------------------------------ reading
    def interactions(self) -> tuple[pd.DataFrame, dict[str, int], np.ndarray]:
        """The validated, filtered log `user str, item str, time int64` in time order (ties in file order),
        what was dropped, by reason, and every item id of the unfiltered log."""
        frame = read_log(self.path, "data.source.path", self.separator)
        wanted = {**self.columns, "rating": self.rating}
        missing = [f"{role} '{name}'" for role, name in wanted.items() if name and name not in frame.columns]
        if missing:
            raise AdlabError(
                f"data.source.path={self.path}: no {', '.join(missing)} column; the file has "
                f"{list(frame.columns)[:20]} (set data.source.user/item/time)"
            )
        log_frame = pd.DataFrame(
            {
                "user": read_ids(frame[self.columns["user"]], self.columns["user"], "user"),
                "item": read_ids(frame[self.columns["item"]], self.columns["item"], "item"),
                "time": parse_times(frame[self.columns["time"]], self.columns["time"]),
            }
        )
        logged_items = np.unique(log_frame["item"].to_numpy())
        dropped: dict[str, int] = {}
        duplicated = log_frame.duplicated(["user", "item", "time"])
        if duplicated.any():
            if self.duplicates == "error":
                first = log_frame[duplicated].iloc[0]
                raise AdlabError(
                    f"data.source.path={self.path}: {int(duplicated.sum())} duplicate rows (same user, item "
                    f"and time; first: user {first['user']!r}, item {first['item']!r}); expected one row per "
                    "interaction (data.source.duplicates=drop keeps one of each)"
                )
            dropped["duplicates"] = int(duplicated.sum())
        if self.rating:
            ratings = pd.to_numeric(frame[self.rating], errors="coerce").to_numpy(dtype=np.float64)
            bad = ~np.isfinite(ratings)
            if bad.any():
                first = frame[self.rating][bad].iloc[0]
                raise AdlabError(
                    f"rating column '{self.rating}' has {int(bad.sum())} values that are not numbers "
                    f"(first: {first!r}); expected numeric ratings"
                )
            log_frame["rating"] = ratings
        log_frame = log_frame[~duplicated.to_numpy()]
        if self.min_rating is not None:
            kept = log_frame["rating"] >= float(self.min_rating)
            dropped["below_min_rating"] = int((~kept).sum())
            log_frame = log_frame[kept.to_numpy()]
        # time order per user, ties in file order (a stable sort on the filtered rows)
        log_frame = log_frame.sort_values(["user", "time"], kind="stable").reset_index(drop=True)
        if self.repeats == "first":
            repeated = log_frame.duplicated(["user", "item"])
            dropped["repeats"] = int(repeated.sum())
            log_frame = log_frame[~repeated.to_numpy()]
        if self.core > 0:
            before = len(log_frame)
            log_frame = k_core(log_frame, self.core)
            dropped["k_core"] = before - len(log_frame)
        if len(log_frame) == 0:
            raise AdlabError(
                f"data.source.path={self.path}: no interaction is left after the filters "
                f"({', '.join(f'{k}: {v}' for k, v in dropped.items() if v)}); expected a lower "
                "data.source.min_rating or data.source.core"
            )
        return log_frame.reset_index(drop=True), {k: v for k, v in dropped.items() if v}, logged_items

    def _table(
        self, table: pd.DataFrame, path: str, key: str, columns: list[str], ids: np.ndarray, what: str
    ) -> tuple[np.ndarray, dict[str, list[str]], pd.DataFrame]:
        """Attribute codes `(len(ids), len(columns))` int64 of a user or item table (0: unknown or absent),
        the columns' vocabularies, and the table indexed by its keys (as strings)."""
        missing = [c for c in [key, *columns] if c not in table.columns]
        if missing:
            raise AdlabError(
                f"data.source.{what}_path={path}: no column {missing}; the file has {list(table.columns)[:20]}"
            )
        keys = read_ids(table[key], key, f"{what} table's")
        repeated = pd.Series(keys).duplicated()
        if repeated.any():
            raise AdlabError(
                f"data.source.{what}_path={path}: {int(repeated.sum())} repeated ids in '{key}' "
                f"(first: {keys[repeated.to_numpy()][0]!r}); expected one row per {what[:-1]}"
            )
        table = table.assign(**{key: keys}).set_index(key)
        codes = np.zeros((len(ids), len(columns)), dtype=np.int64)
        vocabularies = {}
        present = table.reindex(ids)
        for position, column in enumerate(columns):
            values = table[column].astype("string").fillna(MISSING).astype(str)
            vocabulary = sorted(values.unique().tolist())
            lookup = {value: index + 1 for index, value in enumerate(vocabulary)}
            wanted = present[column].astype("string")
            codes[:, position] = [
                lookup.get(value, 0) if found else 0
                for value, found in zip(
                    wanted.fillna(MISSING).astype(str), present.index.isin(table.index), strict=True
                )
            ]
            vocabularies[f"{what[:-1]}.{column}"] = vocabulary
        return codes, vocabularies, table

    # ------------------------------------------------------------------ examples
    def load(self) -> InteractionsRaw:
        """Read, validate and filter the log; number users and items; cut the examples."""
        frame, dropped, logged_items = self.interactions()
        item_ids = id_order(frame["item"].to_numpy())
        item_table = None
        if self.items_path:
            item_key = self.columns["item"]
            item_table = read_log(self.items_path, "data.source.items_path", self.separator)
            if item_key not in item_table.columns:
                raise AdlabError(
                    f"data.source.items_path={self.items_path}: no column '{item_key}' (the item id column of "
                    f"the log); the file has {list(item_table.columns)[:20]}"
                )
            # items of the table that no one ever interacted with are cold items of the catalogue
            cold = np.setdiff1d(read_ids(item_table[item_key], item_key, "item table's"), logged_items)
            item_ids = id_order(np.concatenate([item_ids, cold]))
        if self.split == "leave_one_out":
            counts = frame.groupby("user")["item"].size()
            single = counts[counts < 2].index
            if len(single):
                dropped["single_interaction_users"] = len(single)
                log.info(
                    "data: %d users with a single interaction dropped (leave-one-out needs two: one to learn "
                    "from, one to test)",
                    len(single),
                )
                frame = frame[~frame["user"].isin(single)]
        if len(frame) == 0:
            raise AdlabError(
                f"data.source.path={self.path}: no user has two interactions; leave-one-out needs at least "
                "two per user (one to learn from, one to test)"
            )
        user_ids = id_order(frame["user"].to_numpy())
        user_index = pd.Series(np.arange(1, len(user_ids) + 1), index=user_ids)
        item_index = pd.Series(np.arange(1, len(item_ids) + 1), index=item_ids)
        frame = frame.assign(u=user_index.reindex(frame["user"]).to_numpy())
        frame = frame.sort_values(["u"], kind="stable")  # keeps each user's time order
        items = item_index.reindex(frame["item"]).to_numpy(dtype=np.int64)
        times = frame["time"].to_numpy(dtype=np.int64)
        counts = np.bincount(frame["u"].to_numpy(), minlength=len(user_ids) + 1)[1:]
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        train_end, examples = self._examples(times, offsets)
        if not (examples[2] == "train").any():
            raise AdlabError(
                f"data.source.path={self.path}: no train example: every user has too few interactions "
                "before their val/test targets (expected users with three or more interactions, or an "
                "earlier data.source.val_start)"
            )
        user_codes = np.zeros((len(user_ids), 0), dtype=np.int64)
        item_codes = np.zeros((len(item_ids), 0), dtype=np.int64)
        vocabularies: dict[str, list[str]] = {}
        titles: list[str] = []
        if self.users_path:
            user_table = read_log(self.users_path, "data.source.users_path", self.separator)
            user_codes, found, _ = self._table(
                user_table, self.users_path, self.columns["user"], self.user_attributes, user_ids, "users"
            )
            vocabularies.update(found)
        if item_table is not None:
            item_codes, found, table = self._table(
                item_table, self.items_path, self.columns["item"], self.item_attributes, item_ids, "items"
            )
            vocabularies.update(found)
            if self.item_title:
                if self.item_title not in table.columns:
                    raise AdlabError(
                        f"data.source.item_title={self.item_title}: no such column in {self.items_path}; it has "
                        f"{list(table.columns)[:20]}"
                    )
                named = table[self.item_title].astype("string").reindex(item_ids)
                titles = [str(t) if not pd.isna(t) else str(i) for t, i in zip(named, item_ids, strict=True)]
        example_user, example_position, official = examples
        return InteractionsRaw(
            user_ids=user_ids,
            item_ids=item_ids,
            item_titles=titles,
            items=items,
            times=times,
            offsets=offsets,
            train_end=train_end,
            example_user=example_user,
            example_position=example_position,
            official=official,
            labels=np.zeros(len(official), dtype=np.int64),
            row_ids=user_ids[example_user - 1],
            user_codes=user_codes,
            item_codes=item_codes,
            user_attributes=list(self.user_attributes),
            item_attributes=list(self.item_attributes),
            vocabularies=vocabularies,
            dropped=dropped,
        )

    def _examples(
        self, times: np.ndarray, offsets: np.ndarray
    ) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Each user's number of train interactions, and the examples `(user, position, stage)`."""
        users, positions, stages = [], [], []
        train_end = np.zeros(len(offsets) - 1, dtype=np.int64)
        for user in range(1, len(offsets)):
            start, stop = offsets[user - 1], offsets[user]
            count = int(stop - start)
            if self.split == "leave_one_out":
                evaluated = [(count - 1, "test")] + ([(count - 2, "val")] if count >= 3 else [])
                train = count - len(evaluated)
            else:
                user_times = times[start:stop]
                train = int(np.searchsorted(user_times, self.val_start, side="left"))
                first_test = int(np.searchsorted(user_times, self.test_start, side="left"))
                evaluated = []
                if train < first_test:
                    evaluated.append((train, "val"))
                if first_test < count:
                    evaluated.append((first_test, "test"))
            train_end[user - 1] = train
            # train targets: the last train interaction, then every max_length-th one before it
            ends = (
                range(train - 1, 0, -self.max_length) if self.train_windows else range(train - 1, 0, -train)
            )
            for position in ends:
                users.append(user)
                positions.append(position)
                stages.append("train")
            for position, stage in evaluated:
                users.append(user)
                positions.append(position)
                stages.append(stage)
        return train_end, (
            np.asarray(users, dtype=np.int64),
            np.asarray(positions, dtype=np.int64),
            np.asarray(stages, dtype=object).astype(str),
        )

    # ------------------------------------------------------------------ tensors
    def build(self, raw: InteractionsRaw, splits: dict[str, np.ndarray]) -> BuiltData:
        """Tensors per split and the catalogue; counts (popularity, stored histories) on train only.

        Batch contract (rows = examples): `history (rows, max_length) int64` the latest items before the
        target, oldest first, left-padded with 0; `target (rows,) int64`; `user (rows,) int64` 1-based
        user index; `user_features (rows, U) int64` attribute codes; and for val/test `seen (rows, S)
        int64`: every item the user had before the target (padded with 0; excluded from rankings).
        """
        for stage, rows in splits.items():
            if not np.array_equal(np.sort(rows), np.flatnonzero(raw.official == stage)):
                raise AdlabError(
                    "data.split: the interactions source splits by time (leave-one-out or a time cut); "
                    "expected data.split=official"
                )
        users = len(raw.user_ids)
        train_positions = np.concatenate(
            [np.arange(raw.offsets[u], raw.offsets[u] + raw.train_end[u]) for u in range(users)]
        ).astype(np.int64)
        train_items = raw.items[train_positions]
        popularity = np.bincount(train_items, minlength=len(raw.item_ids) + 1)[1:]
        features = InteractionsFeatures(
            item_ids=[str(i) for i in raw.item_ids],
            item_titles=list(raw.item_titles),
            user_ids=[str(u) for u in raw.user_ids],
            item_codes=raw.item_codes.tolist(),
            user_codes=raw.user_codes.tolist(),
            vocabularies=raw.vocabularies,
            popularity=popularity.astype(int).tolist(),
            history_offsets=np.concatenate([[0], np.cumsum(raw.train_end)]).astype(int).tolist(),
            history_items=train_items.astype(int).tolist(),
        )
        tensors = {stage: self._tensors(raw, rows, stage != "train") for stage, rows in splits.items()}
        meta = InteractionsMeta(
            dataset=self.name,
            rows={stage: int(len(rows)) for stage, rows in splits.items()},
            items=len(raw.item_ids),
            users=users,
            max_length=self.max_length,
            user_attributes=list(raw.user_attributes),
            user_cardinalities=[len(raw.vocabularies[f"user.{c}"]) + 1 for c in raw.user_attributes],
            item_attributes=list(raw.item_attributes),
            item_cardinalities=[len(raw.vocabularies[f"item.{c}"]) + 1 for c in raw.item_attributes],
            split=self.split,
            train_interactions=len(train_items),
            dropped=dict(raw.dropped),
            has_titles=bool(raw.item_titles),
        )
        return BuiltData(tensors=tensors, meta=meta, state=features)

    def _tensors(self, raw: InteractionsRaw, rows: np.ndarray, with_seen: bool) -> dict[str, torch.Tensor]:
        user = raw.example_user[rows]
        position = raw.example_position[rows]
        start = raw.offsets[user - 1]
        tensors = {
            "history": torch.from_numpy(window(raw.items, start, position, self.max_length)),
            "target": torch.from_numpy(raw.items[start + position]),
            "user": torch.from_numpy(user.astype(np.int64)),
            "user_features": torch.from_numpy(raw.user_codes[user - 1]),
        }
        if with_seen:
            longest = max(int(position.max()) if len(position) else 0, 1)
            tensors["seen"] = torch.from_numpy(window(raw.items, start, position, longest))
        return tensors


def window(items: np.ndarray, start: np.ndarray, position: np.ndarray, length: int) -> np.ndarray:
    """`(rows, length)` int64: the `length` items before each row's `position` in its user's run
    `items[start:]`, oldest first, left-padded with 0."""
    offsets = position[:, None] - length + np.arange(length)[None, :]
    valid = offsets >= 0
    gathered = items[np.where(valid, start[:, None] + offsets, 0)]
    return np.where(valid, gathered, 0).astype(np.int64)


def k_core(frame: pd.DataFrame, k: int) -> pd.DataFrame:
    """Drop users and items with fewer than `k` interactions until none is left (the k-core)."""
    while True:
        user_counts = frame.groupby("user")["item"].transform("size")
        item_counts = frame.groupby("item")["user"].transform("size")
        kept = (user_counts >= k) & (item_counts >= k)
        if kept.all():
            return frame
        frame = frame[kept.to_numpy()]


def generate_interactions(
    users: int = 60, items: int = 40, seed: int = 0, per_user: tuple[int, int] = (4, 20)
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """A tiny log with MovieLens' schema, for tests and notebooks: `(ratings, items, users)` frames.

    ratings: `user_id, item_id, rating (1-5), timestamp (unix seconds)`; items: `item_id, title, genre`;
    users: `user_id, age, gender`. Each user walks the catalogue: the next item is mostly one to three
    steps after the last (a sequential pattern a model can learn), sometimes a popular item.
    """
    generator = np.random.default_rng(seed)
    popular = generator.permutation(items)[: max(items // 5, 1)]
    rows = []
    for user in range(1, users + 1):
        count = int(generator.integers(per_user[0], per_user[1] + 1))
        current = int(generator.integers(0, items))
        moment = 880_000_000 + int(generator.integers(0, 10_000_000))
        chosen: list[int] = []
        for _ in range(count):
            if generator.random() < 0.75:
                current = (current + int(generator.integers(1, 4))) % items
            else:
                current = int(generator.choice(popular))
            if current in chosen:
                current = int(generator.integers(0, items))
            chosen.append(current)
            moment += int(generator.integers(60, 86_400))
            rows.append((user, current + 1, int(generator.integers(1, 6)), moment))
    ratings = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])
    ratings = ratings.drop_duplicates(["user_id", "item_id"]).reset_index(drop=True)
    genres = np.array(["Drama", "Comedy", "Action", "Horror"])
    item_table = pd.DataFrame(
        {
            "item_id": np.arange(1, items + 1),
            "title": [f"Film {index:03d}" for index in range(1, items + 1)],
            "genre": genres[np.arange(items) % len(genres)],
        }
    )
    user_table = pd.DataFrame(
        {
            "user_id": np.arange(1, users + 1),
            "age": generator.integers(18, 70, users),
            "gender": np.where(generator.random(users) < 0.5, "F", "M"),
        }
    )
    return ratings, item_table, user_table
