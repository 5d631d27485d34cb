"""Property-based tests of the readers and the serving schema: any input loads or raises `AdlabError`, never
another exception, a hang, or a silent change of meaning (rows, columns and labels are what the file says).

Kept fast: a few dozen examples each, a deadline per example. `scripts/fuzz_readers.py` runs the same readers
coverage-guided (atheris) for minutes; what it found is kept below as regression cases.
"""

from __future__ import annotations

import csv
import gzip
import io
import math
import os
import string
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from adlab.data.sources.images import ImageSource, read_idx
from adlab.data.sources.tabular import TabularSource, read_table
from adlab.data.sources.text import TextSource
from adlab.errors import AdlabError
from adlab.serving.schema import SchemaError, TabularSchema

# ADLAB_FUZZ_EXAMPLES=2000 explores further (random, not the fixed examples of the suite)
EXAMPLES = int(os.environ.get("ADLAB_FUZZ_EXAMPLES", "40"))
FAST = settings(
    max_examples=EXAMPLES,
    deadline=10_000,  # a hang, not a busy machine (an example takes ~0.1 s alone, seconds on 2 shared cores)
    database=None,
    derandomize="ADLAB_FUZZ_EXAMPLES" not in os.environ,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

NAMES = st.text(alphabet=string.ascii_letters + string.digits + "_ .;|-\"'é", min_size=0, max_size=8)
CELLS = st.one_of(
    st.integers(-(10**6), 10**6).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["", "NA", "nan", "inf", "-inf", "yes", "no", "True", "1e309", "0x1F", "\u00a0", "1,5"]),
    st.text(alphabet=string.printable + "éß€\u2028", max_size=6),
)


def _csv_text(header: list[str], rows: list[list[str]], separator: str = ",") -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=separator, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


@st.composite
def tables(draw):
    """A CSV text (header, rows that may be ragged), the header, and the rows."""
    width = draw(st.integers(1, 6))
    header = draw(st.lists(NAMES, min_size=width, max_size=width))
    rows = draw(st.lists(st.lists(CELLS, min_size=0, max_size=width + 1), min_size=0, max_size=12))
    separator = draw(st.sampled_from([",", ",", ";", "\t"]))
    return _csv_text(header, rows, separator), header, rows


def _load(path: Path, target: str, **options):
    try:
        return TabularSource(str(path), target=target, **options).load()
    except AdlabError:
        return None


@FAST
@given(table=tables(), pick=st.integers(0, 5))
def test_any_csv_loads_or_is_refused_with_one_line(tmp_path_factory, table, pick):
    text, header, rows = table
    path = tmp_path_factory.mktemp("csv") / "table.csv"
    path.write_text(text, encoding="utf-8")
    target = header[pick % len(header)]
    raw = _load(path, target)
    if raw is None:
        return
    # what loaded is what the file says: no renamed duplicates, no invented or lost rows
    parsed = list(csv.reader(io.StringIO(text)))
    assert len(set(header)) == len(header)
    assert all(len(row) == len(parsed[0]) for row in parsed[1:] if row)
    assert len(raw.labels) == sum(1 for row in parsed[1:] if row)
    assert set(raw.categorical) | set(raw.numeric) <= set(header) - {target}


@FAST
@given(
    frame=st.integers(2, 30).flatmap(
        lambda n: st.fixed_dictionaries(
            {
                "target": st.lists(st.sampled_from([0, 1, None, 2]), min_size=n, max_size=n),
                "amount": st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=n, max_size=n),
                "region": st.lists(st.one_of(st.none(), st.text(max_size=3)), min_size=n, max_size=n),
            }
        )
    ),
    impute=st.sampled_from([None, "median", "zero"]),
)
def test_any_parquet_loads_builds_or_is_refused(tmp_path_factory, frame, impute):
    path = tmp_path_factory.mktemp("parquet") / "table.parquet"
    pd.DataFrame(frame).to_parquet(path, index=False)
    raw = _load(path, "target", impute=impute)
    if raw is None:
        return
    assert set(np.unique(raw.labels)) == {0, 1}
    amounts = np.asarray(frame["amount"], dtype=float)
    assert impute is not None or np.isfinite(amounts).all()  # without imputation NaN/inf are refused
    rows = np.arange(len(raw.labels))
    built = TabularSource(str(path), target="target", impute=impute).build(
        raw, {"train": rows, "val": rows, "test": rows}
    )
    assert np.isfinite(built.tensors["train"]["numeric"].numpy()).all()


