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
JSON body), score-csv (adlab-score's CSV path: header plan, typed chunks, encode_table).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

READERS = ["tabular-csv", "tabular-parquet", "image", "idx", "text", "schema-json", "score-csv"]
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

    return {
        "tabular-csv": lambda data: tabular(data, ".csv"),
        "tabular-parquet": lambda data: tabular(data, ".parquet"),
        "image": image,
        "idx": idx,
        "text": text,
        "schema-json": schema_json,
        "score-csv": score_csv,
    }[reader]


def run_one(reader: str, seconds: int, out: Path) -> None:
    """In a child process: libFuzzer on one reader for `seconds`."""
    import atheris

    with atheris.instrument_imports(include=["adlab"]):
        import adlab.data.sources.images  # noqa: F401
        import adlab.data.sources.tabular  # noqa: F401
        import adlab.data.sources.text  # noqa: F401
        import adlab.serving.batch  # noqa: F401
        import adlab.serving.schema  # noqa: F401
    corpus = out / "corpus" / reader
    crashes = out / "crashes" / reader
    corpus.mkdir(parents=True, exist_ok=True)
    crashes.mkdir(parents=True, exist_ok=True)
    for index, seed in enumerate(seeds(reader)):
        (corpus / f"seed-{index}").write_bytes(seed)
    test = target(reader)
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
    atheris.Setup(arguments, test)
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
