"""Benchmark production scoring of the CoIL propensity scorer: in-process latency, batch throughput, HTTP.

    .venv/bin/python scripts/bench_serving.py [--experiment propensity_coil_rtb | propensity_coil] [--ckpt PATH] [--json]

Without `--ckpt` a model is trained first (`adlab-train experiment=<--experiment>`, under a minute). The
checkpoint is exported to ONNX, then measured:

- one request in process (JSON-like dict of raw features -> probability, validation included), p50/p99:
  PyTorch eager on the same scoring graph vs ONNX Runtime (`eager_*_us`, `onnx_*_us`), one thread each,
  the process pinned to one CPU;
  `onnx_graph_*_us` is the ONNX Runtime call alone on an already encoded row;
- batch throughput: an in-memory Arrow table of held-out rows, encoded and scored in chunks on one
  thread (`batch_rows_per_s`), and the same rows from a parquet file to a parquet file (`file_rows_per_s`);
- the HTTP service (`adlab-serve` in a subprocess on 127.0.0.1): `--requests` single-row requests at
  `--concurrency`, latency seen by the client, non-200 answers and transport failures (`http_errors`).

The client runs on the same machine as the server, so HTTP figures include the load generator's own CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from _serve import running_service

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def train_model(work: Path, experiment: str) -> Path:
    """Train a shipped CoIL recipe (`experiment`) and return its best checkpoint."""
    subprocess.run(
        [str(BIN / "adlab-data"), "fetch", "coil2000"], check=True, cwd=ROOT, stdout=subprocess.DEVNULL
    )
    run = work / "model"
    subprocess.run(
        [
            str(BIN / "adlab-train"),
            f"experiment={experiment}",
            f"hydra.run.dir={run}",
            "extras.print_config=false",
        ],
        check=True,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return run / "checkpoints" / "best.ckpt"


def held_out_rows(config: dict[str, Any], names: list[str], path: str | None = None) -> pd.DataFrame:
    """The raw feature values of the data's official test rows (never seen in training); `config` is the
    training job's (`StoredRun.config`)."""
    source = config["data"]["source"]
    frame = pd.read_parquet(path or source["path"])
    if source.get("split_column"):
        frame = frame[frame[source["split_column"]] == "test"]
    return frame[names].reset_index(drop=True)


def percentiles_us(samples_ns: list[int]) -> tuple[float, float]:
    p50, p99 = np.percentile(np.asarray(samples_ns, dtype=np.float64), [50, 99]) / 1000.0
    return float(p50), float(p99)


def time_calls(function: Any, inputs: list[Any], iterations: int, warmup: int = 2000) -> tuple[float, float]:
    """p50/p99 in microseconds of `function(input)` over `iterations` calls cycling through `inputs`."""
    for index in range(warmup):
        function(inputs[index % len(inputs)])
    gc.collect()
    samples = []
    clock = time.perf_counter_ns
    for index in range(iterations):
        item = inputs[index % len(inputs)]
        started = clock()
        function(item)
        samples.append(clock() - started)
    return percentiles_us(samples)


