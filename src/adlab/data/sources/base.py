"""What every source returns to the data module."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from torch import Tensor

from adlab.data.features import DataMeta


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