@FAST
@given(data=st.binary(max_size=400), suffix=st.sampled_from([".csv", ".parquet", ".csv.gz", ".txt", ".tsv"]))
def test_random_bytes_as_a_table_are_refused_with_one_line(tmp_path_factory, data, suffix):
    path = tmp_path_factory.mktemp("bytes") / f"t{suffix}"
    path.write_bytes(data)
    try:
        frame = read_table(path)
    except AdlabError as error:
        assert "\n" not in str(error)
        return
    assert len(frame) > 0 and len(set(frame.columns)) == len(frame.columns)


@FAST
@given(data=st.binary(max_size=300), gz=st.booleans())
def test_random_idx_files_are_read_or_refused(tmp_path_factory, data, gz):
    path = tmp_path_factory.mktemp("idx") / ("x-idx3-ubyte.gz" if gz else "x-idx3-ubyte")
    path.write_bytes(gzip.compress(data) if gz else data)
    try:
        array = read_idx(path)
    except AdlabError as error:
        assert "\n" not in str(error)
        return
    assert array.size * array.dtype.itemsize == len(data) - 4 - 4 * data[3] and array.size > 0


@st.composite
def image_files(draw):
    """Bytes of a real image (several formats and modes, odd sizes) or of a damaged / fake one."""
    kind = draw(st.sampled_from(["png", "jpeg", "gif", "bmp", "tiff", "truncated", "bytes", "empty"]))
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    if kind == "empty":
        return b""
    mode = draw(st.sampled_from(["L", "RGB", "RGBA", "P", "1", "I;16", "I", "F", "CMYK", "LA"]))
    width, height = draw(st.integers(1, 24)), draw(st.integers(1, 24))
    if kind == "jpeg" and mode not in ("L", "RGB", "CMYK"):
        mode = "RGB"
    if kind == "gif":
        mode = "P"
    if kind == "bmp" and mode not in ("1", "L", "P", "RGB"):
        mode = "RGB"
    image = Image.new(mode, (width, height))
    buffer = io.BytesIO()
    try:
        image.save(buffer, format="PNG" if kind == "truncated" else kind.upper())
    except (OSError, KeyError, ValueError):  # a mode this format cannot hold: the same image in RGB
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, format="PNG")
    data = buffer.getvalue()
    return data[: len(data) // 2] if kind == "truncated" else data


@FAST
@given(
    files=st.lists(st.tuples(st.integers(0, 2), image_files()), min_size=1, max_size=6), skip=st.booleans()
)
def test_any_image_folder_loads_or_is_refused(tmp_path_factory, files, skip):
    root = tmp_path_factory.mktemp("images")
    for index, (label, data) in enumerate(files):
        folder = root / f"class{label}"
        folder.mkdir(exist_ok=True)
        (folder / f"{index}.png").write_bytes(data)
    source = ImageSource(str(root), image_size=8, on_error="skip" if skip else "raise", workers=1)
    try:
        raw = source.load()
    except AdlabError as error:
        assert "\n" not in str(error)
        return
    assert raw.images.shape[1:] in ((1, 8, 8), (3, 8, 8))
    assert len(raw.images) == len(raw.labels) == len(files) - len(raw.skipped)
    assert len(np.unique(raw.labels)) >= 2


@FAST
@given(
    texts=st.lists(st.one_of(st.none(), st.text(max_size=40)), min_size=1, max_size=20),
    conditions=st.lists(
        st.one_of(st.none(), st.integers(-3, 3), st.text(max_size=3)), min_size=20, max_size=20
    ),
    tokenizer=st.sampled_from(["char", "bpe"]),
)
def test_any_text_file_loads_builds_or_is_refused(tmp_path_factory, texts, conditions, tokenizer):
    path = tmp_path_factory.mktemp("text") / "titles.csv"
    pd.DataFrame({"Title": texts, "Department": conditions[: len(texts)]}).to_csv(path, index=False)
    source = TextSource(
        str(path), text="Title", conditions=["Department"], tokenizer=tokenizer, vocab_size=60
    )
    try:
        raw = source.load()
    except AdlabError:
        return
    kept = [" ".join(str(t).split()) for t in texts if t is not None and " ".join(str(t).split())]
    assert list(raw.texts) == kept  # nothing invented, nothing dropped but empty texts
    rows = np.arange(len(raw.texts))
    built = source.build(raw, {"train": rows, "val": rows, "test": rows})
    assert built.tensors["test"]["tokens"].shape[0] == len(raw.texts)


# ------------------------------------------------------------------------------------- purchase logs
CUTOFF, HOLDOUT_END = pd.Timestamp("2020-01-31"), pd.Timestamp("2020-02-20")
DAYS = st.integers(0, 59).map(lambda d: pd.Timestamp("2020-01-01") + pd.Timedelta(days=d))
PURCHASE = st.tuples(st.sampled_from(["A", "b", "007", "7", " c ", "é"]), DAYS, st.integers(-5000, 200000))
# the anchors keep the window valid: the first day, a holdout purchase, the last day
ANCHORS = [("Z", pd.Timestamp(day), 100) for day in ("2020-01-01", "2020-02-10", "2020-02-29")]


def _date_text(day: pd.Timestamp, style: int, dayfirst: bool) -> str:
    """A day as a log might write it; day-first styles only when the source reads day first."""
    styles = ["%Y-%m-%d", "%Y-%m-%dT10:30:00", "%Y/%m/%d"] + (["%d/%m/%Y", "%d.%m.%Y"] if dayfirst else [])
    return day.strftime(styles[style % len(styles)])


def _amount_text(cents: int, style: int) -> str:
    """An amount as a log might write it: plain, with a currency and thousands separators, refunds in
    parentheses or with a minus sign."""
    value = abs(cents) / 100
    text = [f"{value:.2f}", f"${value:,.2f}", f"{value:.2f} EUR", f"{value:g}"][style % 4]
    if cents >= 0:
        return text
    return f"({text})" if style % 2 else f"-{text}"


@FAST
@given(
    rows=st.lists(st.tuples(PURCHASE, st.integers(0, 9), st.integers(0, 9)), max_size=25),
    garbage=st.lists(st.tuples(st.integers(0, 30), st.integers(0, 2), CELLS), max_size=2),
    dayfirst=st.booleans(),
    refunds=st.sampled_from(["net", "drop", "error"]),
    sniff=st.booleans(),
)
def test_any_purchase_log_loads_as_written_or_is_refused(
    tmp_path_factory, rows, garbage, dayfirst, refunds, sniff
):
    """Whatever way dates and amounts are written, a loaded log means what the file says: the customers
    who bought by the cutoff, their spend by then, their holdout spend; a damaged cell is refused."""
    from adlab.data.sources.transactions import TransactionsSource

    purchases = [(c, d, a) for (c, d, a), _, _ in rows] + ANCHORS
    cells = [[c, _date_text(d, ds, dayfirst), _amount_text(a, s)] for (c, d, a), ds, s in rows]
    cells += [[c, d.strftime("%Y-%m-%d"), _amount_text(a, 0)] for c, d, a in ANCHORS]
    for row, column, cell in garbage:
        cells[row % len(cells)][column] = cell
    path = tmp_path_factory.mktemp("log") / "log.csv"
    path.write_text(_csv_text(["customer_id", "date", "amount"], cells), encoding="utf-8")
    source = TransactionsSource(
        str(path), "customer_id", "date", "amount", cutoff="2020-01-31", holdout_end="2020-02-20",
        dayfirst=dayfirst, refunds=refunds, separator=None if sniff else "comma",
    )  # fmt: skip
    try:
        raw = source.load()
    except AdlabError as error:
        assert "\n" not in str(error)
        assert garbage or (refunds == "error" and any(a < 0 for _, _, a in purchases)), str(error)
        return
    if garbage:
        return  # a garbage cell may be a valid value; what it means is not known here
    assert not (refunds == "error" and any(a < 0 for _, _, a in purchases))
    log = pd.DataFrame(purchases, columns=["customer", "date", "amount"]).assign(
        customer=lambda f: f["customer"].str.strip(), amount=lambda f: f["amount"] / 100
    )
    if refunds == "drop":
        log = log[log["amount"] >= 0]
    before = log[log["date"] <= CUTOFF]
    spend = before[before["amount"] >= 0].groupby("customer")["amount"].sum()
    assert list(raw.customers) == sorted(spend.index)
    total = raw.features[:, raw.feature_names.index("total_spend")]
    assert np.allclose(total, spend.to_numpy())
    holdout = log[(log["date"] > CUTOFF) & (log["date"] <= HOLDOUT_END)].groupby("customer")["amount"].sum()
    assert np.allclose(raw.target, holdout.reindex(spend.index, fill_value=0).clip(lower=0).to_numpy())


# ------------------------------------------------------------------------------------- interaction logs
EVENT = st.tuples(
    st.sampled_from(["1", "2", "10", "u"]), st.sampled_from(["7", "8", "9", "x", "07", "é", "12"])
)
# a user with four interactions, so that leave-one-out has a train example
FIRST_USER = [(("a", item), hour, 0) for item, hour in (("7", 1), ("8", 2), ("9", 3), ("x", 4))]


@FAST
@given(
    events=st.lists(st.tuples(EVENT, st.integers(0, 47), st.integers(0, 3)), max_size=30).map(
        lambda events: FIRST_USER + events
    ),
    garbage=st.lists(st.tuples(st.integers(0, 40), st.integers(0, 2), CELLS), max_size=2),
    style=st.sampled_from(["unix", "iso", "iso-z", "mixed"]),
    duplicates=st.sampled_from(["error", "drop"]),
)
def test_any_interaction_log_loads_as_written_or_is_refused(
    tmp_path_factory, events, garbage, style, duplicates
):
    """Whatever way times are written, each user's loaded sequence is the file's interactions in time
    order (ties in file order), exact duplicates dropped or refused, repeats kept first; damage refused."""
    from adlab.data.sources.interactions import InteractionsSource

    moments = [881_250_949 + 3600 * hour for (_, hour, _) in events]
    formats = {"unix": [0], "iso": [1], "iso-z": [2], "mixed": [0, 1, 2]}[style]

    def written(moment: int, pick: int) -> str:
        stamp = pd.Timestamp(moment, unit="s")
        return [str(moment), stamp.strftime("%Y-%m-%dT%H:%M:%S"), stamp.strftime("%Y-%m-%dT%H:%M:%SZ")][
            formats[pick % len(formats)]
        ]

    cells = [
        [user, item, written(m, pick)] for ((user, item), _, pick), m in zip(events, moments, strict=True)
    ]
    for row, column, cell in garbage if cells else []:
        cells[row % len(cells)][column] = cell
    path = tmp_path_factory.mktemp("log") / "ratings.csv"
    path.write_text(_csv_text(["user_id", "item_id", "timestamp"], cells), encoding="utf-8")
    source = InteractionsSource(
        str(path), "user_id", "item_id", "timestamp", max_length=3, duplicates=duplicates
    )
    try:
        raw = source.load()
        splits = {stage: np.flatnonzero(raw.official == stage) for stage in ("train", "val", "test")}
        source.build(raw, splits)
    except AdlabError as error:
        assert "\n" not in str(error)
        rows = [(u, i, m) for ((u, i), _, _), m in zip(events, moments, strict=True)]
        exact_duplicates = len(set(rows)) < len(rows)
        mixed = len({formats[pick % len(formats)] for (_, _, pick) in events}) > 1  # unix beside ISO: refused
        assert garbage or mixed or (duplicates == "error" and exact_duplicates), (
            f"a clean log refused: {error}"
        )
        return
    if garbage and cells:
        return
    log = pd.DataFrame(
        [(u, i, m) for ((u, i), _, _), m in zip(events, moments, strict=True)], columns=["u", "i", "t"]
    )
    assert not (duplicates == "error" and log.duplicated().any())
    log = log.drop_duplicates().sort_values(["u", "t"], kind="stable").drop_duplicates(["u", "i"])
    expected = {user: list(group["i"]) for user, group in log.groupby("u") if len(group) >= 2}
    loaded = {
        str(user): [str(raw.item_ids[i - 1]) for i in raw.items[raw.offsets[u] : raw.offsets[u + 1]]]
        for u, user in enumerate(raw.user_ids)
    }
    assert loaded == expected


# ------------------------------------------------------------------------------------- serving schema
PREPROCESSING = {
    "kind": "tabular",
    "features": [
        {"name": "region", "kind": "categorical", "vocabulary": ["east", "north"], "reads": True},
        {"name": "code", "kind": "categorical", "vocabulary": ["1", "2", "10"], "reads": True},
        {"name": "unused", "kind": "categorical", "vocabulary": ["a"], "reads": False},
        {"name": "age", "kind": "numeric", "fill": 40.0, "mean": 40.0, "scale": 10.0, "min": 18, "max": 90, "reads": True},
        {"name": "visits", "kind": "numeric", "fill": 2.0, "mean": 2.0, "scale": 1.0, "min": 0, "max": 9, "reads": False},
    ],
    "allow_missing_numeric": False,
    "id_column": "customer_id",
    "target": "bought",
}  # fmt: skip
JSON_VALUES = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(10**40), 10**40),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=5),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(st.text(max_size=4), children, max_size=3)
    ),
    max_leaves=6,
)
KEYS = st.sampled_from(["region", "code", "unused", "age", "visits", "customer_id", "bought", "other"])


