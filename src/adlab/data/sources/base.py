"""What every source returns to the data module."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import Tensor


@dataclass
class BuiltData:
    """Tensors per split, plus what models and exporters need to know.

    Attributes:
        tensors: stage ("train"/"val"/"test") -> name -> tensor `(rows, ...)`.
        meta: plain-data description used to build models (feature names, cardinalities, classes ...).
        state: JSON-able preprocessing fitted on the training split (vocabularies, scaling ...).
    """

    tensors: dict[str, dict[str, Tensor]]
    meta: dict[str, Any]
    state: dict[str, Any] = field(default_factory=dict)
