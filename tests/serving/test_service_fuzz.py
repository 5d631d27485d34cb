"""The scoring service and batch scoring on what users and fuzzers send: schemathesis over the service's own
OpenAPI (zero 5xx, zero schema violations), a body refused from its headers alone, exactly the columns the
model reads, the row id echoed and the target ignored, warnings about values training never saw.

`scripts/fuzz_service.py` runs the same fuzzing at scale (2,000+ requests per endpoint) and a loopback load.
"""

from __future__ import annotations

import asyncio
import collections
import json
import socket
import sys

import numpy as np
import pandas as pd
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.core.failures import FailureGroup
from starlette.testclient import TestClient

from adlab.errors import AdlabError
from adlab.export import export_checkpoint
from adlab.serving.app import BodySizeLimit, bind_socket, create_app
from adlab.serving.batch import ScoringReport, score_file
from adlab.serving.schema import TabularSchema
from adlab.serving.scorer import load_scorer
from adlab.train import train
from tests.helpers import TINY, compose_config

ID, TARGET = "customer_id", "CARAVAN"
# an invalid request must get one of the service's documented refusals (a batch over max_batch_rows is a 413)
FUZZ_CONFIG = schemathesis.Config.from_dict(
    {"checks": {"negative_data_rejection": {"expected-statuses": ["400", "413", "415", "422"]}}}
)


@pytest.fixture(scope="module")
def package(tmp_path_factory, coil_data_dir):
    """A propensity model that reads 7 of the 85 columns (2 categorical, 5 selected numeric), exported."""
    run = tmp_path_factory.mktemp("fuzz_run")
    overrides = [f"paths.data_dir={coil_data_dir}", f"paths.log_dir={run.parent}", *TINY, "baselines=none"]
    train(compose_config("train", [*overrides, "model.select_numeric=5"], run))
    return export_checkpoint(run / "checkpoints" / "best.ckpt", "onnx", tmp_path_factory.mktemp("fuzz_pkg"))


@pytest.fixture(scope="module")
def schema(package) -> TabularSchema:
    return TabularSchema(json.loads((package / "preprocessing.json").read_text()))


@pytest.fixture(scope="module")
def app(package):
    return create_app(package, max_body_bytes=100_000, max_batch_rows=50)


@pytest.fixture(scope="module")
def client(app):
    return TestClient(app)


@pytest.fixture(scope="module")
def customers(coil_data_dir) -> pd.DataFrame:
    frame = pd.read_parquet(coil_data_dir / "coil2000" / "coil2000.parquet")
    return frame[frame["split"] == "test"].drop(columns=["split"]).reset_index(drop=True)


def fuzz(operation, mode: str, examples: int, statuses: collections.Counter, failures: list[str]) -> None:
    """Send `examples` requests schemathesis generates for one operation (`positive`: bodies that fit the
    schema, `negative`: bodies that violate it), counting statuses and collecting failed checks."""
    strategy = operation.as_strategy(generation_mode=schemathesis.GenerationMode(mode))

    @given(case=strategy)
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def exercise(case):
        response = case.call()
        statuses[response.status_code] += 1
        try:
            case.validate_response(response)
        except (AssertionError, FailureGroup) as error:  # schemathesis groups the checks that failed
            failures.append(f"{operation.label} {mode}: {str(error).strip().splitlines()[0]}")

    try:
        exercise()
    except Unsatisfiable:  # GET endpoints take no input: no invalid request exists
        assert mode == "negative" and operation.method.upper() == "GET"


def fuzz_app(app, examples: int) -> tuple[collections.Counter, list[str]]:
    """`fuzz` every operation of the app's OpenAPI in both modes: the statuses answered, the failed checks."""
    api = schemathesis.openapi.from_asgi("/openapi.json", app, config=FUZZ_CONFIG)
    statuses: collections.Counter = collections.Counter()
    failures: list[str] = []
    for result in api.get_all_operations():
        for mode in ("positive", "negative"):
            fuzz(result.ok(), mode, examples, statuses, failures)
    return statuses, failures


def test_schemathesis_finds_no_server_error_and_no_schema_violation(app):
    """A few dozen generated requests per endpoint and mode (valid and invalid bodies): every answer is
    documented and fits its schema, valid bodies are accepted, invalid ones refused with a 4xx."""
    statuses, failures = fuzz_app(app, 25)
    assert failures == []
    assert not any(status >= 500 for status in statuses)
    assert statuses[200] >= 50 and statuses[422] >= 40