@FAST
@given(
    record=st.one_of(JSON_VALUES, st.dictionaries(KEYS, JSON_VALUES, max_size=8)),
    allow_missing=st.booleans(),
)
def test_any_json_record_is_encoded_or_refused_naming_a_feature(record, allow_missing):
    schema = TabularSchema({**PREPROCESSING, "allow_missing_numeric": allow_missing})
    categorical = schema.placeholder_categorical.copy()
    numeric = schema.placeholder_numeric.copy()
    try:
        schema.encode_record(record, categorical, numeric)
    except SchemaError as error:
        assert "\n" not in str(error)
        return
    # accepted: exactly the read features, maybe the id and target; values as the record says
    assert {"region", "code", "age"} <= set(record) <= {"region", "code", "age", "customer_id", "bought"}
    assert np.isfinite(numeric).all() and abs(float(numeric[0])) <= 1.0000001e30
    age = record["age"]
    if age is not None and not (isinstance(age, float) and not math.isfinite(age)):
        assert float(numeric[0]) == pytest.approx(float(np.float32(age)))
    assert categorical[1] == 1 and numeric[1] == 2.0  # unread columns keep their placeholders
    assert categorical[0] == {"east": 1, "north": 2}.get(record["region"], 0) or not isinstance(
        record["region"], str
    )


