"""Tabular source: a CSV or parquet file with a binary target, categorical and numeric features."""

from __future__ import annotations

import csv
import difflib
import gzip
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from pyarrow.lib import ArrowException

from adlab.data.features import MISSING, UNKNOWN, DataMeta, TabularFeatures, TabularMeta
from adlab.data.sources.base import BuiltData, NewData
from adlab.errors import AdlabError, excerpt

IMPUTE_CHOICES = (None, "median", "mean", "zero")
TABLE_SUFFIXES = (".csv", ".tsv", ".tab", ".txt")  # text tables; parquet besides
POSITIVE_WORDS = {"1", "yes", "y", "true", "t", "positive", "buyer", "buy"}


def _suggest(name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _columns_hint(columns: Any) -> str:
    names = [str(c) for c in columns]
    return f"columns are {names[:20]}" + (f" ... ({len(names)} in all)" if len(names) > 20 else "")


def _csv_separator(suffixes: str) -> str | None:
    """`,` for .csv, a tab for .tsv, None (sniffed) for .txt."""
    if suffixes.endswith((".tsv", ".tsv.gz", ".tab")):
        return "\t"
    return None if suffixes.endswith(".txt") else ","


def _open_text(path: Path):
    if path.suffix.lower() == ".gz":
        return gzip.open(path, "rt", newline="", encoding="utf-8", errors="replace")
    return open(path, newline="", encoding="utf-8", errors="replace")


def _short_row(path: Path, width: int, separator: str) -> tuple[int, int] | None:
    """The first line (1-based) holding fewer fields than the header, and its field count; None if none."""
    if path.suffix.lower() not in (".csv", ".tsv", ".tab", ".txt", ".gz"):
        return None
    with _open_text(path) as stream:
        reader = csv.reader(stream, delimiter=separator)
        for row in reader:
            if row and len(row) < width:
                return reader.line_num, len(row)
    return None


def _sniffed_separator(path: Path) -> str:
    with _open_text(path) as stream:
        sample = stream.read(1 << 16)
    try:
        return csv.Sniffer().sniff(sample).delimiter
    except csv.Error:
        return ","


def read_table(
    path: str | Path, what: str = "data.source.path", text_columns: list[str] | None = None
) -> pd.DataFrame:
    """Read a CSV or parquet file; raise `AdlabError` naming the file when it is missing, unreadable or empty.

    Refused rather than guessed at: a folder, a file that is not UTF-8, duplicate column names (pandas
    would rename them `X.1`), a row with fewer fields than the header (pandas would fill it with missing
    values), and a file whose only column name holds `;`, `|` or tabs (another separator than commas).
    `text_columns` of a CSV are read as the text written there (a title "0" stays "0", not 0.0; "NA" stays
    "NA"; an empty cell is "").
    """
    path = Path(path)
    if path.is_dir():
        raise AdlabError(f"{what}={path}: a folder; expected a CSV or parquet file")
    if not path.is_file():
        raise AdlabError(f"{what}={path}: file not found")
    suffixes = "".join(path.suffixes).lower()
    parquet = ".parquet" in suffixes or suffixes.endswith(".pq")
    if not parquet and not suffixes.removesuffix(".gz").endswith(TABLE_SUFFIXES):
        raise AdlabError(
            f"{what}={path}: a {path.suffix or 'suffix-less'} file; expected a table: "
            f"{', '.join(TABLE_SUFFIXES)} (optionally .gz) or .parquet"
        )
    kind = "parquet" if parquet else "CSV"
    separator = None if parquet else _csv_separator(suffixes)
    engine = {"sep": separator} if separator else {"sep": None, "engine": "python"}
    try:
        if parquet:
            try:
                frame = pd.read_parquet(path)
            except Exception as error:  # a damaged file fails in many ways (KeyError in its metadata ...)
                raise ValueError(
                    str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
                ) from None
            header = [str(c) for c in frame.columns]
        else:
            header = pd.read_csv(path, header=None, nrows=1, dtype=str, **engine).iloc[0].tolist()
            frame = pd.read_csv(path, **engine)
            wanted = [c for c in text_columns or [] if c in frame.columns]
            if wanted:  # as written: "0" stays "0" (not 0.0), "NA" stays "NA" (not missing)
                texts = pd.read_csv(path, usecols=wanted, dtype=str, keep_default_na=False, **engine)
                for column in wanted:
                    frame[column] = texts[column]
    except pd.errors.EmptyDataError:
        raise AdlabError(f"{what}={path}: the file is empty, expected a header and rows") from None
    except UnicodeDecodeError as error:
        raise AdlabError(
            f"{what}={path}: not UTF-8 text (byte {error.object[error.start : error.start + 1]!r} at "
            f"position {error.start}); save it as UTF-8 or parquet"
        ) from None
    except (ValueError, OSError, csv.Error, pd.errors.ParserError, ArrowException) as error:
        raise AdlabError(f"{what}={path}: could not parse as {kind} ({excerpt(error)})") from None
    names = [str(name) for name in header]
    duplicated = sorted({name for name in names if names.count(name) > 1})
    if duplicated:
        raise AdlabError(
            f"{what}={path}: duplicate column names {duplicated[:5]}; expected every column to have its own name"
        )
    if len(names) == 1 and any(mark in names[0] for mark in (";", "|", "\t")):
        mark = next(m for m in (";", "|", "\t") if m in names[0])
        raise AdlabError(
            f"{what}={path}: one column named {excerpt(names[0], 60)!r}: the file looks {mark!r}-separated; expected "
            "commas between columns (or a .tsv file for tabs, or parquet)"
        )
    unnamed = [
        position for position, name in enumerate(names) if name in ("", "nan") or name.startswith("Unnamed: ")
    ]
    if unnamed and not parquet:
        raise AdlabError(
            f"{what}={path}: column {unnamed[0] + 1} has no name (a row index saved with the table?); "
            "expected a name for every column (drop or name it)"
        )
    if len(frame) == 0:
        raise AdlabError(f"{what}={path}: the file has a header but no rows")
    if not parquet and frame.isna().to_numpy().any():
        short = _short_row(path, len(names), separator or _sniffed_separator(path))
        if short is not None:
            raise AdlabError(
                f"{what}={path}: line {short[0]} has {short[1]} fields but the header has {len(names)}; "
                "expected every row to have a value (or an empty field) per column"
            )
    return frame


def binary_target(values: pd.Series, column: str, positive: Any = None) -> np.ndarray:
    """Map a two-valued column to 0/1; `positive` names the positive class when it is not obvious."""
    present = values.dropna()
    if len(present) < len(values):
        first = int(np.flatnonzero(values.isna().to_numpy())[0])
        raise AdlabError(
            f"target column '{column}' has {len(values) - len(present)} missing values (first in data row "
            f"{first + 1}); expected a class in every row"
        )
    classes = sorted(present.unique().tolist(), key=str)
    if len(classes) == 1:
        raise AdlabError(f"target column '{column}' has only one class ({classes[0]!r}); expected two")
    if len(classes) > 2:
        shown = ", ".join(repr(c) for c in classes[:5])
        raise AdlabError(
            f"target column '{column}' has {len(classes)} values ({shown}...); expected a binary target"
        )
    if positive is None:
        numeric = pd.api.types.is_numeric_dtype(present) or pd.api.types.is_bool_dtype(present)
        if numeric and set(map(float, classes)) == {0.0, 1.0}:
            positive = 1
        else:
            words = [c for c in classes if str(c).strip().lower() in POSITIVE_WORDS]
            if len(words) != 1:
                raise AdlabError(
                    f"target column '{column}' has classes {classes}; set data.source.positive to the positive one"
                )
            positive = words[0]
    matches = [c for c in classes if str(c) == str(positive)]
    if not matches:
        raise AdlabError(f"data.source.positive={positive!r} is not a class of target '{column}' ({classes})")
    return (present.astype(str) == str(matches[0])).to_numpy(dtype=np.int64)


def _is_number(values: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)


_ID_WORD = re.compile(r"(?:^|[^A-Za-z])(?:id|ids|ID|Id|IDs)(?![A-Za-z])|[a-z0-9](?:ID|Id)s?$")


def looks_like_id(name: Any, values: pd.Series) -> bool:
    """A row identifier rather than a feature: "id" as a word of the name (`customer_id`, `CustomerID`,
    `id`) and a distinct integer or text per row. As a feature it would let a model learn row order."""
    if not _ID_WORD.search(str(name)) or len(values) < 2 or values.isna().any():
        return False
    if _is_number(values):
        numbers = values.to_numpy(dtype=np.float64)
        if not np.all(np.isfinite(numbers)) or not np.all(numbers == np.round(numbers)):
            return False
    elif not (pd.api.types.is_string_dtype(values) or pd.api.types.is_object_dtype(values)):
        return False
    return bool(values.is_unique)


@dataclass
class TabularRaw:
    """A validated table: `frame` holds the features, `labels` the 0/1 target."""

    frame: pd.DataFrame
    labels: np.ndarray
    categorical: list[str]
    numeric: list[str]
    official: np.ndarray | None = None
    groups: np.ndarray | None = None
    row_ids: np.ndarray | None = None
    id_name: str = "row"


class TabularSource:
    """Read a CSV/parquet file with a binary target and declared (or inferred) feature columns.

    Args:
        path: CSV or parquet file.
        target: name of the binary target column.
        categorical: categorical feature columns; inferred (non-numeric columns) when both lists are None.
        numeric: numeric feature columns; inferred (numeric columns) when both lists are None.
        positive: the positive class of the target when it is not 1/True/Yes.
        split_column: column holding the dataset's official split ("train"/"val"/"test").
        id_column: a row identifier kept out of the features.
        drop: further columns to ignore.
        impute: None (error on NaN/inf in numeric features), "median", "mean" or "zero" (fitted on train).
        name: dataset name used in messages and metadata.
    """

    def __init__(
        self,
        path: str,
        target: str,
        categorical: list[str] | None = None,
        numeric: list[str] | None = None,
        positive: Any = None,
        split_column: str | None = None,
        id_column: str | None = None,
        drop: list[str] | None = None,
        impute: str | None = None,
        name: str = "table",
    ):
        if impute not in IMPUTE_CHOICES:
            raise AdlabError(f"data.source.impute={impute!r}: expected one of {IMPUTE_CHOICES}")
        self.path = str(path)
        self.target = target
        self.categorical = None if categorical is None else list(categorical)
        self.numeric = None if numeric is None else list(numeric)
        self.positive = positive
        self.split_column = split_column
        self.id_column = id_column
        self.drop = list(drop or [])
        self.impute = impute
        self.name = name

    def _check_roles(self, frame: pd.DataFrame) -> None:
        """Named columns exist, and no column has two roles (a target among the features leaks the answer)."""
        columns = list(frame.columns)
        named = [
            ("id_column", [self.id_column] if self.id_column else []),
            ("drop", self.drop),
            ("categorical", self.categorical or []),
            ("numeric", self.numeric or []),
        ]
        for key, names in named:
            for name in names:
                if name not in frame.columns:
                    raise AdlabError(
                        f"data.source.{key}: column {name!r} is not in {self.path}{_suggest(name, columns)}; "
                        f"{_columns_hint(columns)}"
                    )
        features = [*(self.categorical or []), *(self.numeric or [])]
        both = sorted(set(self.categorical or []) & set(self.numeric or []))
        if both:
            raise AdlabError(
                f"data.source.categorical and data.source.numeric both list {both[:5]}; expected each column once"
            )
        for key, name in (
            ("target", self.target),
            ("id_column", self.id_column),
            ("split_column", self.split_column),
        ):
            if name and name in features:
                raise AdlabError(
                    f"data.source.{key}={name} is also listed as a feature; expected it out of "
                    "data.source.categorical / numeric (a feature must not be the answer, a row id or the split)"
                )
            if name and name in self.drop:
                raise AdlabError(f"data.source.{key}={name} is also in data.source.drop; expected it once")

    def _feature_columns(self, frame: pd.DataFrame) -> tuple[list[str], list[str]]:
        self._check_roles(frame)
        reserved = {self.target, self.split_column, self.id_column, *self.drop}
        candidates = [c for c in frame.columns if c not in reserved]
        declared = {*(self.categorical or []), *(self.numeric or [])}
        for column in candidates:
            if column not in declared and looks_like_id(column, frame[column]):
                raise AdlabError(
                    f"{self.path}: column '{column}' looks like a row id (a distinct value per row, 'id' in its "
                    f"name) and would become a feature; set data.source.id_column={column} to keep it out, "
                    "or list it in data.source.numeric or categorical to use it as a feature"
                )
        if self.categorical is None and self.numeric is None:
            numeric = [c for c in candidates if _is_number(frame[c])]
            categorical = [c for c in candidates if c not in numeric]
        elif self.numeric is None:  # the undeclared kind takes every remaining column
            categorical = list(self.categorical)
            numeric = [c for c in candidates if c not in categorical]
        elif self.categorical is None:
            numeric = list(self.numeric)
            categorical = [c for c in candidates if c not in numeric]
        else:
            categorical, numeric = list(self.categorical), list(self.numeric)
        missing = [c for c in categorical + numeric if c not in frame.columns]
        if missing:
            raise AdlabError(
                f"{self.path}: feature columns {missing} not found; columns are {list(frame.columns)[:20]}"
            )
        if not categorical and not numeric:
            raise AdlabError(f"{self.path}: no feature columns besides the target '{self.target}'")
        return categorical, numeric

    def _check_numeric(self, frame: pd.DataFrame, numeric: list[str]) -> pd.DataFrame:
        for column in numeric:
            values = frame[column]
            if not _is_number(values):
                parsed = pd.to_numeric(values, errors="coerce")
                bad = values[parsed.isna() & values.notna()]
                if len(bad):
                    raise AdlabError(
                        f"{self.path}: numeric column '{column}' has {len(bad)} non-numeric values "
                        f"(e.g. {bad.iloc[0]!r}); declare it categorical or fix the file"
                    )
                frame[column] = parsed
            frame[column] = frame[column].astype("float64")
            bad_count = int((~np.isfinite(frame[column].to_numpy())).sum())
            if bad_count and self.impute is None:
                raise AdlabError(
                    f"{self.path}: numeric column '{column}' has {bad_count} NaN/inf values; "
                    "fix the file or set data.source.impute=median|mean|zero"
                )
            frame[column] = frame[column].replace([np.inf, -np.inf], np.nan)
        return frame

    def read_frame(self) -> pd.DataFrame:
        """The raw table; sources that generate their table (e.g. web sessions) override this."""
        return read_table(self.path)

    def load(self) -> TabularRaw:
        """Read and validate the file (see the class docstring for what is checked)."""
        frame = self.read_frame()
        if self.target not in frame.columns:
            raise AdlabError(
                f"{self.path}: target column '{self.target}' not found"
                f"{_suggest(self.target, list(frame.columns))}; {_columns_hint(frame.columns)}"
            )
        if self.split_column and self.split_column not in frame.columns:
            raise AdlabError(
                f"{self.path}: split column '{self.split_column}' not found"
                f"{_suggest(self.split_column, list(frame.columns))}; {_columns_hint(frame.columns)}"
            )
        labels = binary_target(frame[self.target], self.target, self.positive)
        categorical, numeric = self._feature_columns(frame)
        features = self._feature_frame(frame, categorical, numeric)
        official = frame[self.split_column].astype(str).to_numpy() if self.split_column else None
        row_ids = frame[self.id_column].to_numpy() if self.id_column else None
        return TabularRaw(
            features, labels, categorical, numeric, official, None, row_ids, self.id_column or "row"
        )

    def _feature_frame(self, frame: pd.DataFrame, categorical: list[str], numeric: list[str]) -> pd.DataFrame:
        """The feature columns as preprocessing reads them: categories as strings (`MISSING` where empty),
        numbers as float64 (checked, see `_check_numeric`)."""
        features = frame[categorical + numeric].copy()
        features = self._check_numeric(features, numeric)
        for column in categorical:
            features[column] = features[column].astype("string").fillna(MISSING).astype(str)
        return features

    def build_new(self, meta: DataMeta, preprocessing: dict[str, Any], labelled: bool) -> NewData:
        """The rows of the file at `path` encoded with a trained run's `TabularFeatures` (nothing refitted).

        Every feature column the run was trained on must be present; others are ignored. A category the
        train split never had becomes the unknown bucket and is counted per column in `NewData.unseen`.
        With `labelled`, the target column is required and read as in training.
        """
        features = TabularFeatures.from_dict(preprocessing)
        frame = self.read_frame()
        missing = [c for c in features.categorical + features.numeric if c not in frame.columns]
        if missing:
            raise AdlabError(
                f"data.source.path={self.path}: columns {missing[:10]} the model was trained on are missing; "
                f"expected every feature column of the training file ({len(missing)} missing)"
            )
        tensors: dict[str, torch.Tensor] = {}
        if labelled:
            if self.target not in frame.columns:
                raise AdlabError(
                    f"data.source.path={self.path}: target column '{self.target}' not found; evaluating "
                    "needs a labelled file (adlab-predict scores a file without it)"
                )
            labels = binary_target(frame[self.target], self.target, self.positive)
            tensors["target"] = torch.as_tensor(labels, dtype=torch.float32)
        table = self._feature_frame(frame, features.categorical, features.numeric)
        categorical, numeric = features.transform(table)
        unseen = {
            column: int((categorical[:, position] == UNKNOWN).sum())
            for position, column in enumerate(features.categorical)
        }
        tensors["categorical"] = torch.from_numpy(categorical)
        tensors["numeric"] = torch.from_numpy(numeric)
        has_ids = bool(self.id_column) and self.id_column in frame.columns
        return NewData(
            tensors,
            frame[self.id_column].to_numpy() if has_ids else np.arange(len(frame)),
            self.id_column if has_ids else "row",
            {column: count for column, count in unseen.items() if count},
        )

    def build(self, raw: TabularRaw, splits: dict[str, np.ndarray]) -> BuiltData:
        """Fit vocabularies, imputation and scaling on the training rows; return tensors for every split."""
        features = TabularFeatures.fit(
            raw.frame.iloc[splits["train"]], raw.categorical, raw.numeric, self.impute
        )
        tensors = {}
        for stage, rows in splits.items():
            categorical, numeric = features.transform(raw.frame.iloc[rows])
            tensors[stage] = {
                "categorical": torch.from_numpy(categorical),
                "numeric": torch.from_numpy(numeric),
                "target": torch.as_tensor(raw.labels[rows], dtype=torch.float32),
            }
        meta = TabularMeta(
            dataset=self.name,
            rows={stage: int(len(rows)) for stage, rows in splits.items()},
            categorical=list(raw.categorical),
            cardinalities=[len(features.vocabularies[c]) + 1 for c in raw.categorical],
            numeric=list(raw.numeric),
            positive_rate=float(raw.labels[splits["train"]].mean()),
        )
        return BuiltData(tensors, meta, features)