def in_process(ckpt: Path, package: Path, records: list[dict[str, Any]], iterations: int) -> dict[str, float]:
    import torch

    from adlab.harness.checkpoints import StoredRun, load_module
    from adlab.harness.exporting import export_spec
    from adlab.serving.scorer import load_scorer

    torch.set_num_threads(1)
    scorer = load_scorer(package, threads=1)
    stored = StoredRun.read(ckpt)
    graph = export_spec(load_module(stored), stored).graph
    schema = scorer.schema
    categorical = np.zeros((1, len(schema.categorical)), dtype=np.int64)
    numeric = np.zeros((1, len(schema.numeric)), dtype=np.float32)
    categorical_tensor, numeric_tensor = torch.from_numpy(categorical), torch.from_numpy(numeric)

    def eager(record: dict[str, Any]) -> float:
        schema.encode_record(record, categorical[0], numeric[0])  # the same validation and encoding
        with torch.inference_mode():
            return float(graph(categorical_tensor, numeric_tensor)[0])

    # the two paths agree before they are timed
    probe = records[:50]
    assert max(abs(eager(r) - scorer.score_record(r)) for r in probe) <= 1e-5
    eager_p50, eager_p99 = time_calls(eager, records, iterations // 4)
    onnx_p50, onnx_p99 = time_calls(scorer.score_record, records, iterations)
    graph_p50, graph_p99 = time_calls(lambda _: scorer.backend.score_bound(), records, iterations)
    return {
        "eager_p50_us": eager_p50,
        "eager_p99_us": eager_p99,
        "onnx_p50_us": onnx_p50,
        "onnx_p99_us": onnx_p99,
        "onnx_graph_p50_us": graph_p50,
        "onnx_graph_p99_us": graph_p99,
        "single_iterations": iterations,
    }


def batch(
    package: Path, frame: pd.DataFrame, rows: int, work: Path, chunk_rows: int = 65536
) -> dict[str, float]:
    from adlab.serving.batch import score_file
    from adlab.serving.scorer import load_scorer

    scorer = load_scorer(package, threads=1)
    repeats = -(-rows // len(frame))
    table = pa.Table.from_pandas(
        pd.concat([frame] * repeats, ignore_index=True).iloc[:rows], preserve_index=False
    )
    table = table.combine_chunks()
    scorer.score_table(table.slice(0, chunk_rows))  # warm-up
    seconds = []
    for _ in range(3):
        started = time.perf_counter()
        for offset in range(0, rows, chunk_rows):
            scorer.score_table(table.slice(offset, chunk_rows))
        seconds.append(time.perf_counter() - started)
    source, output = work / "bench_rows.parquet", work / "bench_scores.parquet"
    pq.write_table(table.append_column("customer_id", pa.array(np.arange(rows))), source)
    started = time.perf_counter()
    scored = score_file(scorer, source, output, chunk_rows=chunk_rows)
    file_seconds = time.perf_counter() - started
    return {
        "batch_rows": rows,
        "batch_chunk_rows": chunk_rows,
        "batch_rows_per_s": rows / float(np.median(seconds)),
        "file_rows_per_s": scored / file_seconds,
    }


async def load(
    port: int, path: str, bodies: list[bytes], requests: int, concurrency: int
) -> tuple[list[int], int]:
    """Send `requests` POSTs over `concurrency` keep-alive connections; per-request latency (ns), failures.

    A minimal HTTP/1.1 client on asyncio streams: client and server share the CPU here, and a full
    client library costs several times the CPU of the request itself, which would be measured too.
    """
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
    payloads = [f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body for body in bodies]
    latencies: list[int] = []
    errors = 0
    sent = 0
    clock = time.perf_counter_ns

    async def exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, payload: bytes) -> bool:
        writer.write(payload)
        header = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in header.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        await reader.readexactly(length)
        return header[9:12] == b"200"

    async def worker() -> None:
        nonlocal sent, errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while sent < requests:
            payload = payloads[sent % len(payloads)]
            sent += 1
            started = clock()
            try:
                async with asyncio.timeout(30):
                    ok = await exchange(reader, writer, payload)
            except (
                OSError,
                TimeoutError,
                ValueError,
                asyncio.IncompleteReadError,
                asyncio.LimitOverrunError,
            ):
                ok = False
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            latencies.append(clock() - started)
            errors += not ok
        writer.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, errors


def run_loop(coroutine: Any) -> Any:
    try:
        import uvloop

        return uvloop.run(coroutine)
    except ImportError:
        return asyncio.run(coroutine)


def http(
    package: Path, records: list[dict[str, Any]], requests: int, concurrency: int, work: Path
) -> dict[str, float]:
    with running_service(package, work) as (_, port):
        bodies = [json.dumps(record).encode() for record in records]
        run_loop(load(port, "/score", bodies, min(1000, requests), concurrency))  # warm-up
        started = time.perf_counter()
        latencies, errors = run_loop(load(port, "/score", bodies, requests, concurrency))
        seconds = time.perf_counter() - started
    p50, p99 = percentiles_us(latencies)
    return {
        "http_requests": requests,
        "http_concurrency": concurrency,
        "http_p50_ms": p50 / 1000,
        "http_p99_ms": p99 / 1000,
        "http_requests_per_s": requests / seconds,
        "http_errors": errors,
    }


def machine() -> dict[str, Any]:
    model = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")),
        platform.processor(),
    ) if Path("/proc/cpuinfo").exists() else platform.processor()  # fmt: skip
    import onnxruntime
    import torch

    return {
        "cpu": model,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", help="checkpoint written by adlab-train (default: train --experiment)")
    parser.add_argument(
        "--experiment",
        default="propensity_coil_rtb",
        help="CoIL recipe trained when no --ckpt is given: propensity_coil_rtb (the bidding scorer) or "
        "propensity_coil (the flagship)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--single", type=int, default=20000, help="in-process single-request calls timed")
    parser.add_argument("--batch-rows", type=int, default=1_000_000, help="rows scored for batch throughput")
    parser.add_argument("--requests", type=int, default=20000, help="HTTP requests sent")
    parser.add_argument("--concurrency", type=int, default=32, help="HTTP requests in flight")
    parser.add_argument(
        "--data", help="the training table, when not where the checkpoint says (another machine)"
    )
    parser.add_argument("--work-dir", help="where the model, package and files go (default: a temporary dir)")
    args = parser.parse_args()

    from adlab.export import export_checkpoint
    from adlab.harness.checkpoints import StoredRun
    from adlab.serving.schema import TabularSchema

    with tempfile.TemporaryDirectory(prefix="adlab-bench-") as temporary:
        work = Path(args.work_dir or temporary)
        work.mkdir(parents=True, exist_ok=True)
        load_before = os.getloadavg()
        started = time.perf_counter()
        ckpt = Path(args.ckpt) if args.ckpt else train_model(work, args.experiment)
        package = export_checkpoint(ckpt, "onnx", work / "package")
        schema = TabularSchema(json.loads((package / "preprocessing.json").read_text()))
        frame = held_out_rows(StoredRun.read(ckpt).config, schema.names, args.data)
        # a request carries the columns the model reads (the bidding scorer reads 12 of 85)
        records = frame[schema.required].to_dict("records")
        results: dict[str, Any] = {
            "model_version": json.loads((package / "metadata.json").read_text())["model_version"]
        }
        # "one core": the single-request figures are taken pinned to one CPU (no migrations between cores)
        cpus = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {max(cpus)})
        try:
            results |= in_process(ckpt, package, records, args.single)
        finally:
            os.sched_setaffinity(0, cpus)
        results |= batch(package, frame, args.batch_rows, work)
        results |= http(package, records, args.requests, args.concurrency, work)
        results |= {
            "machine": machine(),
            "loadavg_before": [round(x, 2) for x in load_before],
            "loadavg_after": [round(x, 2) for x in os.getloadavg()],
            "wall_s": time.perf_counter() - started,
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
        }
    if args.json:
        print(json.dumps(results))
        return
    for key, value in results.items():
        print(f"{key:>22}: {value:,.2f}" if isinstance(value, float) else f"{key:>22}: {value}")


if __name__ == "__main__":
    main()
