"""What every source returns to the data module."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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
