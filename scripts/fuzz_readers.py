"""Coverage-guided fuzzing (atheris, libFuzzer) of adlab's readers: every input loads or raises `AdlabError`.

    .venv/bin/pip install -e '.[fuzz]'        # atheris; not a dependency of the package
    .venv/bin/python scripts/fuzz_readers.py --minutes 10 [--readers tabular-csv,image ...] [--json]

Each reader runs in its own process for `--minutes`, seeded with a few valid files, adlab's modules
instrumented for coverage (pandas, pyarrow and Pillow run as they are). An exception other than
`AdlabError`, or a broken promise (a duplicate column renamed, a label that is not 0/1 ...), is a finding:
libFuzzer stops that reader and keeps the input under `<out>/crashes/<reader>/`; the summary names it. Found
inputs belong in `tests/data/test_readers_fuzz.py` as regression cases once fixed.

Readers: tabular-csv, tabular-parquet (TabularSource.load), image (an ImageFolder of one fuzzed file beside a
valid one), idx (read_idx), text (TextSource.load and build), schema-json (TabularSchema.encode_record of a
JSON body), score-csv (adlab-score's CSV path: header plan, typed chunks, encode_table), transactions
(TransactionsSource.load and build: a customer/date/amount log), interactions (InteractionsSource.load and
build: a user/item/time log, leave-one-out and time split).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

READERS = [
    "tabular-csv", "tabular-parquet", "image", "idx", "text", "schema-json", "score-csv", "transactions",
    "interactions",
]  # fmt: skip
SCRATCH = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path(tempfile.gettempdir())
PREPROCESSING = {
    "kind": "tabular",
    "features": [
        {"name": "region", "kind": "categorical", "vocabulary": ["east", "north"], "reads": True},
        {"name": "code", "kind": "categorical", "vocabulary": ["1", "2", "10"], "reads": True},
        {"name": "age", "kind": "numeric", "fill": 40.0, "mean": 40.0, "scale": 10.0, "min": 18, "max": 90},
        {"name": "visits", "kind": "numeric", "fill": 2.0, "mean": 2.0, "scale": 1.0, "min": 0, "max": 9, "reads": False},
    ],
    "allow_missing_numeric": True,
    "id_column": "customer_id",
    "target": "bought",
}  # fmt: skip


# ------------------------------------------------------------------------------------------ seeds
def seeds(reader: str) -> list[bytes]:
    """A few valid inputs of the reader's format, for libFuzzer to mutate."""
    import numpy as np
    import pandas as pd
    from PIL import Image

    table = pd.DataFrame(
        {"age": [31, 45, 52, 23], "region": ["east", "north", None, "east"], "bought": [0, 1, 0, 1]}
    )
    if reader in ("tabular-csv", "score-csv"):
        frame = table.assign(customer_id=[1, 2, 3, 4], code=["1", "2", "10", "x"], visits=[1, 2, 3, 4])
        return [
            frame.to_csv(index=False).encode(),
            b"age,bought\n1,0\n2,1\n",
            b'"a,b",bought\n"1,5",yes\n0,no\n',
        ]
    if reader == "tabular-parquet":
        buffer = io.BytesIO()
        table.to_parquet(buffer, index=False)
        return [buffer.getvalue()]
    if reader == "image":
        out = []
        for mode, fmt in (("RGB", "PNG"), ("L", "JPEG"), ("P", "GIF"), ("I;16", "PNG"), ("RGBA", "TIFF")):
            buffer = io.BytesIO()
            Image.new(mode, (5, 3)).save(buffer, format=fmt)
            out.append(buffer.getvalue())
        return out
    if reader == "idx":
        images = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
        return [bytes([0, 0, 8, 3]) + b"".join(d.to_bytes(4, "big") for d in images.shape) + images.tobytes()]
    if reader == "text":
        return [b"Title,Department\nLovely dress,Dresses\nWarm coat!,Jackets\n0,\n", b"Title\nNA\n"]
    if reader == "schema-json":
        return [
            b'{"region": "east", "code": "2", "age": 33.5}',
            b'{"region": null, "code": 10, "age": null, "customer_id": 7}',
        ]
    if reader == "transactions":
        return [
            b'customer_id,date,amount\nA,2020-01-02,10.5\nA,2020-01-20,"$1,234.50"\nB,2020-01-05,7\n'
            b"B,2020-02-10,(3.00)\nC,2020-01-31,12\nA,2020-02-20,5 EUR\nC,2020-02-01,1\n",
            b"customer_id;date;amount\n1;02/01/2020;3\n2;31/01/2020;4\n1;20.02.2020;-1\n2;20/02/2020;2\n"
            b"3;15.01.2020;1.5\n",
        ]
    if reader == "interactions":
        return [
            b"user_id,item_id,timestamp\n1,10,881250949\n1,11,881250950\n1,12,881250951\n1,13,881250960\n"
            b"2,10,881250952\n2,12,881250953.5\n2,13,881250954\n2,11,881250956\n3,11,881250955\n",
            b"user_id;item_id;timestamp\nu1;a;2020-01-15\nu1;b;2020-01-31\nu1;c;2020-02-01T12:00:00Z\n"
            b"u1;d;2020-03-05\nu2;b;2020-01-20\nu2;a;2020-01-25\nu2;c;2020-02-02\nu2;d;2020-03-01\n"
            b"u2;d;2020-03-01\n",
        ]
    raise ValueError(reader)