def test_a_body_not_declared_as_json_is_refused_with_415(client, schema, customers):
    """cases: score-text-plain, score-no-content-type, score-form-encoded"""
    record = customers[schema.required].iloc[0].to_dict()
    body = json.dumps(record).encode()
    for headers in (
        {"content-type": "text/plain"},
        {},
        {"content-type": "application/x-www-form-urlencoded"},
    ):
        for path in ("/score", "/score/batch"):
            response = client.post(path, content=body, headers=headers)
            assert response.status_code == 415, (path, headers, response.text)
            assert "expected application/json" in response.json()["detail"]
    ok = client.post("/score", content=body, headers={"content-type": "application/json; charset=utf-8"})
    assert ok.status_code == 200


def test_an_oversized_body_is_refused_from_its_headers_alone():
    """case: score-body-over-limit-headers-only: the body is never read"""
    sent = []

    async def receive():
        raise AssertionError("the body was read")

    async def send(message):
        sent.append(message)

    async def app(scope, receive, send):
        raise AssertionError("the request reached the app")

    scope = {
        "type": "http",
        "headers": [(b"content-length", b"10000000")],
        "method": "POST",
        "path": "/score",
    }
    asyncio.run(BodySizeLimit(app, max_bytes=1000)(scope, receive, send))
    assert sent[0]["status"] == 413 and b"over 1000 bytes" in sent[1]["body"]


def test_the_service_takes_exactly_the_columns_the_model_reads(client, schema, customers):
    """cases: score-unread-column, score-id-echoed, score-target-ignored, score-id-not-scalar, metadata-says-columns"""
    metadata = client.get("/metadata").json()
    assert [f["name"] for f in metadata["features"]] == schema.required and len(schema.required) == 7
    assert metadata["id_column"] == ID and metadata["target"] == TARGET
    assert len(metadata["unread_features"]) == 85 - 7
    record = customers[schema.required].iloc[0].to_dict()
    plain = client.post("/score", json=record).json()
    assert set(plain) == {"score", "model_version"}
    full = client.post("/score", json=dict(record, customer_id=42, CARAVAN=1)).json()
    assert full["id"] == 42 and full["ignored"] == [TARGET] and full["score"] == plain["score"]
    unread = schema.unread[0]
    refused = client.post("/score", json=dict(record, **{unread: 1.0}))
    assert refused.status_code == 422 and refused.json()["feature"] == unread
    assert "does not read" in refused.json()["detail"]
    bad_id = client.post("/score", json=dict(record, customer_id={"a": 1}))
    assert bad_id.status_code == 422 and bad_id.json()["feature"] == ID
    batch = client.post("/score/batch", json={"rows": [dict(record, customer_id=7), record]}).json()
    assert batch["ids"] == [7, None] and len(batch["scores"]) == 2


def test_values_training_never_saw_are_scored_with_a_warning(client, schema, customers):
    """cases: score-out-of-range-number, score-category-in-another-case, score-beyond-float32"""
    record = customers[schema.required].iloc[0].to_dict()
    numeric = next(name for name in schema.required if name in schema.numeric)
    answer = client.post("/score", json=dict(record, **{numeric: 1000})).json()
    assert any(f"{numeric}=1000 is above the training maximum 9" in w for w in answer["warnings"])
    category = record["MOSTYPE"]
    answer = client.post("/score", json=dict(record, MOSTYPE=category.upper())).json()
    assert f"differs from {category!r} only in case" in answer["warnings"][0]
    batch = client.post("/score/batch", json={"rows": [record, dict(record, **{numeric: -5})]}).json()
    assert batch["warnings"] == [f"row 1: {numeric}=-5 is below the training minimum 0"]
    huge = client.post("/score", json=dict(record, **{numeric: 1e31}))
    assert huge.status_code == 422 and "out of range" in huge.json()["detail"]


def _run_score(monkeypatch, capsys, args):
    from adlab.serving.batch import main

    monkeypatch.setattr(sys, "argv", ["adlab-score", *args])
    with pytest.raises(SystemExit) as stop:
        main()
    return stop.value.code, capsys.readouterr()


def test_adlab_score_ignores_the_target_and_unread_columns_and_counts_what_training_never_saw(
    package, customers, tmp_path
):
    """cases: file-target-ignored, file-unread-columns-ignored, file-out-of-range-counted, file-case-mismatch-counted"""
    frame = customers.copy()
    frame.loc[:9, "NUM00"] = 50  # ten values above the training range
    frame.loc[:2, "MOSTYPE"] = frame.loc[:2, "MOSTYPE"].str.upper()
    source = tmp_path / "customers.csv"
    frame.to_csv(source, index=False)
    report = ScoringReport()
    rows = score_file(load_scorer(package), source, tmp_path / "scores.csv", chunk_rows=100, report=report)
    scored = pd.read_csv(tmp_path / "scores.csv")
    assert rows == len(frame) and list(scored.columns) == [ID, "score"]
    assert TARGET in report.ignored and len(report.ignored) == 1 + 78
    summary = report.drift.summary()
    assert "NUM00: 10 above the training maximum 9" in summary
    assert "MOSTYPE: 3 values not among the training categories" in summary and "only in case" in summary


