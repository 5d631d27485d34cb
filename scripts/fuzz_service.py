"""Fuzz adlab-serve against its own OpenAPI schema, refuse an oversized body from its headers, and load it.

    .venv/bin/python scripts/fuzz_service.py [--package DIR] [--examples 1000] [--requests 50000]
        [--concurrency 64] [--json]

Without `--package`, a propensity model reading 7 of the 85 CoIL columns is trained on a tiny CoIL-like
table and exported (about a minute). Then:

1. schemathesis over every endpoint of the service's OpenAPI, in process (ASGI): `--examples` bodies that fit
   the schema and `--examples` that violate it per POST endpoint; an endpoint without inputs (GET) has one
   possible request, sent `2 * --examples` times. Every answer goes through schemathesis' checks (no 5xx,
   documented status, content type and body schema, valid bodies accepted, invalid ones refused).
2. `adlab-serve` in a subprocess on 127.0.0.1: a request announcing a 10 MB body without sending it must get
   413 at once; then `--requests` single-row requests at `--concurrency` (to `/recommend`, 1-59 catalogue
   items and k=10 each, for a recommendation package; one customer's 1-20 purchases each for a customers
   package), counting errors, with the server's resident memory before and after.

Prints the counts (`--json`: one JSON object). Exits 1 when any 5xx, failed check or load error was seen.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import io
import json
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _serve import running_service  # noqa: E402
from bench_serving import load, percentiles_us, run_loop  # noqa: E402


def make_package(work: Path) -> Path:
    """Train a small column-selecting propensity model on a CoIL-like table and export it to ONNX."""
    from adlab.data.synthetic import write_coil_like
    from adlab.export import export_checkpoint
    from adlab.harness.configs import compose
    from adlab.train import train

    data = work / "data"
    write_coil_like(data)
    overrides = [
        f"paths.data_dir={data}",
        f"paths.log_dir={work}",
        "trainer.max_epochs=3",
        "extras.print_config=false",
        "callbacks.progress_bar=null",
        "baselines=none",
        "model.select_numeric=5",
    ]
    with contextlib.redirect_stdout(io.StringIO()):  # the run's table and paths
        train(compose("train", overrides, work / "run"))
    return export_checkpoint(work / "run" / "checkpoints" / "best.ckpt", "onnx", work / "package")


def fuzz_operation(
    operation: Any,
    mode: str,
    examples: int,
    statuses: collections.Counter,
    failures: collections.Counter,
    distinct: set[str],
) -> None:
    """Up to `examples` generated requests of one mode (`positive`: bodies that fit the schema,
    `negative`: bodies that violate it), every answer checked."""
    import schemathesis
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis.core.failures import FailureGroup

    strategy = operation.as_strategy(generation_mode=schemathesis.GenerationMode(mode))

    @given(case=strategy)
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def exercise(case: Any) -> None:
        distinct.add(json.dumps([case.body, dict(case.headers or {})], default=str, sort_keys=True))
        response = case.call()
        statuses[response.status_code] += 1
        try:
            case.validate_response(response)
        except (AssertionError, FailureGroup) as error:
            failures[f"{mode}: {str(error).strip().splitlines()[0][:160]}"] += 1

    try:
        exercise()
    except Unsatisfiable:
        pass  # an endpoint without inputs has no invalid request


def fuzz(package: Path, examples: int) -> dict[str, Any]:
    """schemathesis over every operation, positive and negative bodies; counts per endpoint."""
    import schemathesis
    from schemathesis.core.failures import FailureGroup

    from adlab.serving.app import create_app

    config = schemathesis.Config.from_dict(
        {"checks": {"negative_data_rejection": {"expected-statuses": ["400", "413", "415", "422"]}}}
    )
    api = schemathesis.openapi.from_asgi("/openapi.json", create_app(package), config=config)
    report: dict[str, Any] = {}
    for result in api.get_all_operations():
        operation = result.ok()
        statuses: collections.Counter = collections.Counter()
        failures: collections.Counter = collections.Counter()
        distinct: set[str] = set()
        started = time.perf_counter()
        for mode in ("positive", "negative"):
            fuzz_operation(operation, mode, examples, statuses, failures, distinct)
        sent = sum(statuses.values())
        if sent < 2 * examples:  # GET endpoints: the one possible request, repeated
            case = operation.Case()
            for _ in range(2 * examples - sent):
                response = case.call()
                statuses[response.status_code] += 1
                try:
                    case.validate_response(response)
                except (AssertionError, FailureGroup) as error:
                    failures[f"repeat: {str(error).strip().splitlines()[0][:160]}"] += 1
        report[operation.label] = {
            "requests": sum(statuses.values()),
            "distinct_requests": len(distinct),
            "statuses": {str(k): v for k, v in sorted(statuses.items())},
            "server_errors": sum(v for k, v in statuses.items() if k >= 500),
            "failed_checks": sum(failures.values()),
            "failures": dict(failures),
            "seconds": round(time.perf_counter() - started, 1),
        }
    return report


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return -1


def header_only_413(port: int, limit: int, path: str) -> dict[str, Any]:
    """Announce a body far over the limit and send none: the answer must come at once, and be a 413."""
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {limit * 10}\r\n\r\n".encode()
        )
        answer = connection.recv(4096).decode(errors="replace")
    return {
        "status_line": answer.splitlines()[0] if answer else "",
        "ms": round((time.perf_counter() - started) * 1000, 1),
    }


def records_within_training(schema: Any, count: int, seed: int = 0) -> list[dict[str, Any]]:
    """Requests of the columns the model reads: training categories, numbers within the train range."""
    import numpy as np

    rng = np.random.default_rng(seed)
    records = []
    for _ in range(count):
        record: dict[str, Any] = {}
        for name in schema.required:
            if name in schema.vocabularies:
                record[name] = str(rng.choice(schema.vocabularies[name]))
            else:
                position = schema.numeric.index(name)
                low, high = float(schema.minimum[position]), float(schema.maximum[position])
                low, high = (low, high) if np.isfinite([low, high]).all() else (0.0, 1.0)
                record[name] = round(float(rng.uniform(low, high)), 3)
        records.append(record)
    return records


def histories_within_catalogue(item_ids: list[str], count: int, seed: int = 0) -> list[dict[str, Any]]:
    """/recommend requests: 1-59 distinct catalogue items each, k=10."""
    import numpy as np

    rng = np.random.default_rng(seed)
    return [
        {"items": [str(i) for i in rng.choice(item_ids, int(rng.integers(1, 60)), replace=False)], "k": 10}
        for _ in range(count)
    ]


def customers_within_history(
    preprocessing: dict[str, Any], count: int, seed: int = 0
) -> list[dict[str, Any]]:
    """/score requests of a customers package: one customer each, 1-20 purchases in the year before the cutoff."""
    import datetime as dt

    import numpy as np

    rng = np.random.default_rng(seed)
    columns = {
        k: v
        for k, v in preprocessing["log"].items()
        if k in ("customer", "date", "amount", "quantity", "product") and v
    }
    cutoff = dt.date.fromisoformat(preprocessing["cutoff"])
    values = {
        "date": lambda: (cutoff - dt.timedelta(days=int(rng.integers(0, 365)))).isoformat(),
        "amount": lambda: round(float(rng.gamma(2.0, 20.0)), 2),
        "quantity": lambda: int(rng.integers(1, 4)),
        "product": lambda: f"P{int(rng.integers(0, 50))}",
    }
    bodies = []
    for index in range(count):
        lines = [
            {name: f"C{index}" if role == "customer" else values[role]() for role, name in columns.items()}
            for _ in range(int(rng.integers(1, 21)))
        ]
        bodies.append({"transactions": lines})
    return bodies


def live_requests(package: Path, count: int) -> tuple[str, list[bytes]]:
    """The endpoint loaded for this package's kind and `count` valid bodies for it."""
    from adlab.serving.schema import TabularSchema

    preprocessing = json.loads((package / "preprocessing.json").read_text())
    if preprocessing.get("kind") == "interactions":
        bodies = histories_within_catalogue([str(i) for i in preprocessing["item_ids"]], count)
        return "/recommend", [json.dumps(body).encode() for body in bodies]
    if preprocessing.get("kind") == "transactions":
        bodies = customers_within_history(preprocessing, count)
        return "/score", [json.dumps(body).encode() for body in bodies]
    records = records_within_training(TabularSchema(preprocessing), count)
    return "/score", [json.dumps(record).encode() for record in records]