@FAST
@given(
    rows=st.lists(
        st.fixed_dictionaries(
            {
                "region": st.one_of(
                    st.none(), st.sampled_from(["east", "North", "west"]), st.text(max_size=3)
                ),
                "code": st.one_of(st.none(), st.sampled_from(["1", "2", "x"])),
                "age": st.one_of(
                    st.none(), st.floats(allow_nan=True, allow_infinity=True), st.integers(-5, 200)
                ),
            }
        ),
        min_size=1,
        max_size=10,
    )
)
def test_any_arrow_table_is_encoded_or_refused(rows):
    from adlab.serving.schema import Drift

    schema = TabularSchema(PREPROCESSING)
    table = pa.Table.from_pylist(rows)
    drift = Drift()
    try:
        categorical, numeric = schema.encode_table(table, drift)
    except SchemaError as error:
        assert "\n" not in str(error)
        return
    assert categorical.shape == (len(rows), 3) and numeric.shape == (len(rows), 2)
    ages = [r["age"] for r in rows]
    assert all(a is not None and math.isfinite(a) and abs(a) <= 1e30 for a in ages)  # else refused
    outside = sum(1 for a in ages if a < 18 or a > 90)
    assert drift.below.get("age", 0) + drift.above.get("age", 0) == outside
    unseen = sum(1 for r in rows if r["region"] not in ("east", "north"))
    assert drift.unseen.get("region", 0) == unseen


