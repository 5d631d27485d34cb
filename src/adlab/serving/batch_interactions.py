"""`adlab-score` of a recommendation package (data kind `interactions`): top-k items per user of a file.

    adlab-score model=PACKAGE input=histories.csv output=top.csv [k=10] \
        [histories.user=user_id histories.item=item_id histories.time=timestamp] [histories.users_path=FILE]

The input holds one row per user-item event, like the interactions source (CSV or parquet; `histories.time`
unix seconds or ISO dates, or null to take each user's rows in file order, oldest first). Each user's
items are their history; the output holds `user, rank, item, title, score` rows, `k` per user (fewer when a
user has seen nearly the whole catalogue), users in the order they first appear. The rules are the
service's (`RecommenderScorer`): an item id not in the catalogue is ignored and counted (one warning line
for the file), a user with no known item gets the most popular items, a user's items are never
recommended to them. When the package reads user attributes (a two-tower model's age, gender ...),
`histories.users_path` names a table of them (the user column and those attribute columns, one row per
user; a user not in it, or a value training never saw, is coded unknown). The file is read whole (a file of histories, not a log of years); the output is
written under a temporary name and renamed at the end.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow as pa
from omegaconf import DictConfig

from adlab.data.sources.base import read_log
from adlab.data.sources.interactions import parse_times, read_ids
from adlab.errors import AdlabError, excerpt
from adlab.harness.report import print_outputs
from adlab.serving.batch import TableOutput, file_kind
from adlab.serving.package import ModelPackage
from adlab.serving.recommender import RecommenderScorer

OUTPUT_COLUMNS = ["user", "rank", "item", "title", "score"]
TABULAR_ONLY = ("id_column", "keep", "ignore")  # score.yaml keys a recommendation package does not read


@dataclass
class HistoryColumns:
    """The input file's columns: user id, item id, and event time (None: file order, oldest first)."""

    user: str = "user_id"
    item: str = "item_id"
    time: str | None = "timestamp"


@dataclass
class HistoriesReport:
    """What a job did: users answered, rows written, unknown item ids (rows and distinct), fallbacks."""

    users: int = 0
    rows: int = 0
    unknown_rows: int = 0
    unknown_items: list[str] = field(default_factory=list)
    fallback_users: int = 0
    users_without_attributes: int = 0
    unknown_user_values: int = 0

    def unknown_summary(self) -> str:
        """One line about the item ids not in the catalogue (empty when there were none)."""
        if not self.unknown_rows:
            return ""
        shown = ", ".join(repr(item) for item in self.unknown_items[:3])
        more = " ..." if len(self.unknown_items) > 3 else ""
        return (
            f"{self.unknown_rows} rows name {len(self.unknown_items)} item ids not in the catalogue "
            f"({shown}{more}); ignored"
        )


def read_histories(path: Path, columns: HistoryColumns) -> pd.DataFrame:
    """The file as `user, item` string rows, each user's rows oldest first (ties and `time=None` in file order)."""
    frame = read_log(path, "input")
    wanted = {"user": columns.user, "item": columns.item, "time": columns.time}
    missing = [f"{role} '{name}'" for role, name in wanted.items() if name and name not in frame.columns]
    if missing:
        raise AdlabError(
            f"no {', '.join(missing)} column; the file has {[excerpt(c, 40) for c in frame.columns[:20]]} "
            "(set histories.user, histories.item, histories.time; histories.time=null: file order)"
        )
    histories = pd.DataFrame(
        {
            "user": read_ids(frame[columns.user], columns.user, "input"),
            "item": read_ids(frame[columns.item], columns.item, "input"),
        }
    )
    if columns.time:
        # users in the order they first appear in the file; each user's rows by time, ties in file order
        histories["first_row"] = pd.factorize(histories["user"])[0]
        histories["time"] = parse_times(frame[columns.time], columns.time)
        histories = histories.sort_values(["first_row", "time"], kind="stable")
    return histories[["user", "item"]]


def read_users(path: Path, user_column: str, scorer: RecommenderScorer) -> dict[str, dict[str, str | None]]:
    """User id -> `{attribute: value or None}` from a table of the package's user attributes."""
    what = "histories.users_path"
    if not scorer.user_attributes:
        raise AdlabError(f"{what}={path}: this package reads no user attributes; leave it null")
    table = read_log(path, what)
    missing = [c for c in [user_column, *scorer.user_attributes] if c not in table.columns]
    if missing:
        raise AdlabError(f"{what}={path}: no column {missing}; the file has {list(table.columns)[:20]}")
    ids = pd.Series(read_ids(table[user_column], user_column, what))
    if ids.duplicated().any():
        first = ids[ids.duplicated()].iloc[0]
        raise AdlabError(f"{what}={path}: user {first!r} has more than one row; expected one row per user")
    # as the interactions source reads attribute values (their training vocabularies are of these strings)
    values = {name: table[name].astype("string") for name in scorer.user_attributes}
    return {
        user: {
            name: None if pd.isna(column.iloc[row]) else str(column.iloc[row])
            for name, column in values.items()
        }
        for row, user in enumerate(ids)
    }