# ------------------------------------------------------------------------------------------ targets
def target(reader: str):
    """The function libFuzzer calls with each input: returns normally or raises `AdlabError`; anything
    else is a finding."""
    import numpy as np

    from adlab.data.sources.images import ImageSource, read_idx
    from adlab.data.sources.tabular import TabularSource
    from adlab.data.sources.text import TextSource
    from adlab.errors import AdlabError
    from adlab.serving.schema import TabularSchema

    work = Path(tempfile.mkdtemp(dir=SCRATCH, prefix=f"adlab-fuzz-{reader}-"))
    schema = TabularSchema(PREPROCESSING)

    def tabular(data: bytes, suffix: str) -> None:
        path = work / f"t{suffix}"
        path.write_bytes(data)
        header = data.split(b"\n", 1)[0].decode("utf-8", "replace").split(",")
        try:
            raw = TabularSource(str(path), target=header[-1].strip() or "bought", impute="median").load()
        except AdlabError:
            return
        if not set(np.unique(raw.labels)) <= {0, 1}:
            raise AssertionError(f"labels {np.unique(raw.labels)} are not 0/1")
        renamed = [c for c in raw.frame.columns if re.search(r"\.\d+$", str(c)) and str(c) not in header]
        if renamed:
            raise AssertionError(f"columns {renamed} were renamed by the reader")

    def image(data: bytes) -> None:
        for label in ("a", "b"):
            (work / label).mkdir(exist_ok=True)
        (work / "a" / "fuzzed.png").write_bytes(data)
        if not (work / "b" / "valid.png").exists():
            (work / "b" / "valid.png").write_bytes(seeds("image")[0])
        for on_error in ("raise", "skip"):
            try:
                raw = ImageSource(str(work), image_size=6, on_error=on_error, workers=1).load()
            except AdlabError:
                continue
            if raw.images.shape[-2:] != (6, 6):
                raise AssertionError(f"images of shape {tuple(raw.images.shape)}")

    def idx(data: bytes) -> None:
        path = work / "x-idx3-ubyte"
        path.write_bytes(data)
        try:
            read_idx(path)
        except AdlabError:
            pass

    def text(data: bytes) -> None:
        path = work / "titles.csv"
        path.write_bytes(data)
        source = TextSource(str(path), text="Title", conditions=[], tokenizer="char")
        try:
            raw = source.load()
            rows = np.arange(len(raw.texts))
            source.build(raw, {"train": rows, "val": rows, "test": rows})
        except AdlabError:
            pass

    def schema_json(data: bytes) -> None:
        try:
            record = json.loads(data)
        except (ValueError, RecursionError):
            return  # the service answers 422 before the schema sees it
        categorical = schema.placeholder_categorical.copy()
        numeric = schema.placeholder_numeric.copy()
        try:
            schema.encode_record(record, categorical, numeric)
        except AdlabError:
            return
        if not np.isfinite(numeric).all():
            raise AssertionError(f"accepted a record whose numbers are not finite: {numeric}")
        schema.record_warnings(record, categorical, numeric)

    def score_csv(data: bytes) -> None:
        from adlab.serving import batch
        from adlab.serving.schema import Drift

        path = work / "customers.csv"
        path.write_bytes(data)
        try:
            header, row_bytes = batch._csv_header(path)
            plan = batch.plan_columns(schema, header, None, [], [])
            for chunk in batch._csv_batches(path, schema, plan, 64, row_bytes):
                schema.encode_table(chunk, Drift())
        except AdlabError:
            pass

    def transactions(data: bytes) -> None:
        from adlab.data.sources.transactions import TransactionsSource

        path = work / "log.csv"
        path.write_bytes(data)
        for options in TRANSACTIONS_OPTIONS:
            source = TransactionsSource(str(path), "customer_id", "date", "amount", **options)
            try:
                raw = source.load()
                rows = np.arange(len(raw.customers))
                source.build(raw, {"train": rows, "val": rows, "test": rows})
            except AdlabError:
                continue
            check_transactions(source, raw)

    def interactions(data: bytes) -> None:
        from adlab.data.sources.interactions import InteractionsSource

        path = work / "ratings.csv"
        path.write_bytes(data)
        for options in INTERACTIONS_OPTIONS:
            source = InteractionsSource(str(path), "user_id", "item_id", "timestamp", **options)
            try:
                raw = source.load()
                splits = {stage: np.flatnonzero(raw.official == stage) for stage in ("train", "val", "test")}
                built = source.build(raw, splits)
            except AdlabError:
                continue
            check_interactions(raw, built)

    return {
        "tabular-csv": lambda data: tabular(data, ".csv"),
        "tabular-parquet": lambda data: tabular(data, ".parquet"),
        "image": image,
        "idx": idx,
        "text": text,
        "schema-json": schema_json,
        "score-csv": score_csv,
        "transactions": transactions,
        "interactions": interactions,
    }[reader]


