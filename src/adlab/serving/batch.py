"""`adlab-score model=... input=... output=...`: score a CSV or parquet file in bounded memory.

The file is read in chunks of `chunk_rows` rows (parquet row batches; CSV blocks sized from the first
rows), each chunk is checked against the model's feature schema, scored and appended to the output,
so memory holds one chunk whatever the size of the file. The output is written under a temporary
name and renamed at the end: a failed job leaves no half-written scores.

That is the tabular kind (propensity scorers). `adlab-score` takes a package by the kind of data its
`preprocessing.json` names: a kind registers its batch job by being a module `adlab.serving.batch_<kind>`
that defines `score_job(cfg: DictConfig, package: ModelPackage) -> None` (cfg: configs/score.yaml; it
writes `cfg.output` and prints what it did; a user's mistake raises `AdlabError`). The tabular job is
serving/batch_tabular.py; the helpers here (`TableOutput`, `file_kind`) are for every kind.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import hydra
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from omegaconf import DictConfig

from adlab.cli import check_overrides, report_user_errors
from adlab.errors import AdlabError, excerpt
from adlab.harness.configs import config_dir, register_resolvers
from adlab.serving.package import kind_module, load_package, model_path_overrides
from adlab.serving.schema import Drift, SchemaError, TabularSchema
from adlab.serving.scorer import TabularScorer

KIND_MODULE_PREFIX = "batch_"  # serving/batch_<kind>.py
SCORE_COLUMN = "score"
ROW_COLUMN = "row"  # written when the file has no id column: the row's position in the file (0-based)
_CSV_COLUMN = re.compile(r"In CSV column #(\d+)")


def file_kind(path: Path, what: str) -> str:
    """The file's format from its name (csv or parquet); `AdlabError` naming `what` otherwise."""
    suffixes = "".join(path.suffixes).lower()
    if suffixes.endswith((".parquet", ".pq")):
        return "parquet"
    if suffixes.endswith(".csv"):
        return "csv"
    raise AdlabError(f"{what}={path}: expected a .csv or .parquet file")


@dataclass
class ScoringPlan:
    """Which input columns are read, and what goes to the output besides the score.

    Attributes:
        id_column: the row id copied to the output (None: the row number).
        keep: further columns copied to the output.
        read: every column read from the file.
        ignored: columns present but not used, said in the summary: the training target (unless kept) and
            the training features the model does not read.
    """

    id_column: str | None
    keep: list[str]
    read: list[str]
    ignored: list[str] = field(default_factory=list)


def plan_columns(
    schema: TabularSchema, columns: list[str], id_column: str | None, keep: list[str], ignore: list[str]
) -> ScoringPlan:
    """Check the file's header against the model: the read features all present, nothing unaccounted for
    (the training data's id and target, and features the model does not read, are accounted for)."""
    if len(columns) == 1 and any(mark in columns[0] for mark in (";", "|", "\t")):
        mark = next(m for m in (";", "|", "\t") if m in columns[0])
        raise SchemaError(
            f"one column named {excerpt(columns[0], 40)!r}: the file looks {mark!r}-separated; expected commas "
            "between columns (or a parquet file)"
        )
    duplicated = sorted({name for name in columns if columns.count(name) > 1})
    if duplicated:
        raise SchemaError(
            f"duplicate column names {duplicated[:5]}; expected each column once", duplicated[0]
        )
    if id_column is None and schema.id_column in columns:
        id_column = schema.id_column  # the training data's row id, when the file carries it
    elif id_column is not None and id_column not in columns:
        raise SchemaError(f"id column '{id_column}' is missing", id_column)
    for name in keep:
        if name not in columns:
            raise SchemaError(f"column '{name}' (in keep) is missing", name)
    passthrough = [*([id_column] if id_column else []), *keep, *ignore]
    schema.check_columns(columns, passthrough)
    kept = [name for name in keep if name != id_column]
    read = [*([id_column] if id_column else []), *kept, *schema.required]
    unused = [
        name
        for name in columns
        if name not in read and name not in ignore and (name == schema.target or name in schema.unread)
    ]
    return ScoringPlan(id_column, kept, list(dict.fromkeys(read)), unused)


