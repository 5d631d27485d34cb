"""`TabularScorer`: an exported propensity scorer behind one object, for files, batches and requests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from adlab.serving.backends import load_backend
from adlab.serving.package import GRAPH_MAX_ROWS, ModelPackage, load_package
from adlab.serving.schema import Drift, SchemaError, TabularSchema


class TabularScorer:
    """Raw feature values in, purchase probabilities out, through the package's graph runtime.

    Args:
        package: an exported tabular package (`adlab-export`).
        threads: graph runtime intra-op threads (1 for a latency-bound service).
        allow_torchscript: accept a TorchScript package (its file holds code; see `load_backend`).

    The single-request path (`score_record`) writes into one preallocated row pair that the runtime
    reads in place, so one scorer serves one thread at a time (the service runs it on its event loop).
    """

    def __init__(self, package: ModelPackage, threads: int = 1, allow_torchscript: bool = False):
        self.package = package
        self.schema = TabularSchema(package.preprocessing)
        self.backend = load_backend(package, threads, allow_torchscript)
        # columns the model does not read keep their placeholders: requests never write them
        self._one_categorical = self.schema.placeholder_categorical[None, :].copy()
        self._one_numeric = self.schema.placeholder_numeric[None, :].copy()
        self.backend.bind_one(self._one_categorical, self._one_numeric)
        # rows per graph call: a large ensemble's intermediate tensors grow with the batch (older
        # packages do not say; they were plain networks)
        self.graph_rows = int(package.preprocessing.get("graph_batch_rows") or GRAPH_MAX_ROWS)

    @property
    def model_version(self) -> str:
        return self.package.model_version

    def score_record(self, record: Any) -> float:
        """One JSON object `{feature: value}` -> probability; `SchemaError` naming the feature when invalid."""
        self.schema.encode_record(record, self._one_categorical[0], self._one_numeric[0])
        probability = self.backend.score_bound()
        if probability != probability:  # NaN: values that overflow float32 arithmetic inside the graph
            raise SchemaError("feature values out of range: the model's arithmetic overflows")
        return probability

    def last_record_warnings(self, record: Any) -> list[str]:
        """What training never saw in the record `score_record` just scored (usually nothing)."""
        return self.schema.record_warnings(record, self._one_categorical[0], self._one_numeric[0])

    def score_records(self, records: Any) -> np.ndarray:
        """A list of JSON objects -> probabilities `(n,) float32`."""
        return self.score_records_with_warnings(records, warn=False)[0]

    def score_records_with_warnings(self, records: Any, warn: bool = True) -> tuple[np.ndarray, list[str]]:
        """A list of JSON objects -> probabilities `(n,) float32` and "row i: ..." lines about values
        training never saw (see `TabularSchema.batch_warnings`)."""
        if type(records) is list and len(records) == 0:
            return np.zeros(0, dtype=np.float32), []
        categorical, numeric = self.schema.encode_records(records)
        warnings = self.schema.batch_warnings(records, categorical, numeric) if warn else []
        return self._score(categorical, numeric), warnings

    def score_table(self, table: pa.Table | pa.RecordBatch, drift: Drift | None = None) -> np.ndarray:
        """An Arrow table or record batch holding (at least) the read features -> probabilities `(n,)
        float32`; with `drift`, values training never saw are counted into it."""
        if table.num_rows == 0:
            return np.zeros(0, dtype=np.float32)
        return self._score(*self.schema.encode_table(table, drift))

    def _score(self, categorical: np.ndarray, numeric: np.ndarray) -> np.ndarray:
        """Encoded rows -> probabilities, in graph calls of at most `graph_rows` rows."""
        rows, step = len(numeric), self.graph_rows
        if rows <= step:
            return self.backend.score(categorical, numeric)
        return np.concatenate(
            [
                self.backend.score(categorical[i : i + step], numeric[i : i + step])
                for i in range(0, rows, step)
            ]
        )


def load_scorer(
    path: str | Path, threads: int = 1, what: str = "model", allow_torchscript: bool = False
) -> TabularScorer:
    """Open a package directory (or its graph file) as a scorer; `AdlabError` naming `what` otherwise.
    A TorchScript package needs `allow_torchscript=True` (loading it runs code from the file)."""
    return TabularScorer(load_package(path, what), threads, allow_torchscript)