TRANSACTIONS_OPTIONS = [
    {"cutoff": "2020-01-31", "holdout_end": "2020-02-20"},
    {"cutoff": "2020-01-31", "holdout_end": "2020-02-20", "separator": None, "dayfirst": True,
     "refunds": "drop", "period": "month"},
]  # fmt: skip
INTERACTIONS_OPTIONS = [
    {"max_length": 2},
    {"max_length": 3, "separator": None, "split": "time", "val_start": "2020-02-01", "test_start": "2020-03-01",
     "repeats": "keep", "duplicates": "drop", "core": 2},
]  # fmt: skip


def check_transactions(source: Any, raw: Any) -> None:
    """What a loaded purchase log must mean: finite features, spend never negative, labels = bought."""
    import numpy as np

    if not (np.isfinite(raw.features).all() and np.isfinite(raw.sequence).all()):
        raise AssertionError("features or sequence are not finite")
    if not (np.isfinite(raw.target).all() and (raw.target >= 0).all()):
        raise AssertionError(f"holdout spend {raw.target} is not finite and non-negative")
    if not np.array_equal(raw.labels, (raw.target > 0).astype(np.int64)):
        raise AssertionError("labels are not 'bought in the holdout'")
    log = source.transactions()
    before = set(log.loc[(log["date"] <= source.cutoff) & (log["amount"] >= 0), "customer"])
    if set(raw.customers) - set(log["customer"]) or not before <= set(raw.customers):
        raise AssertionError("customers are not those who bought on or before the cutoff")


def check_interactions(raw: Any, built: Any) -> None:
    """What a loaded interaction log must mean: items in range, each user's times in order, the history
    of a val/test example only what came before its target."""
    import numpy as np

    items = len(raw.item_ids)
    if len(raw.items) and (raw.items.min() < 1 or raw.items.max() > items):
        raise AssertionError(f"item indices outside 1..{items}")
    for user in range(len(raw.user_ids)):
        times = raw.times[raw.offsets[user] : raw.offsets[user + 1]]
        if (np.diff(times) < 0).any():
            raise AssertionError(f"user {raw.user_ids[user]!r}: interactions out of time order")
    for stage, tensors in built.tensors.items():
        for name in ("history", "target"):
            values = tensors[name].numpy()
            if len(values) and (
                values.min() < 0 or values.max() > items or (name == "target" and values.min() < 1)
            ):
                raise AssertionError(f"{stage} {name} holds item indices outside 0..{items}")
    if len(np.unique(raw.user_ids)) != len(raw.user_ids) or len(np.unique(raw.item_ids)) != items:
        raise AssertionError("user or item ids repeated after numbering")