# ------------------------------------------------------------------------------------- regressions
# inputs the fuzzers found (hypothesis and scripts/fuzz_readers.py), kept as plain cases
REGRESSIONS = [
    ("duplicate header after pandas' renaming", "a,a,target\n1,2,0\n3,4,1\n"),
    ("short last row", "a,b,target\n1,2,0\n3,4,1\n5\n"),
    ("semicolons", "a;b;target\n1;2;0\n3;4;1\n"),
    ("empty header cell", ",b,target\n1,2,0\n3,4,1\n"),
]


@pytest.mark.parametrize("name, text", REGRESSIONS, ids=[r[0] for r in REGRESSIONS])
def test_fuzzer_findings_stay_fixed(name, text, tmp_path):
    path = tmp_path / "t.csv"
    path.write_text(text)
    with pytest.raises(AdlabError):
        TabularSource(str(path), target="target").load()


FOUND = Path(__file__).parent / "fuzz_regressions"
LOGS = ("transactions-", "interactions-")


@pytest.mark.parametrize(
    "path", [p for p in sorted(FOUND.iterdir()) if not p.name.startswith(LOGS)], ids=lambda p: p.stem
)
def test_fuzzer_inputs_stay_refused_with_one_line(path, tmp_path):
    """Inputs scripts/fuzz_readers.py found (a KeyError in damaged parquet metadata, csv.Error from the
    delimiter sniffer, a header pyarrow and Python's csv split differently, a header that is not UTF-8, an
    idx header whose shape overflows numpy)."""
    from adlab.serving import batch

    copy = tmp_path / path.name
    copy.write_bytes(path.read_bytes())
    with pytest.raises(AdlabError) as refused:
        if path.suffix == ".idx":
            read_idx(copy)
        elif path.name.startswith("score-csv"):
            schema = TabularSchema(PREPROCESSING)
            header, row_bytes = batch._csv_header(copy)
            plan = batch.plan_columns(schema, header, None, [], [])
            for chunk in batch._csv_batches(copy, schema, plan, 64, row_bytes):
                schema.encode_table(chunk)
        else:
            TabularSource(str(copy), target="bought").load()
    assert "\n" not in str(refused.value)


