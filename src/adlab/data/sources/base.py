"""What every source returns to the data module."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from torch import Tensor

from adlab.data.features import DataMeta
from adlab.errors import AdlabError, excerpt

# `data.source.separator` of the log sources (transactions, interactions); None sniffs it
SEPARATORS = {"comma": ",", "semicolon": ";", "tab": "\t", "whitespace": r"\s+"}


def read_log(path: str | Path, what: str, separator: str | None = "comma") -> pd.DataFrame:
    """A CSV/text file (columns as strings) or parquet file (typed columns) of a log source; `AdlabError`
    naming `what` (e.g. `data.source.path`) when it is missing, empty or unreadable."""
    path = Path(path)
    if not path.is_file():
        raise AdlabError(f"{what}={path}: file not found")
    try:
        suffixes = "".join(path.suffixes).lower()
        if ".parquet" in suffixes or suffixes.endswith(".pq"):  # the names adlab-score takes as parquet
            frame = pd.read_parquet(path)
        else:
            sep = SEPARATORS[separator] if separator else None
            frame = pd.read_csv(path, sep=sep, dtype=str, engine="c" if sep == "," else "python")
    except pd.errors.EmptyDataError:
        raise AdlabError(f"{what}={path}: the file is empty, expected a header and rows") from None
    except (ValueError, OSError, csv.Error, pd.errors.ParserError) as error:
        raise AdlabError(f"{what}={path}: could not read it as a table ({excerpt(error)})") from None
    if len(frame) == 0:
        raise AdlabError(f"{what}={path}: the file has a header but no rows")
    return frame


@dataclass
class BuiltData:
    """Tensors per split, plus what models and exporters need to know.

    Attributes:
        tensors: stage ("train"/"val"/"test") -> name -> tensor `(rows, ...)`.
        meta: the typed description models are built from (`TabularMeta`, ... : column names,
            cardinalities, classes ...).
        state: the preprocessing fitted on the training split (`TabularFeatures`, ...), or None when the
            source fits nothing; it has `to_dict()` (plain containers, stored in checkpoints).
    """

    tensors: dict[str, dict[str, Tensor]]
    meta: DataMeta
    state: Any = None


@dataclass
class NewData:
    """A new file's rows, built with a trained run's preprocessing (`adlab-eval` / `adlab-predict`).

    Attributes:
        tensors: name -> `(rows, ...)` tensor, the batch contract of the source kind; `target` only when
            the file was read as labelled.
        row_ids: `(rows,)` each row's identifier: the source's id column when the file has it, else the
            row's position in the file (0-based, header excluded) or, for images, the file's path.
        id_name: the name of that identifier ("row", the id column's name, "path").
        unseen: column -> rows whose value the train split never had (mapped to the unknown bucket).
        notes: what else happened to the rows, one short sentence each (dropped empty texts, cut texts).
    """

    tensors: dict[str, Tensor]
    row_ids: np.ndarray
    id_name: str = "row"
    unseen: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def rows(self) -> int:
        """Number of rows."""
        return len(self.row_ids)