def describe_ignored(schema: TabularSchema, ignored: list[str]) -> str:
    """The ignored columns in words: "CARAVAN (the target) and 73 columns the model does not read"."""
    parts = [f"{name} (the target)" for name in ignored if name == schema.target]
    unread = [name for name in ignored if name != schema.target]
    if unread:
        shown = ", ".join(unread[:5]) + (" ..." if len(unread) > 5 else "")
        parts.append(f"{len(unread)} training columns the model does not read ({shown})")
    return " and ".join(parts)


def _csv_header(path: Path) -> tuple[list[str], int]:
    """Column names, as the CSV reader that scores the file parses them, and an estimate of bytes per row
    from the first lines."""
    with open(path, "rb") as stream:
        sample = stream.read(1 << 16)
    if not sample.strip():
        raise AdlabError(f"input={path}: the file is empty, expected a header and rows")
    try:  # pyarrow's own parse: Python's csv module splits some lines elsewhere (a form feed, a lone \r)
        reader = pa_csv.open_csv(path, read_options=pa_csv.ReadOptions(block_size=1 << 20))
        header = list(reader.schema.names)
        reader.close()
    except UnicodeDecodeError as error:
        raise AdlabError(
            f"input={path}: the header is not UTF-8 text (byte {error.object[error.start : error.start + 1]!r}); "
            "save the file as UTF-8"
        ) from None
    except pa.ArrowException as error:
        raise AdlabError(f"input={path}: could not parse as CSV ({excerpt(error)})") from None
    row_bytes = max(1, len(sample) // max(1, sample.count(b"\n")))
    return header, row_bytes


def _csv_batches(
    path: Path, schema: TabularSchema, plan: ScoringPlan, chunk_rows: int, row_bytes: int
) -> Iterator[pa.RecordBatch]:
    # typed on the way in, so that a bad value fails with its column instead of being guessed into text
    read = set(plan.read)
    types = {name: pa.string() for name in schema.categorical if name in read} | {
        name: pa.float64() for name in schema.numeric if name in read
    }
    header = _csv_header(path)[0]
    block = min(max(chunk_rows * row_bytes, 1 << 20), 1 << 28)
    try:
        reader = pa_csv.open_csv(
            path,
            read_options=pa_csv.ReadOptions(block_size=block),
            convert_options=pa_csv.ConvertOptions(
                column_types=types, include_columns=plan.read, strings_can_be_null=True
            ),
        )
        yield from reader
    except pa.ArrowException as error:
        match = _CSV_COLUMN.search(str(error))
        if match is None or int(match.group(1)) >= len(header):
            raise AdlabError(f"input={path}: could not parse as CSV ({excerpt(error)})") from None
        name = header[int(match.group(1))]
        detail = str(error).split(": ", 1)[-1]
        raise SchemaError(f"column '{name}' has a value of the wrong type ({detail})", name) from None


def _parquet_batches(file: pq.ParquetFile, plan: ScoringPlan, chunk_rows: int) -> Iterator[pa.RecordBatch]:
    yield from file.iter_batches(batch_size=chunk_rows, columns=plan.read)


class TableOutput:
    """Appends scored chunks to a CSV or parquet file written under a temporary name."""

    def __init__(self, path: Path):
        self.path = path
        self.kind = file_kind(path, "output")
        self.tmp = path.with_name(f".{path.name}.tmp")
        self.writer: pq.ParquetWriter | pa_csv.CSVWriter | None = None

    def write(self, table: pa.Table) -> None:
        if self.writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self.kind == "parquet":
                self.writer = pq.ParquetWriter(self.tmp, table.schema)
            else:
                self.writer = pa_csv.CSVWriter(self.tmp, table.schema)
        self.writer.write_table(table)

    def close(self, success: bool) -> None:
        if self.writer is not None:
            self.writer.close()
        if success:
            self.tmp.replace(self.path)
        else:
            self.tmp.unlink(missing_ok=True)


@dataclass
class ScoringReport:
    """What a scoring job says besides its row count: the columns it ignored, and values the training
    split never had (`Drift`: unseen categories, numbers outside the train range), counted per column."""

    ignored: list[str] = field(default_factory=list)
    drift: Drift = field(default_factory=Drift)


def score_file(
    scorer: TabularScorer,
    input_path: str | Path,
    output_path: str | Path,
    id_column: str | None = None,
    keep: list[str] | None = None,
    ignore: list[str] | None = None,
    chunk_rows: int = 65536,
    report: ScoringReport | None = None,
) -> int:
    """Score every row of `input_path` into `output_path` (id or row number, kept columns, `score`).

    Returns the number of rows scored; `report`, when given, receives the ignored columns and the counts
    of values training never saw. Raises `AdlabError` (naming the column) when the file does not fit the
    model's schema: a missing feature, an extra column, a value of the wrong type.
    """
    input_path, output_path = Path(input_path), Path(output_path)
    if chunk_rows < 1:
        raise AdlabError(f"chunk_rows={chunk_rows}: expected a positive number of rows")
    if not input_path.is_file():
        raise AdlabError(f"input={input_path}: file not found")
    if input_path.resolve() == output_path.resolve():
        raise AdlabError(f"output={output_path}: would overwrite the input")
    kind = file_kind(input_path, "input")
    schema = scorer.schema
    keep, ignore = list(keep or []), list(ignore or [])
    output = TableOutput(output_path)
    try:  # before reading anything: a folder that cannot be written is named up front
        output_path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise AdlabError(
            f"output={output_path}: cannot create {output_path.parent} ({error.strerror})"
        ) from None
    rows, success = 0, False
    report = report if report is not None else ScoringReport()
    try:
        try:
            if kind == "parquet":
                try:
                    parquet = pq.ParquetFile(input_path)
                except (pa.ArrowInvalid, OSError) as error:
                    raise AdlabError(f"could not read as parquet ({excerpt(error)})") from None
                plan = plan_columns(schema, parquet.schema_arrow.names, id_column, keep, ignore)
                schema.check_types(parquet.schema_arrow)
                batches = _parquet_batches(parquet, plan, chunk_rows)
            else:
                header, row_bytes = _csv_header(input_path)
                plan = plan_columns(schema, header, id_column, keep, ignore)
                batches = _csv_batches(input_path, schema, plan, chunk_rows, row_bytes)
            report.ignored = plan.ignored
            for batch in batches:
                scores = scorer.score_table(batch, report.drift)
                ids = (
                    batch.column(plan.id_column)
                    if plan.id_column
                    else pa.array(range(rows, rows + batch.num_rows), pa.int64())
                )
                columns = [ids, *(batch.column(name) for name in plan.keep), pa.array(scores, pa.float32())]
                names = [plan.id_column or ROW_COLUMN, *plan.keep, SCORE_COLUMN]
                output.write(pa.Table.from_arrays(columns, names=names))
                rows += batch.num_rows
        except SchemaError as error:
            raise SchemaError(f"input={input_path}: {error}", error.column) from None
        except AdlabError as error:
            raise AdlabError(f"input={input_path}: {error}") from None
        except OSError as error:  # a full disk or a vanished folder while writing; nothing is left behind
            raise AdlabError(
                f"input={input_path}, output={output_path}: scoring stopped after {rows} rows "
                f"({error.strerror or excerpt(error)}); nothing was written"
            ) from None
        if rows == 0:
            raise AdlabError(f"input={input_path}: the file has a header but no rows")
        success = True
    finally:
        output.close(success)
    return rows


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="score")
@report_user_errors
def _hydra_main(cfg: DictConfig) -> None:
    package = load_package(cfg.model_path)
    kind_module(package, KIND_MODULE_PREFIX, "adlab-score").score_job(cfg, package)


def main() -> None:
    """Console entry point (`adlab-score`)."""
    register_resolvers()
    sys.argv = [sys.argv[0], *model_path_overrides(sys.argv[1:])]
    check_overrides("score", sys.argv[1:])
    _hydra_main()


if __name__ == "__main__":
    main()