# the reading options scripts/fuzz_readers.py tries each purchase / interaction log with
LOG_OPTIONS = {
    "transactions-": [
        {"cutoff": "2020-01-31", "holdout_end": "2020-02-20"},
        {"cutoff": "2020-01-31", "holdout_end": "2020-02-20", "separator": None, "dayfirst": True,
         "refunds": "drop", "period": "month"},
    ],
    "interactions-": [
        {"max_length": 2},
        {"max_length": 3, "separator": None, "split": "time", "val_start": "2020-02-01",
         "test_start": "2020-03-01", "repeats": "keep", "duplicates": "drop", "core": 2},
    ],
}  # fmt: skip


@pytest.mark.parametrize(
    "path", [p for p in sorted(FOUND.iterdir()) if p.name.startswith(LOGS)], ids=lambda p: p.stem
)
def test_fuzzer_log_inputs_stay_refused_with_one_line(path, tmp_path):
    """Logs scripts/fuzz_readers.py found: a file whose delimiter cannot be sniffed (csv.Error), dates in
    two time zones (ValueError even when coercing), a year before 1 (pandas cannot name the day), unix
    seconds past int64 (wrapped silently, reordering the log), an id ending in NUL (merged silently with the
    id without it by numpy's text arrays)."""
    from adlab.data.sources.interactions import InteractionsSource
    from adlab.data.sources.transactions import TransactionsSource

    copy = tmp_path / path.name
    copy.write_bytes(path.read_bytes())
    kind = next(prefix for prefix in LOGS if path.name.startswith(prefix))
    for options in LOG_OPTIONS[kind]:
        with pytest.raises(AdlabError) as refused:
            if kind == "transactions-":
                TransactionsSource(str(copy), "customer_id", "date", "amount", **options).load()
            else:
                InteractionsSource(str(copy), "user_id", "item_id", "timestamp", **options).load()
        assert "\n" not in str(refused.value)


def test_year_first_dates_keep_their_meaning_when_read_day_first():
    """Found by the purchase-log property test: with dayfirst=true, 2020-01-02 became 1 February (pandas
    reads YYYY-DD-MM day first); a year-first date is now read year-month-day whatever dayfirst says."""
    from adlab.data.customer_features import parse_dates

    days = parse_dates(pd.Series(["2020-01-02", "2020/01/03", "04/01/2020", "5.1.2020"]), "date", None, True)
    assert [str(day.date()) for day in days] == ["2020-01-02", "2020-01-03", "2020-01-04", "2020-01-05"]


def test_texts_are_read_as_written():
    """Found by the text property test: a title "0" became "0.0" (pandas read the column as numbers) and a
    title "NA" became missing. cases: text-number-title-kept, text-na-title-kept"""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "titles.csv"
        path.write_text("Title,Department\n0,Dresses\nNA,Tops\n,Tops\n12,Dresses\n")
        raw = TextSource(str(path), text="Title", conditions=["Department"]).load()
    assert list(raw.texts) == ["0", "NA", "12"] and raw.dropped_empty == 1