def recommend_histories(
    scorer: RecommenderScorer,
    histories: pd.DataFrame,
    k: int,
    users: dict[str, dict[str, str | None]] | None = None,
) -> tuple[pa.Table, HistoriesReport]:
    """Top-k rows (`OUTPUT_COLUMNS`) for every user of `histories` (`user, item` rows, oldest first), with
    their attributes from `users` (`read_users`) when given."""
    k = scorer.check_k(k)
    report = HistoriesReport()
    unknown = ~histories["item"].isin(scorer.index)
    report.unknown_rows = int(unknown.sum())
    report.unknown_items = list(dict.fromkeys(histories.loc[unknown, "item"]))
    columns: dict[str, list] = {name: [] for name in OUTPUT_COLUMNS}
    for user, items in histories.groupby("user", sort=False)["item"]:
        attributes = None if users is None else users.get(user, {})
        answer = scorer.recommend(items.tolist(), k, attributes)
        report.users_without_attributes += attributes == {}
        report.unknown_user_values += answer.unknown_user_values or 0
        count = len(answer.items)
        columns["user"] += [user] * count
        columns["rank"] += list(range(1, count + 1))
        columns["item"] += answer.items
        columns["title"] += answer.titles
        columns["score"] += answer.scores
        report.users += 1
        report.fallback_users += answer.fallback is not None
    report.rows = len(columns["user"])
    types = [pa.string(), pa.int32(), pa.string(), pa.string(), pa.float64()]
    table = pa.table(
        {name: pa.array(columns[name], kind) for name, kind in zip(OUTPUT_COLUMNS, types, strict=True)}
    )
    return table, report


def score_histories(
    scorer: RecommenderScorer,
    input_path: str | Path,
    output_path: str | Path,
    k: int = 10,
    columns: HistoryColumns | None = None,
    users_path: str | Path | None = None,
) -> HistoriesReport:
    """Write the top-k items of every user of `input_path` to `output_path` (CSV or parquet, by suffix).

    `AdlabError` naming the input (a missing column, a missing id, a time that is not one, `k` out of
    range, an unreadable file); nothing is written then.
    """
    input_path, output_path = Path(input_path), Path(output_path)
    scorer.check_k(k)
    file_kind(input_path, "input")
    if input_path.resolve() == output_path.resolve():
        raise AdlabError(f"output={output_path}: would overwrite the input")
    output = TableOutput(output_path)
    columns = columns or HistoryColumns()
    try:
        histories = read_histories(input_path, columns)
    except AdlabError as error:
        message = str(error)
        raise AdlabError(
            message if message.startswith("input=") else f"input={input_path}: {message}"
        ) from None
    users = None if users_path is None else read_users(Path(users_path), columns.user, scorer)
    table, report = recommend_histories(scorer, histories, k, users)
    success = False
    try:
        output.write(table)
        success = True
    except OSError as error:
        raise AdlabError(
            f"output={output_path}: cannot write ({error.strerror or excerpt(error)}); nothing was written"
        ) from None
    finally:
        output.close(success)
    return report


def _refuse_tabular_options(cfg: DictConfig) -> None:
    """A tabular option set for a recommendation package is a mistake, said in one line."""
    for key in TABULAR_ONLY:
        if cfg.get(key):  # null and [] are their defaults
            raise AdlabError(
                f"{key}={cfg.get(key)}: a tabular option; a recommendation package reads histories.user, "
                "histories.item, histories.time and k"
            )


def score_job(cfg: DictConfig, package: ModelPackage) -> None:
    """`adlab-score` of a recommendation package: top-k per user of `cfg.input` into `cfg.output`."""
    _refuse_tabular_options(cfg)
    scorer = RecommenderScorer(package, int(cfg.threads), allow_torchscript=bool(cfg.allow_torchscript))
    history = cfg.histories
    columns = HistoryColumns(str(history.user), str(history.item), history.time and str(history.time))
    started = time.perf_counter()
    report = score_histories(scorer, cfg.input, cfg.output, cfg.k, columns, history.users_path)
    seconds = time.perf_counter() - started
    print(
        f"recommended {cfg.k} items to each of {report.users} users ({report.rows} rows) with "
        f"{package.model_version} into {cfg.output} in {seconds:.2f} s"
        + (
            f"; {report.fallback_users} users with no known item got the most popular"
            if report.fallback_users
            else ""
        )
    )
    if report.unknown_rows:
        print(f"adlab: warning: input={cfg.input}: {report.unknown_summary()}", file=sys.stderr)
    if report.users_without_attributes or report.unknown_user_values:
        print(
            f"adlab: warning: histories.users_path={history.users_path}: {report.users_without_attributes} "
            f"users not in it, {report.unknown_user_values} attribute values training never saw (coded unknown)",
            file=sys.stderr,
        )
    elif scorer.user_attributes and history.users_path is None:
        print(
            f"the package takes user attributes {scorer.user_attributes}: without histories.users_path "
            "they are coded unknown"
        )
    print_outputs(None, {"recommendations": cfg.output})
