"""The feature schema of an exported tabular scorer: validation and encoding of raw inputs.

Two paths share one schema: JSON records (one request at a time, plain Python, lookup tables built
once) and Arrow record batches (files and large batches, vectorised). Both produce the graph's inputs,
`categorical (n, n_cat) int64` vocabulary indices and `numeric (n, n_num) float32` unscaled values, with
the same rules as training (`adlab.data.features.TabularFeatures`): categories are text, a missing category is
the `<missing>` token, an unseen one is index 0; numerics must be numbers, and may be missing (null,
NaN, inf) only when the model was trained with an imputation, in which case they take the training
fill. The fill happens here rather than in the graph: a select over every value costs ONNX Runtime
more than the rest of the graph's preprocessing, and missing values are rare.

A model may read only some of its training columns (a selected model reads 12 of 85): inputs must carry
the columns it reads (`required`), may carry the training data's id column and target (echoed and
ignored), and the columns it does not read are filled with placeholders the graph never looks at.
Values the training split never had (a category not in the vocabulary, a number outside the train
range) are scored as in training and counted (`Drift`), so that callers can warn about them.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from adlab.data.features import MISSING, UNKNOWN
from adlab.errors import AdlabError

_NUMBER_TYPES = {int, float}
ROW_BLOCK = 4096  # rows transposed at a time when a table's columns become the graph's row-major input
# the largest magnitude a numeric value may have: beyond it a network's float32 arithmetic can overflow (to
# inf, then NaN); the OpenAPI schema says so, and a value beyond it is a 422, not a guess
MAX_MAGNITUDE = 1e30
# MAX_MAGNITUDE in float32 (a little above it): a float32 value strictly below was a number below the limit
_MAX_FLOAT32 = float(np.float32(MAX_MAGNITUDE))


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
        # packages of older versions do not say: their models read every column
        reads = {f["name"]: bool(f.get("reads", True)) for f in features}
        self.required = [name for name in self.names if reads[name]]
        self.unread = [name for name in self.names if not reads[name]]
        self.allow_missing = bool(preprocessing.get("allow_missing_numeric"))
        self.id_column = preprocessing.get("id_column")
        self.target = preprocessing.get("target")
        # besides the features a record may carry the row id (echoed) and the target (ignored, named)
        self.optional = [c for c in (self.id_column, self.target) if c and c not in self.names]
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
        numeric_features = [f for f in features if f["kind"] == "numeric"]
        self.fill = np.array([f["fill"] for f in numeric_features], dtype=np.float32)
        # the train range of each numeric column (unbounded where the package does not say)
        self.minimum = np.array(
            [-np.inf if f.get("min") is None else f["min"] for f in numeric_features], dtype=np.float32
        )
        self.maximum = np.array(
            [np.inf if f.get("max") is None else f["max"] for f in numeric_features], dtype=np.float32
        )
        # what an unread column holds: a known category (index 1) and the training fill, never looked at
        self.placeholder_categorical = np.array(
            [UNKNOWN if reads[name] else 1 for name in self.categorical], dtype=np.int64
        )
        self.placeholder_numeric = self.fill.copy()
        self._required_set = set(self.required)
        self._optional_set = set(self.optional)
        self._value_sets = {name: pa.array(v, type=pa.string()) for name, v in self.vocabularies.items()}
        self._lower_vocabularies = {
            name: {value.lower(): value for value in vocabulary}
            for name, vocabulary in self.vocabularies.items()
        }
        read_numeric = [name for name in self.numeric if reads[name]]
        self._numeric_positions = np.array([self.numeric.index(n) for n in read_numeric], dtype=np.int64)
        self._all_numeric_read = len(read_numeric) == len(self.numeric)
        # a C-level getter of the read numeric values in graph order (a tuple, whatever the count)
        if len(read_numeric) > 1:
            self._numeric_values: Callable[[dict[str, Any]], Any] = operator.itemgetter(*read_numeric)
        else:
            self._numeric_values = lambda record: tuple(record[name] for name in read_numeric)
        self._read_numeric = read_numeric
        self._read_numeric_set = set(read_numeric)
        self._categorical_items = [
            (position, name, self.lookups[name])
            for position, name in enumerate(self.categorical)
            if reads[name]
        ]
        self._missing_index = {name: lookup.get(MISSING, UNKNOWN) for name, lookup in self.lookups.items()}

    # ---------------------------------------------------------------- column names
    def check_columns(self, columns: Iterable[str], passthrough: Iterable[str] = ()) -> None:
        """Every column the model reads present; nothing else but `passthrough` columns (row id, kept
        columns), the training data's target and the training features the model does not read."""
        columns = list(columns)
        present = set(columns)
        for name in self.required:
            if name not in present:
                raise SchemaError(
                    f"column '{name}' is missing; the model reads {len(self.required)} columns", name
                )
        allowed = set(self.names) | set(passthrough) | self._optional_set
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

    def _check_extra_keys(self, record: dict[str, Any]) -> None:
        """Slow path of `encode_record`: keys beyond the read features must be the id or the target."""
        for key in record:
            if key in self._required_set or key in self._optional_set:
                continue
            if key in self.unread:
                raise SchemaError(
                    f"'{key}' is a training column this model does not read; send only the "
                    f"{len(self.required)} columns it reads (GET /metadata lists them)",
                    str(key),
                )
            raise SchemaError(f"'{key}' is not a feature of this model", str(key))
        identifier = record.get(self.id_column) if self.id_column else None
        if identifier is not None and type(identifier) not in (str, int, float):
            raise SchemaError(
                f"id column '{self.id_column}' must be text or a number, got {type(identifier).__name__}",
                self.id_column,
            )

    def _bad_numeric(self, record: dict[str, Any]) -> SchemaError | None:
        """Slow path of `encode_record`: name the first numeric feature that is not a usable number."""
        for name in self._read_numeric:
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
            for position, name, lookup in self._categorical_items:
                value = record[name]
                categorical[position] = (
                    lookup.get(value, UNKNOWN) if type(value) is str else self._category_index(name, value)
                )
            values = self._numeric_values(record)
        except KeyError as error:
            name = error.args[0]
            raise SchemaError(f"feature '{name}' is missing", name) from None
        if len(record) != len(self.required):
            self._check_extra_keys(record)
        if not _NUMBER_TYPES.issuperset(map(type, values)):
            error = self._bad_numeric(record)
            if error is not None:
                raise error
            values = [math.nan if v is None else v for v in values]
        try:
            if self._all_numeric_read:
                numeric[:] = values
            else:
                numeric[self._numeric_positions] = values
        except OverflowError:  # an integer too large for a float
            name = next(
                n for n, v in zip(self._read_numeric, values, strict=True) if type(v) is int and abs(v) > 1e38
            )
            raise SchemaError(f"feature '{name}' is out of range for a number", name) from None
        # a max and a min test a row at once for NaN and inf (they propagate) and for magnitudes the
        # model's float32 arithmetic cannot take; the rare row that fails goes through the exact test
        if not (numeric.max() < _MAX_FLOAT32 and numeric.min() > -_MAX_FLOAT32):
            self._missing_or_out_of_range(record, numeric)

    def _missing_or_out_of_range(self, record: dict[str, Any], numeric: np.ndarray) -> None:
        """Slow path of `encode_record`: fill missing values (null, NaN, inf: as training did, when the model
        imputes) and refuse numbers beyond `MAX_MAGNITUDE`."""
        for name in self._read_numeric:
            position = self.numeric.index(name)
            value = record[name]
            if value is None or (type(value) is float and not math.isfinite(value)):
                if not self.allow_missing:
                    raise SchemaError(
                        f"feature '{name}' is missing (null or non-finite); the model was trained without imputation",
                        name,
                    )
                numeric[position] = self.fill[position]
            elif not abs(value) <= MAX_MAGNITUDE:
                raise SchemaError(
                    f"feature '{name}'={value} is out of range; expected a number within ±{MAX_MAGNITUDE:g}",
                    name,
                )

    def encode_records(self, records: Any) -> tuple[np.ndarray, np.ndarray]:
        """Validate a list of JSON objects; `(n, n_cat) int64`, `(n, n_num) float32`."""
        if type(records) is not list:
            raise SchemaError(f"expected a JSON list of feature objects, got {type(records).__name__}")
        categorical = np.tile(self.placeholder_categorical, (len(records), 1))
        numeric = np.tile(self.placeholder_numeric, (len(records), 1))
        for row, record in enumerate(records):
            try:
                self.encode_record(record, categorical[row], numeric[row])
            except SchemaError as error:
                raise SchemaError(f"row {row}: {error}", error.column) from None
        return categorical, numeric

    # ---------------------------------------------------------------- values training never saw
    def record_warnings(
        self, record: dict[str, Any], categorical: np.ndarray, numeric: np.ndarray
    ) -> list[str]:
        """What in one encoded record training never saw (an empty list in the usual case).

        Args:
            record: the JSON object `encode_record` accepted.
            categorical: its `(n_cat,) int64` row; numeric: its `(n_num,) float32` row.
        """
        if not (
            (categorical == UNKNOWN).any()
            or np.less(numeric, self.minimum).any()
            or np.greater(numeric, self.maximum).any()
        ):
            return []
        warnings = []
        for position, name, _ in self._categorical_items:
            if categorical[position] == UNKNOWN:
                warnings.append(self._unseen_message(name, record.get(name)))
        for name in self._read_numeric:
            position = self.numeric.index(name)
            value = numeric[position]
            if value < self.minimum[position]:
                warnings.append(
                    f"{name}={record.get(name)} is below the training minimum {self.minimum[position]:g}"
                )
            elif value > self.maximum[position]:
                warnings.append(
                    f"{name}={record.get(name)} is above the training maximum {self.maximum[position]:g}"
                )
        return warnings

    def _unseen_message(self, name: str, value: Any) -> str:
        text = "null" if value is None else repr(value)
        same = self._lower_vocabularies[name].get(str(value).lower()) if value is not None else None
        if same is not None:
            return f"{name}={text} is not a training category; it differs from {same!r} only in case"
        return f"{name}={text} is not a training category (scored as unseen)"

    def batch_warnings(
        self, records: list[Any], categorical: np.ndarray, numeric: np.ndarray, limit: int = 20
    ) -> list[str]:
        """`record_warnings` of every row, as "row i: ..." lines, at most `limit` of them (then a count)."""
        flagged = (
            (categorical == UNKNOWN).any(axis=1)
            | np.less(numeric, self.minimum).any(axis=1)
            | np.greater(numeric, self.maximum).any(axis=1)
        )
        lines: list[str] = []
        rows = np.flatnonzero(flagged)
        for row in rows:
            for warning in self.record_warnings(records[row], categorical[row], numeric[row]):
                lines.append(f"row {row}: {warning}")
        if len(lines) > limit:
            lines = [*lines[:limit], f"... and {len(lines) - limit} more"]
        return lines

    # ---------------------------------------------------------------- Arrow batches
    def check_types(self, schema: pa.Schema) -> None:
        """Arrow column types of the read columns: numbers for numeric features, text (or numeric codes)
        for categories."""
        for name in self._read_numeric:
            kind = schema.field(name).type
            if not (_is_number(kind) or pa.types.is_null(kind)):
                raise SchemaError(f"column '{name}' has type {kind}; expected numbers", name)
        for _, name, _ in self._categorical_items:
            kind = schema.field(name).type
            if pa.types.is_dictionary(kind):
                kind = kind.value_type
            if _is_string(kind) or pa.types.is_null(kind):
                continue
            if _is_number(kind) and name in self.numeric_lookups:
                continue
            raise SchemaError(f"column '{name}' has type {kind}; expected text categories", name)

    def _encode_categorical(
        self, name: str, column: pa.ChunkedArray | pa.Array, drift: Drift | None = None
    ) -> np.ndarray:
        kind = column.type.value_type if pa.types.is_dictionary(column.type) else column.type
        if _is_number(kind):
            values = pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False)
            lookup = self.numeric_lookups[name]
            encoded = np.fromiter(
                (lookup.get(v, UNKNOWN) for v in values.tolist()), dtype=np.int64, count=len(values)
            )
            if drift is not None and (encoded == UNKNOWN).any():
                unseen = values[encoded == UNKNOWN]
                drift.add_unseen(name, int(len(unseen)), [str(v) for v in unseen[:3].tolist()], {})
            return encoded
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
        if unseen and drift is not None:
            values = pc.unique(pc.filter(text.fill_null(MISSING), pc.is_null(positions))).to_pylist()
            lower = self._lower_vocabularies[name]
            cased = {v: lower[v.lower()] for v in values[:1000] if v.lower() in lower}
            drift.add_unseen(name, int(unseen), values[:3], cased)
        return pc.fill_null(positions, -1).to_numpy(zero_copy_only=False).astype(np.int64) + 1

    def encode_table(
        self, table: pa.Table | pa.RecordBatch, drift: Drift | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Validate and encode an Arrow table; `(n, n_cat) int64`, `(n, n_num) float32`.

        The read columns' types are checked (`check_columns` with the table's other columns as
        passthrough is the caller's choice); missing numerics are refused unless the model imputes; the
        columns the model does not read get placeholders. With `drift`, values training never saw are
        counted into it.
        """
        self.check_types(table.schema)
        rows = table.num_rows
        categorical = np.empty((rows, len(self.categorical)), dtype=np.int64)
        categorical[:] = self.placeholder_categorical
        numeric = np.empty((rows, len(self.numeric)), dtype=np.float32)
        for position, name, _ in self._categorical_items:
            categorical[:, position] = self._encode_categorical(name, table.column(name), drift)
        # nulls become NaN in float64; integers and decimals are converted on the way
        columns = [
            pc.cast(table.column(name), pa.float64()).to_numpy(zero_copy_only=False)
            if name in self._read_numeric_set
            else np.full(rows, self.placeholder_numeric[position], dtype=np.float64)
            for position, name in enumerate(self.numeric)
        ]
        for name, column in zip(self.numeric, columns, strict=True):
            # checked in float64: beyond float32's range a value would become inf, then pass for missing
            with np.errstate(invalid="ignore"):
                huge = int((np.isfinite(column) & (np.abs(column) > MAX_MAGNITUDE)).sum())
            if huge and name in self._read_numeric_set:
                raise SchemaError(
                    f"column '{name}' has {huge} values beyond ±{MAX_MAGNITUDE:g}; expected "
                    "numbers a model's float32 arithmetic can take",
                    name,
                )
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
        if drift is not None:
            drift.add_ranges(self, numeric)
        return categorical, numeric


@dataclass
class Drift:
    """Counts of values training never saw, over the chunks of a file: unseen categories per column (with a
    few examples, and those that match a training category but for case) and numbers outside the train
    range per column."""

    unseen: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)
    cased: dict[str, dict[str, str]] = field(default_factory=dict)
    below: dict[str, int] = field(default_factory=dict)
    above: dict[str, int] = field(default_factory=dict)
    bounds: dict[str, tuple[float, float]] = field(default_factory=dict)

    def add_unseen(self, name: str, count: int, examples: list[str], cased: dict[str, str]) -> None:
        self.unseen[name] = self.unseen.get(name, 0) + count
        known = self.examples.setdefault(name, [])
        known += [e for e in examples if e not in known][: 3 - len(known)]
        self.cased.setdefault(name, {}).update(list(cased.items())[:3])

    def add_ranges(self, schema: TabularSchema, numeric: np.ndarray) -> None:
        below = (numeric < schema.minimum).sum(axis=0)
        above = (numeric > schema.maximum).sum(axis=0)
        for position in np.flatnonzero(below + above):
            name = schema.numeric[position]
            if name not in schema._read_numeric_set:
                continue
            self.below[name] = self.below.get(name, 0) + int(below[position])
            self.above[name] = self.above.get(name, 0) + int(above[position])
            self.bounds[name] = (float(schema.minimum[position]), float(schema.maximum[position]))

    def __bool__(self) -> bool:
        return bool(self.unseen or self.below or self.above)

    def summary(self) -> str:
        """One line: per column, what was never seen in training and how often."""
        parts = []
        for name, count in self.unseen.items():
            examples = ", ".join(repr(e) for e in self.examples.get(name, []))
            part = f"{name}: {count} values not among the training categories (e.g. {examples})"
            cased = self.cased.get(name)
            if cased:
                value, same = next(iter(cased.items()))
                part += f", some differ from one only in case ({value!r} vs {same!r})"
            parts.append(part)
        for name in sorted(set(self.below) | set(self.above)):
            low, high = self.bounds[name]
            counts = []
            if self.below.get(name):
                counts.append(f"{self.below[name]} below the training minimum {low:g}")
            if self.above.get(name):
                counts.append(f"{self.above[name]} above the training maximum {high:g}")
            parts.append(f"{name}: {' and '.join(counts)}")
        return "; ".join(parts)
