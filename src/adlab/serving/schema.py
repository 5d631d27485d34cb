"""The feature schema of an exported tabular scorer: validation and encoding of raw inputs.

Two paths share one schema: JSON records (one request at a time, plain Python, lookup tables built
once) and Arrow record batches (files and large batches, vectorised). Both produce the graph's inputs,
`categorical (n, n_cat) int64` vocabulary indices and `numeric (n, n_num) float32` unscaled values, with
the same rules as training (`adlab.data.features.TabularFeatures`): categories are text, a missing category is
the `<missing>` token, an unseen one is index 0; numerics must be numbers, and may be missing (null,
NaN, inf) only when the model was trained with an imputation, in which case they take the training
fill. The fill happens here rather than in the graph: a select over every value costs ONNX Runtime
more than the rest of the graph's preprocessing, and missing values are rare.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from adlab.data.features import MISSING, UNKNOWN
from adlab.errors import AdlabError

_NUMBER_TYPES = {int, float}
ROW_BLOCK = 4096  # rows transposed at a time when a table's columns become the graph's row-major input


class SchemaError(AdlabError):
    """An input that does not fit the feature schema; `column` names the offending feature (or None)."""

    def __init__(self, message: str, column: str | None = None):
        super().__init__(message)
        self.column = column


def _as_number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _all_numbers(values: pa.ChunkedArray | pa.Array, limit: int = 1000) -> bool:
    """Whether every distinct non-null value of a text column parses as a number (and there is one).

    Only called on values missing from a vocabulary, so the distinct values are usually few; past
    `limit` of them a sample decides.
    """
    distinct = pc.unique(pc.drop_null(values)).to_pylist()[:limit]
    return bool(distinct) and all(_as_number(value) is not None for value in distinct)


def _is_string(kind: pa.DataType) -> bool:
    return pa.types.is_string(kind) or pa.types.is_large_string(kind) or kind == pa.string_view()


def _is_number(kind: pa.DataType) -> bool:
    return pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind)


class TabularSchema:
    """Feature names, kinds and lookup tables of a tabular scorer, from its `preprocessing.json`.

    Args:
        preprocessing: the package's preprocessing description (`kind: tabular`).
    """

    def __init__(self, preprocessing: dict[str, Any]):
        if preprocessing.get("kind") != "tabular":
            raise AdlabError(
                f"this package scores {preprocessing.get('kind')!r} inputs; batch scoring and serving take tabular scorers"
            )
        features = preprocessing["features"]
        self.categorical = [f["name"] for f in features if f["kind"] == "categorical"]
        self.numeric = [f["name"] for f in features if f["kind"] == "numeric"]
        self.names = self.categorical + self.numeric
        self.allow_missing = bool(preprocessing.get("allow_missing_numeric"))
        self.id_column = preprocessing.get("id_column")
        self.vocabularies = {
            f["name"]: [str(v) for v in f["vocabulary"]] for f in features if f["kind"] == "categorical"
        }
        self.lookups: dict[str, dict[Any, int]] = {}
        self.numeric_lookups: dict[str, dict[float, int]] = {}
        for name, vocabulary in self.vocabularies.items():
            self.lookups[name] = {value: position + 1 for position, value in enumerate(vocabulary)}
            # a column of numeric codes was read as numbers in training and turned into text ("5" or
            # "5.0"); numbers sent here map to the same entries
            numbers = [_as_number(value) for value in vocabulary]
            if vocabulary and all(number is not None for number in numbers):
                self.numeric_lookups[name] = {n: p + 1 for p, n in enumerate(numbers)}
        # missing numerics take the training fill (median/mean/zero of train), as in training
        self.fill = np.array([f["fill"] for f in features if f["kind"] == "numeric"], dtype=np.float32)
        self._name_set = set(self.names)
        self._value_sets = {name: pa.array(v, type=pa.string()) for name, v in self.vocabularies.items()}
        # a C-level getter of the numeric values in graph order (a tuple, whatever the count)
        if len(self.numeric) > 1:
            self._numeric_values: Callable[[dict[str, Any]], Any] = operator.itemgetter(*self.numeric)
        else:
            self._numeric_values = lambda record: tuple(record[name] for name in self.numeric)
        self._categorical_items = [(name, self.lookups[name]) for name in self.categorical]
        self._missing_index = {name: lookup.get(MISSING, UNKNOWN) for name, lookup in self.lookups.items()}

    # ---------------------------------------------------------------- column names
    def check_columns(self, columns: Iterable[str], passthrough: Iterable[str] = ()) -> None:
        """Every feature present, nothing else but `passthrough` columns (row id, kept columns)."""
        columns = list(columns)
        present = set(columns)
        for name in self.names:
            if name not in present:
                raise SchemaError(
                    f"column '{name}' is missing; the model needs {len(self.names)} features", name
                )
        allowed = set(self.names) | set(passthrough)
        for name in columns:
            if name not in allowed:
                raise SchemaError(f"column '{name}' is not a feature of this model (extra column)", name)

    # ---------------------------------------------------------------- one JSON record
    def _category_index(self, name: str, value: Any) -> int:
        """Slow path of `encode_record` for a categorical value that is not a string."""
        if value is None:
            return self._missing_index[name]
        if type(value) in _NUMBER_TYPES and name in self.numeric_lookups:
            return self.numeric_lookups[name].get(float(value), UNKNOWN)
        expected = "text" if name not in self.numeric_lookups else "text or a number"
        raise SchemaError(
            f"feature '{name}' must be {expected} (a category), got {type(value).__name__}", name
        )

    def _bad_numeric(self, record: dict[str, Any]) -> SchemaError | None:
        """Slow path of `encode_record`: name the first numeric feature that is not a usable number."""
        for name in self.numeric:
            value = record[name]
            if value is None or (type(value) is float and not math.isfinite(value)):
                if not self.allow_missing:
                    return SchemaError(
                        f"feature '{name}' is missing (null or non-finite); the model was trained without imputation",
                        name,
                    )
            elif type(value) not in _NUMBER_TYPES:
                return SchemaError(f"feature '{name}' must be a number, got {type(value).__name__}", name)
        return None

    def encode_record(self, record: Any, categorical: np.ndarray, numeric: np.ndarray) -> None:
        """Validate one JSON object of feature values and write it into preallocated rows.

        Args:
            record: `{feature name: value}` with every feature and nothing else.
            categorical: `(n_cat,) int64` row to fill with vocabulary indices.
            numeric: `(n_num,) float32` row to fill with raw values (missing ones take the training fill).
        """
        if type(record) is not dict:
            raise SchemaError(f"expected a JSON object of feature values, got {type(record).__name__}")
        try:
            for position, (name, lookup) in enumerate(self._categorical_items):
                value = record[name]
                categorical[position] = (
                    lookup.get(value, UNKNOWN) if type(value) is str else self._category_index(name, value)
                )
            values = self._numeric_values(record)
        except KeyError as error:
            name = error.args[0]
            raise SchemaError(f"feature '{name}' is missing", name) from None
        if len(record) != len(self.names):
            extra = next(key for key in record if key not in self._name_set)
            raise SchemaError(f"'{extra}' is not a feature of this model", str(extra))
        if not _NUMBER_TYPES.issuperset(map(type, values)):
            error = self._bad_numeric(record)
            if error is not None:
                raise error
            values = [math.nan if v is None else v for v in values]
        try:
            numeric[:] = values
        except OverflowError:  # an integer too large for a float
            name = next(
                n for n, v in zip(self.numeric, values, strict=True) if type(v) is int and abs(v) > 1e38
            )
            raise SchemaError(f"feature '{name}' is out of range for a number", name) from None
        # one sum is the cheapest finiteness test of a row (NaN and inf propagate); a sum that merely
        # overflows only sends the row through the exact test
        if not math.isfinite(numeric.sum()):
            finite = np.isfinite(numeric)
            if finite.all():
                return
            if not self.allow_missing:
                name = self.numeric[int(np.argmin(finite))]
                raise self._bad_numeric(record) or SchemaError(
                    f"feature '{name}' is out of range for float32", name
                )
            np.copyto(numeric, self.fill, where=~finite)

    def encode_records(self, records: Any) -> tuple[np.ndarray, np.ndarray]:
        """Validate a list of JSON objects; `(n, n_cat) int64`, `(n, n_num) float32`."""
        if type(records) is not list:
            raise SchemaError(f"expected a JSON list of feature objects, got {type(records).__name__}")
        categorical = np.zeros((len(records), len(self.categorical)), dtype=np.int64)
        numeric = np.zeros((len(records), len(self.numeric)), dtype=np.float32)
        for row, record in enumerate(records):
            try:
                self.encode_record(record, categorical[row], numeric[row])
            except SchemaError as error:
                raise SchemaError(f"row {row}: {error}", error.column) from None
        return categorical, numeric

    # ---------------------------------------------------------------- Arrow batches
    def check_types(self, schema: pa.Schema) -> None:
        """Arrow column types: numbers for numeric features, text (or numeric codes) for categories."""
        for name in self.numeric:
            kind = schema.field(name).type
            if not (_is_number(kind) or pa.types.is_null(kind)):
                raise SchemaError(f"column '{name}' has type {kind}; expected numbers", name)
        for name in self.categorical:
            kind = schema.field(name).type
            if pa.types.is_dictionary(kind):
                kind = kind.value_type
            if _is_string(kind) or pa.types.is_null(kind):
                continue
            if _is_number(kind) and name in self.numeric_lookups:
                continue
            raise SchemaError(f"column '{name}' has type {kind}; expected text categories", name)

    def _encode_categorical(self, name: str, column: pa.ChunkedArray | pa.Array) -> np.ndarray:
        kind = column.type.value_type if pa.types.is_dictionary(column.type) else column.type
        if _is_number(kind):
            values = pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False)
            lookup = self.numeric_lookups[name]
            return np.fromiter(
                (lookup.get(v, UNKNOWN) for v in values.tolist()), dtype=np.int64, count=len(values)
            )
        text = pc.cast(column, pa.string())
        positions = pc.index_in(text.fill_null(MISSING), value_set=self._value_sets[name])
        unseen = positions.null_count
        if unseen and unseen == len(text) - text.null_count and name not in self.numeric_lookups:
            # text files carry no types: a column of numbers where training saw words is the wrong column
            if _all_numbers(text):
                example = self.vocabularies[name][0] if self.vocabularies[name] else "a word"
                raise SchemaError(
                    f"column '{name}' holds numbers; expected text categories such as {example!r}", name
                )
        return pc.fill_null(positions, -1).to_numpy(zero_copy_only=False).astype(np.int64) + 1

    def encode_table(self, table: pa.Table | pa.RecordBatch) -> tuple[np.ndarray, np.ndarray]:
        """Validate and encode an Arrow table; `(n, n_cat) int64`, `(n, n_num) float32`.

        Column names and types are checked (`check_columns` with the table's other columns as
        passthrough is the caller's choice); missing numerics are refused unless the model imputes.
        """
        self.check_types(table.schema)
        rows = table.num_rows
        categorical = np.empty((rows, len(self.categorical)), dtype=np.int64)
        numeric = np.empty((rows, len(self.numeric)), dtype=np.float32)
        for position, name in enumerate(self.categorical):
            categorical[:, position] = self._encode_categorical(name, table.column(name))
        # nulls become NaN in float64; integers and decimals are converted on the way
        columns = [
            pc.cast(table.column(name), pa.float64()).to_numpy(zero_copy_only=False) for name in self.numeric
        ]
        for start in range(0, rows, ROW_BLOCK):
            # column -> row-major transposition in blocks that stay in cache (2-3x faster than whole columns)
            block = slice(start, start + ROW_BLOCK)
            numeric[block] = np.stack([column[block] for column in columns], axis=1) if columns else 0
        finite = np.isfinite(numeric)
        if not finite.all():
            if not self.allow_missing:
                bad = np.flatnonzero(~finite.all(axis=0))[0]
                name = self.numeric[bad]
                count = int((~finite[:, bad]).sum())
                raise SchemaError(
                    f"column '{name}' has {count} missing or non-finite values; the model was trained without imputation",
                    name,
                )
            np.copyto(numeric, self.fill, where=~finite)
        return categorical, numeric