def test_adlab_score_file_mistakes(package, customers, tmp_path, monkeypatch, capsys):
    """cases: file-semicolon-separated, file-duplicate-columns, file-output-folder-is-a-file, file-read-column-missing"""
    scorer = load_scorer(package)
    semicolons = tmp_path / "semi.csv"
    customers.to_csv(semicolons, sep=";", index=False)
    with pytest.raises(AdlabError, match=r"semi\.csv: one column named .* looks ';'-separated"):
        score_file(scorer, semicolons, tmp_path / "o.csv")
    duplicated = tmp_path / "dup.csv"
    customers.rename(columns={"NUM05": "NUM04"}).to_csv(duplicated, index=False)
    with pytest.raises(AdlabError, match=r"duplicate column names \['NUM04'\]"):
        score_file(scorer, duplicated, tmp_path / "o.csv")
    read = next(name for name in scorer.schema.required if name in scorer.schema.numeric)
    missing = tmp_path / "missing.csv"
    customers.drop(columns=[read]).to_csv(missing, index=False)
    with pytest.raises(AdlabError, match=f"column '{read}' is missing; the model reads 7 columns"):
        score_file(scorer, missing, tmp_path / "o.csv")
    blocker = tmp_path / "blocker"
    blocker.write_text("a file")
    good = tmp_path / "good.csv"
    customers.to_csv(good, index=False)
    code, out = _run_score(
        monkeypatch,
        capsys,
        [
            f"model={package}",
            f"input={good}",
            f"output={blocker / 'o.csv'}",
            f"hydra.run.dir={tmp_path / 'job'}",
        ],
    )
    assert code == 2 and out.err.strip().splitlines()[-1].startswith(
        f"adlab: error: output={blocker / 'o.csv'}"
    )
    assert not list(tmp_path.glob("**/.o.csv*"))


def test_adlab_serve_on_a_port_in_use_says_so_before_serving(package, tmp_path, monkeypatch, capsys):
    """cases: serve-port-in-use, serve-port-out-of-range, serve-host-unknown"""
    from adlab.serving.app import main

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    try:
        with pytest.raises(
            AdlabError, match=f"port={port}: cannot listen on 127.0.0.1:{port} \\(already in use\\)"
        ):
            bind_socket("127.0.0.1", port)
        monkeypatch.setattr(
            sys,
            "argv",
            ["adlab-serve", f"model={package}", f"port={port}", f"hydra.run.dir={tmp_path / 'job'}"],
        )
        with pytest.raises(SystemExit) as stop:
            main()
        out = capsys.readouterr()
        assert stop.value.code == 2 and "serving" not in out.out
        assert out.err.strip().splitlines()[-1].startswith(f"adlab: error: port={port}")
    finally:
        taken.close()
    with pytest.raises(AdlabError, match="port=70000: expected a port number"):
        bind_socket("127.0.0.1", 70000)
    with pytest.raises(AdlabError, match="host=no.such.host.invalid: not a known address"):
        bind_socket("no.such.host.invalid", 8000)


def test_warnings_cost_nothing_on_the_usual_request(app, schema, customers):
    """The usual request's answer keeps its two keys; the schema's range arrays exist for every numeric."""
    assert schema.minimum.shape == schema.maximum.shape == (len(schema.numeric),)
    assert np.isfinite(
        schema.minimum[[schema.numeric.index(n) for n in schema.required if n in schema.numeric]]
    ).all()


def test_the_service_and_its_log_filter_load_no_torch(package):
    """adlab-serve runs ONNX Runtime: the app for a tabular package, the log filter every entry point's Hydra
    config sets (configs/hydra/default.yaml) and the job wrapper load neither torch nor Lightning, which
    would multiply the service's resident memory (figures: docs/reliability.md)."""
    import subprocess

    code = "\n".join(
        [
            "import sys, hydra.utils, yaml",
            "from adlab.cli import report_user_errors",
            "from adlab.harness.configs import config_dir",
            "from adlab.serving.app import create_app",
            f"create_app({str(package)!r})",
            "job_logging = yaml.safe_load((config_dir() / 'hydra' / 'default.yaml').read_text())['job_logging']",
            "hydra.utils.get_class(job_logging['filters']['quiet']['()'])",
            "report_user_errors(lambda config: None)(None)",
            "print(sorted(name for name in ('torch', 'lightning') if name in sys.modules))",
        ]
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    assert loaded.stdout.strip().splitlines()[-1] == "[]"