def live(package: Path, work: Path, requests: int, concurrency: int) -> dict[str, Any]:
    """Start adlab-serve, check the header-only 413, then load it; RSS before and after."""
    path, bodies = live_requests(package, 2000)
    limit = 1 << 20
    with running_service(package, work, f"max_body_bytes={limit}") as (server, port):
        refused = header_only_413(port, limit, path)
        rss_before = rss_kib(server.pid)
        started = time.perf_counter()
        latencies, errors = run_loop(load(port, path, bodies, requests, concurrency))
        seconds = time.perf_counter() - started
        rss_after = rss_kib(server.pid)
        p50, p99 = percentiles_us(latencies)
    return {
        "endpoint": path,
        "header_only_413": refused,
        "load_requests": requests,
        "load_concurrency": concurrency,
        "load_errors": errors,
        "load_requests_per_s": round(requests / seconds),
        "load_p50_ms": round(p50 / 1000, 2),
        "load_p99_ms": round(p99 / 1000, 2),
        "server_rss_mib_before": round(rss_before / 1024, 1),
        "server_rss_mib_after": round(rss_after / 1024, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--package", help="an exported ONNX package (default: train and export a small one)")
    parser.add_argument("--examples", type=int, default=1000, help="generated bodies per endpoint and mode")
    parser.add_argument("--requests", type=int, default=50_000, help="loopback load: requests sent")
    parser.add_argument("--concurrency", type=int, default=64, help="loopback load: requests in flight")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="adlab-fuzz-") as temporary:
        work = Path(temporary)
        started = time.perf_counter()
        package = Path(args.package) if args.package else make_package(work)
        report: dict[str, Any] = {"fuzz": fuzz(package, args.examples)}
        if args.requests:
            report["live"] = live(package, work, args.requests, args.concurrency)
        report["seconds"] = round(time.perf_counter() - started, 1)
    bad = sum(e["server_errors"] + e["failed_checks"] for e in report["fuzz"].values())
    live_report = report.get("live", {})
    bad += live_report.get("load_errors", 0)
    bad += 0 if not live_report or " 413 " in live_report["header_only_413"]["status_line"] else 1
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for label, entry in report["fuzz"].items():
            print(
                f"{label:<20} {entry['requests']:>6} requests ({entry['distinct_requests']} distinct) "
                f"statuses {entry['statuses']}  5xx {entry['server_errors']}  failed checks {entry['failed_checks']}"
            )
            for failure, count in entry["failures"].items():
                print(f"    {count} x {failure}")
        for key, value in live_report.items():
            print(f"{key:<24} {value}")
        print(f"total {report['seconds']} s")
    raise SystemExit(1 if bad else 0)


if __name__ == "__main__":
    main()
