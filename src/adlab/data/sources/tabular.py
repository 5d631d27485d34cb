"""Tabular source: a CSV or parquet file with a binary target, categorical and numeric features."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from adlab.data.features import MISSING, TabularFeatures, TabularMeta
from adlab.data.sources.base import BuiltData
from adlab.errors import AdlabError

IMPUTE_CHOICES = (None, "median", "mean", "zero")
POSITIVE_WORDS = {"1", "yes", "y", "true", "t", "positive", "buyer", "buy"}


def read_table(path: str | Path, what: str = "data.source.path") -> pd.DataFrame:
    """Read a CSV or parquet file; raise `AdlabError` naming the file when it is missing, unreadable or empty."""
    path = Path(path)
    if not path.is_file():
        raise AdlabError(f"{what}={path}: file not found")
    suffixes = "".join(path.suffixes).lower()
    try:
        if ".parquet" in suffixes or suffixes.endswith(".pq"):
            frame = pd.read_parquet(path)
        else:
            frame = (
                pd.read_csv(path, sep=None, engine="python")
                if suffixes.endswith(".txt")
                else pd.read_csv(path)
            )
    except pd.errors.EmptyDataError:
        raise AdlabError(f"{what}={path}: the file is empty, expected a header and rows") from None
    except (UnicodeDecodeError, ValueError, OSError, pd.errors.ParserError) as error:
        kind = "parquet" if ".parquet" in suffixes else "CSV"
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise AdlabError(f"{what}={path}: could not parse as {kind} ({first})") from None
    if len(frame) == 0:
        raise AdlabError(f"{what}={path}: the file has a header but no rows")
    return frame


def binary_target(values: pd.Series, column: str, positive: Any = None) -> np.ndarray:
    """Map a two-valued column to 0/1; `positive` names the positive class when it is not obvious."""
    present = values.dropna()
    if len(present) < len(values):
        raise AdlabError(f"target column '{column}' has {len(values) - len(present)} missing values")
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

    def _feature_columns(self, frame: pd.DataFrame) -> tuple[list[str], list[str]]:
        reserved = {self.target, self.split_column, self.id_column, *self.drop}
        candidates = [c for c in frame.columns if c not in reserved]
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
                f"{self.path}: target column '{self.target}' not found; columns are {list(frame.columns)[:20]}"
            )
        if self.split_column and self.split_column not in frame.columns:
            raise AdlabError(f"{self.path}: split column '{self.split_column}' not found")
        labels = binary_target(frame[self.target], self.target, self.positive)
        categorical, numeric = self._feature_columns(frame)
        features = frame[categorical + numeric].copy()
        features = self._check_numeric(features, numeric)
        for column in categorical:
            features[column] = features[column].astype("string").fillna(MISSING).astype(str)
        official = frame[self.split_column].astype(str).to_numpy() if self.split_column else None
        row_ids = frame[self.id_column].to_numpy() if self.id_column else None
        return TabularRaw(features, labels, categorical, numeric, official, None, row_ids)

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