def run_one(reader: str, seconds: int, out: Path) -> None:
    """In a child process: libFuzzer on one reader for `seconds`."""
    import atheris

    with atheris.instrument_imports(include=["adlab"]):
        import adlab.data.sources.images  # noqa: F401
        import adlab.data.sources.interactions  # noqa: F401
        import adlab.data.sources.tabular  # noqa: F401
        import adlab.data.sources.text  # noqa: F401
        import adlab.data.sources.transactions  # noqa: F401
        import adlab.serving.batch  # noqa: F401
        import adlab.serving.schema  # noqa: F401
    corpus = out / "corpus" / reader
    crashes = out / "crashes" / reader
    corpus.mkdir(parents=True, exist_ok=True)
    crashes.mkdir(parents=True, exist_ok=True)
    for index, seed in enumerate(seeds(reader)):
        (corpus / f"seed-{index}").write_bytes(seed)
    test = target(reader)

    def kept(data: bytes) -> None:
        """The target, keeping a finding's input itself: libFuzzer's own copy can be lost (seen once on a
        machine so busy that its timeout alarm ended the process first)."""
        try:
            test(data)
        except BaseException:
            (crashes / f"input-{hashlib.sha1(data).hexdigest()}").write_bytes(data)
            raise

    arguments = [
        sys.argv[0],
        f"-max_total_time={seconds}",
        f"-artifact_prefix={crashes}/",
        "-rss_limit_mb=4096",
        "-timeout=20",
        "-max_len=4096",
        "-print_final_stats=1",
        str(corpus),
    ]
    atheris.Setup(arguments, kept)
    atheris.Fuzz()


def summary(reader: str, log: str, code: int, seconds: float, out: Path) -> dict[str, Any]:
    """What libFuzzer's log says: executions, coverage, the finding if any."""
    executions = re.findall(r"stat::number_of_executed_units: (\d+)", log)
    coverage = re.findall(r"cov: (\d+)", log)
    crashes = sorted(p.name for p in (out / "crashes" / reader).glob("*"))
    finding = None
    if code != 0:
        lines = [line for line in log.splitlines() if line.strip()]
        error = next((line for line in lines if re.match(r"^\w*(Error|Exception)\b", line)), None)
        finding = error or next((line for line in lines if "Uncaught Python exception" in line), lines[-1])
    return {
        "reader": reader,
        "seconds": round(seconds, 1),
        "executions": int(executions[-1]) if executions else None,
        "coverage_edges": int(coverage[-1]) if coverage else None,
        "exit_code": code,
        "finding": finding,
        "crash_inputs": crashes,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="fuzzing time per reader")
    parser.add_argument("--readers", default=",".join(READERS), help=f"comma-separated, of {READERS}")
    parser.add_argument("--out", default="outputs/fuzz_readers", help="corpus and crash inputs go here")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--run", help=argparse.SUPPRESS)  # internal: the child process's reader
    args = parser.parse_args()
    out = Path(args.out).resolve()
    seconds = max(1, int(args.minutes * 60))
    if args.run:
        run_one(args.run, seconds, out)
        return
    results = []
    for reader in args.readers.split(","):
        if reader not in READERS:
            parser.error(f"unknown reader {reader!r}; expected some of {READERS}")
        started = time.perf_counter()
        child = subprocess.run(
            [sys.executable, __file__, "--run", reader, "--minutes", str(args.minutes), "--out", str(out)],
            capture_output=True, text=True, timeout=seconds + 600, env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )  # fmt: skip
        # the child ends in libFuzzer's exit, which skips its cleanup
        for scratch in SCRATCH.glob(f"adlab-fuzz-{reader}-*"):
            shutil.rmtree(scratch, ignore_errors=True)
        log = child.stdout + child.stderr
        (out / f"{reader}.log").write_text(log)
        results.append(summary(reader, log, child.returncode, time.perf_counter() - started, out))
        if not args.json:
            entry = results[-1]
            print(
                f"{reader:<16} {entry['seconds']:>7.1f} s  {entry['executions'] or 0:>9} runs  "
                f"cov {entry['coverage_edges'] or 0:>5}  "
                + (
                    f"FINDING: {entry['finding']} ({', '.join(entry['crash_inputs'])})"
                    if entry["finding"]
                    else "ok"
                ),
                flush=True,
            )
    if args.json:
        print(json.dumps(results, indent=2))
    raise SystemExit(1 if any(r["finding"] for r in results) else 0)


if __name__ == "__main__":
    main()
