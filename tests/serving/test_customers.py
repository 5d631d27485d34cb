"""Customers packages (value and segments trained on transactions) in production: adlab-export, adlab-score
and adlab-serve answer what the trained module answers, from the package alone, and refuse bad input on one
line (exit 2 / 4xx)."""

from __future__ import annotations

import collections
import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import schemathesis
from starlette.testclient import TestClient

from adlab.data.customer_features import customer_summary
from adlab.data.sources.transactions import generate_transactions
from adlab.errors import AdlabError
from adlab.export import export_checkpoint
from adlab.predict import predict
from adlab.serving.app import create_app
from adlab.serving.batch_transactions import score_job, score_log_file
from adlab.serving.customers import CustomerScorer, load_customer_scorer, rate
from adlab.serving.package import load_package
from adlab.train import train
from tests.helpers import compose_config, purchase_log_overrides, run_module
from tests.serving.test_service_fuzz import FUZZ_CONFIG, fuzz

CUTOFF, HOLDOUT_END = "2020-06-29", "2020-12-25"


def _train_and_export(tmp_path_factory, name: str, overrides: list[str]) -> tuple[Path, Path]:
    """A tiny run of `experiment` on 200 generated customers, exported to ONNX: (run dir, package dir)."""
    work = tmp_path_factory.mktemp(name)
    generate_transactions(200, seed=0).to_csv(work / "log.csv", index=False)
    common = [*purchase_log_overrides(work / "log.csv", work, CUTOFF, HOLDOUT_END), "baselines=none"]
    train(compose_config("train", [*common, *overrides], work / "run"))
    package = export_checkpoint(work / "run" / "checkpoints" / "best.ckpt", "onnx", work / "package")
    return work / "run", package


@pytest.fixture(scope="module")
def value_run(tmp_path_factory) -> tuple[Path, Path]:
    """A ZILN value model with a GRU over the weekly spend sequence (both graph inputs), one epoch."""
    overrides = [
        "experiment=value_csv",
        "model.sequence_encoder=gru",
        "model.members=2",
        "trainer.max_epochs=1",
    ]
    return _train_and_export(tmp_path_factory, "value", overrides)


@pytest.fixture(scope="module")
def segments_run(tmp_path_factory) -> tuple[Path, Path]:
    """Three segments, the clustering head started from k-means after one pretraining epoch."""
    overrides = ["experiment=segments_csv", "model.k=3", "model.pretrain_epochs=1", "trainer.max_epochs=2"]
    return _train_and_export(tmp_path_factory, "segments", overrides)


@pytest.fixture(scope="module")
def new_log(tmp_path_factory) -> Path:
    """Thirty new customers' whole year (lines after the cutoff included: they must not count)."""
    path = tmp_path_factory.mktemp("new") / "new.csv"
    generate_transactions(30, seed=7).assign(customer_id=lambda f: "N" + f["customer_id"]).to_csv(
        path, index=False
    )
    return path


def _predicted(run: Path, log: Path, output_dir: Path) -> pd.DataFrame:
    """adlab-predict of `log` with the run's checkpoint (the module itself, in torch)."""
    overrides = [
        f"ckpt_path={run / 'checkpoints' / 'best.ckpt'}",
        f"data.source.path={log}",
        "format=csv",
        "extras.print_config=false",
    ]
    return pd.read_csv(
        predict(compose_config("predict", overrides, output_dir))[0], dtype={"customer_id": str}
    )


def test_value_package_rates_new_customers_as_the_module_does(value_run, new_log, tmp_path):
    run, package = value_run
    pre = json.loads((package / "preprocessing.json").read_text())
    assert pre["sequence"]["read"] and pre["log"]["customer"] == "customer_id" and pre["cutoff"] == CUTOFF
    assert [f["name"] for f in pre["features"]][:3] == ["frequency", "recency_days", "tenure_days"]
    scores = score_log_file(load_customer_scorer(package), new_log, tmp_path / "ratings.csv")
    rated = pd.read_csv(tmp_path / "ratings.csv", dtype={"customer_id": str})
    assert list(rated.columns) == ["customer_id", "predicted_spend", "buy_probability", "decile", "tier"]
    expected = (
        _predicted(run, new_log, tmp_path / "predict").set_index("customer_id").loc[rated["customer_id"]]
    )
    # ONNX Runtime vs torch on the same features: equal up to float32 rounding and the 2/4 decimals written
    np.testing.assert_allclose(rated["predicted_spend"], expected["predicted_spend"], rtol=1e-4, atol=0.011)
    np.testing.assert_allclose(rated["buy_probability"], expected["buy_probability"], atol=1.1e-4)
    # deciles and tiers against the run's test customers, not ranks within the file
    test_spend = pd.read_parquet(run / "predictions.parquet")["predicted_spend"].to_numpy()
    share_above = (test_spend[None, :] > rated["predicted_spend"].to_numpy()[:, None]).mean(axis=1)
    assert (np.abs(rated["decile"] - (1 + np.floor(share_above * 10))) <= 1).all()
    assert set(rated["tier"]) <= {"A", "B", "C"} and scores.as_of == pd.Timestamp(CUTOFF)


def test_rating_thresholds_place_spends_as_documented():
    rating = {"decile_thresholds": list(np.arange(90, 0, -10.0)), "tier_thresholds": [80.0, 50.0]}
    decile, tier = rate(np.array([95.0, 90.0, 89.9, 50.0, 5.0]), rating)
    assert decile.tolist() == [1, 1, 2, 5, 10] and tier.tolist() == ["A", "A", "A", "B", "C"]


def test_segments_package_assigns_new_customers_as_the_module_does(segments_run, new_log, tmp_path):
    run, package = segments_run
    score_log_file(load_customer_scorer(package), new_log, tmp_path / "segments.parquet")
    assigned = pd.read_parquet(tmp_path / "segments.parquet")
    assert list(assigned.columns) == ["customer_id", "segment", "segment_name", "distance"]
    expected = (
        _predicted(run, new_log, tmp_path / "predict").set_index("customer_id").loc[assigned["customer_id"]]
    )
    assert (assigned["segment"].to_numpy() == expected["segment"].to_numpy()).all()
    assert (assigned["segment_name"].to_numpy() == expected["segment_name"].to_numpy()).all()
    np.testing.assert_allclose(assigned["distance"], expected["distance"], atol=2e-4)


def test_features_as_of_a_later_day_are_the_history_moved_back(value_run, tmp_path):
    """as_of=DAY scores each customer's lines up to DAY as training scored lines up to its cutoff."""
    scorer = load_customer_scorer(value_run[1])
    log = generate_transactions(30, seed=3)
    later = pd.Timestamp(HOLDOUT_END)
    log.to_csv(tmp_path / "year.csv", index=False)
    moved = log.assign(date=(pd.to_datetime(log["date"]) - (later - scorer.cutoff)).dt.date.astype(str))
    moved.to_csv(tmp_path / "moved.csv", index=False)
    as_of = score_log_file(scorer, tmp_path / "year.csv", tmp_path / "a.csv", HOLDOUT_END)
    shifted = score_log_file(scorer, tmp_path / "moved.csv", tmp_path / "b.csv")
    assert as_of.as_of == later
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "a.csv"), pd.read_csv(tmp_path / "b.csv"))
    assert len(shifted.customers) == 30 and not shifted.not_scored


def test_a_customer_with_only_refunds_by_the_cutoff_is_not_scored():
    log = pd.DataFrame(
        {
            "customer": ["a", "b", "b"],
            "date": pd.to_datetime(["2020-01-01", "2020-01-02", "2020-01-03"]),
            "amount": [-5.0, 3.0, -1.0],
        }
    )
    features, sequence = customer_summary(log, pd.Timestamp("2020-02-01"), "week", 5)
    assert (
        features.index.tolist() == ["b"] and features.loc["b", "refunds"] == 1 and sequence.shape == (1, 5, 3)
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: f.drop(columns=["amount"]), r"input=.*: no amount 'amount' column; the file has"),
        (lambda f: f.assign(date="31/12/2019"), r"input=.*date column 'date' has values that are not dates"),
        (
            lambda f: f.assign(amount="12,50"),
            r"input=.*amount column 'amount' has \d+ non-numeric values",
        ),
        (
            lambda f: f.assign(date="2021-01-01"),
            r"input=.*no purchase on or before 2020-06-29 \(the file starts",
        ),
    ],
)
def test_bad_logs_are_refused_naming_the_input(value_run, tmp_path, change, message):
    change(generate_transactions(10, seed=1)).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(AdlabError, match=message):
        score_log_file(load_customer_scorer(value_run[1]), tmp_path / "bad.csv", tmp_path / "out.csv")
    assert not (tmp_path / "out.csv").exists()


def test_adlab_score_job_says_what_it_rated_and_who_it_did_not(value_run, new_log, tmp_path, capsys):
    later = generate_transactions(3, seed=2).assign(customer_id="late", date="2020-08-01")
    pd.concat([pd.read_csv(new_log), later]).to_csv(tmp_path / "log.csv", index=False)
    overrides = [
        f"model_path={value_run[1]}",
        f"input={tmp_path / 'log.csv'}",
        f"output={tmp_path / 'r.csv'}",
    ]
    score_job(compose_config("score", overrides, tmp_path / "job"), load_package(value_run[1]))
    printed = capsys.readouterr().out
    assert "rated 30 customers as of 2020-06-29" in printed and (tmp_path / "r.csv").is_file()
    assert "not scored: 1 customers with no purchase on or before 2020-06-29" in printed
    with pytest.raises(AdlabError, match=r"keep: not used when scoring customers"):
        score_job(
            compose_config("score", [*overrides, "keep=[amount]"], tmp_path / "j2"),
            load_package(value_run[1]),
        )


def test_adlab_score_cli_says_a_mistake_on_one_line_exit_2(value_run, tmp_path):
    generate_transactions(5).drop(columns=["customer_id"]).to_csv(tmp_path / "bad.csv", index=False)
    failed = run_module(
        "adlab.serving.batch", f"model={value_run[1]}", f"input={tmp_path / 'bad.csv'}",
        f"output={tmp_path / 'x.csv'}", f"hydra.run.dir={tmp_path / 'h'}",
    )  # fmt: skip
    assert failed.returncode == 2 and "Traceback" not in failed.stderr
    assert (
        len(failed.stderr.strip().splitlines()) == 1 and "no customer 'customer_id' column" in failed.stderr
    )
    assert not (tmp_path / "x.csv").exists()


@pytest.fixture(scope="module")
def value_client(value_run) -> TestClient:
    return TestClient(create_app(value_run[1], max_body_bytes=100_000, max_batch_rows=50))


def _lines(log: pd.DataFrame) -> list[dict]:
    return [
        {
            "customer_id": row.customer_id,
            "date": row.date,
            "amount": row.amount,
            "quantity": int(row.quantity),
        }
        for row in log.itertuples()
    ]


def test_service_answers_per_customer_what_adlab_score_writes(value_client, value_run, tmp_path):
    log = generate_transactions(4, seed=5)
    log.to_csv(tmp_path / "log.csv", index=False)
    score_log_file(load_customer_scorer(value_run[1]), tmp_path / "log.csv", tmp_path / "r.csv")
    written = pd.read_csv(tmp_path / "r.csv", dtype={"customer_id": str})
    answer = value_client.post("/score", json={"transactions": _lines(log)})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert [c["customer"] for c in body["customers"]] == written["customer_id"].tolist()
    assert [c["predicted_spend"] for c in body["customers"]] == written["predicted_spend"].tolist()
    assert [c["tier"] for c in body["customers"]] == written["tier"].tolist()
    assert body["as_of"] == CUTOFF and body["not_scored"] == []
    metadata = value_client.get("/metadata").json()
    assert metadata["columns"] == {
        "customer": "customer_id",
        "date": "date",
        "amount": "amount",
        "quantity": "quantity",
    }
    assert metadata["answers"] == ["predicted_spend", "buy_probability", "decile", "tier"]


def test_service_refuses_requests_that_do_not_fit_with_a_4xx(value_client):
    line = {"customer_id": "a", "date": "2020-03-01", "amount": 10.0, "quantity": 1}
    cases = [
        ({"transactions": []}, 422, "transactions"),
        ({"transactions": [{**line, "date": "2020-02-30"}]}, 422, "date"),
        ({"transactions": [{**line, "amount": "ten"}]}, 422, "amount"),
        ({"transactions": [{**line, "amount": True}]}, 422, "amount"),
        ({"transactions": [{**line, "colour": "red"}]}, 422, "colour"),
        ({"transactions": [line], "as_of": "soon"}, 422, "as_of"),
        ({"transactions": [line] * 51}, 413, "transactions"),
    ]
    for body, status, key in cases:
        answer = value_client.post("/score", json=body)
        assert (answer.status_code, answer.json().get("feature")) == (status, key), body
    late = value_client.post("/score", json={"transactions": [{**line, "date": "2020-07-01"}]}).json()
    assert late["customers"] == [] and late["not_scored"] == ["a"]


def test_schemathesis_finds_no_server_error_on_either_kind_of_customers_package(value_run, segments_run):
    statuses: collections.Counter = collections.Counter()
    failures: list[str] = []
    for _, package in (value_run, segments_run):
        api = schemathesis.openapi.from_asgi("/openapi.json", create_app(package), config=FUZZ_CONFIG)
        for result in api.get_all_operations():
            if result.ok().method.upper() == "POST":
                for mode in ("positive", "negative"):
                    fuzz(result.ok(), mode, 12, statuses, failures)
    assert failures == []
    assert not any(status >= 500 for status in statuses) and statuses[200] >= 20 and statuses[422] >= 20


def test_a_package_of_another_task_is_refused(value_run):
    package = load_customer_scorer(value_run[1]).package
    other = dataclasses.replace(package, preprocessing={**package.preprocessing, "task": "recommendation"})
    with pytest.raises(AdlabError, match="not a package of customers from transactions"):
        CustomerScorer(other)


def test_requests_carry_iso_days_whatever_the_training_files_date_format(value_run, tmp_path):
    """A model trained on day-first dates reads files written that way, and JSON requests as ISO days."""
    package = load_customer_scorer(value_run[1]).package
    log_format = {**package.preprocessing["log"], "date_format": "%d/%m/%Y"}
    dayfirst = CustomerScorer(
        dataclasses.replace(package, preprocessing={**package.preprocessing, "log": log_format})
    )
    log = generate_transactions(4, seed=5)
    log.to_csv(tmp_path / "iso.csv", index=False)
    log.assign(date=pd.to_datetime(log["date"]).dt.strftime("%d/%m/%Y")).to_csv(
        tmp_path / "dmy.csv", index=False
    )
    score_log_file(dayfirst, tmp_path / "dmy.csv", tmp_path / "dmy_out.csv")
    score_log_file(load_customer_scorer(value_run[1]), tmp_path / "iso.csv", tmp_path / "iso_out.csv")
    pd.testing.assert_frame_equal(
        pd.read_csv(tmp_path / "dmy_out.csv"), pd.read_csv(tmp_path / "iso_out.csv")
    )
    answer = TestClient(create_app(dayfirst)).post("/score", json={"transactions": _lines(log)})
    assert answer.status_code == 200 and len(answer.json()["customers"]) == 4


def test_segments_of_tabular_data_are_refused_by_the_exporter_on_one_line(tmp_path):
    from adlab.data.features import TabularMeta
    from adlab.harness.checkpoints import StoredRun
    from adlab.harness.customer_export import stored_scaling

    stored = StoredRun(tmp_path / "best.ckpt", {}, TabularMeta(dataset="coil2000", numeric=["a"]), {}, {}, {})
    with pytest.raises(
        AdlabError, match=r"best.ckpt: the segments model of tabular data cannot be exported yet"
    ):
        stored_scaling(stored, "the segments model")


def test_serving_a_customers_package_loads_no_torch(value_run):
    """The customer scorer computes features with pandas and runs ONNX Runtime: no torch, no Lightning."""
    import subprocess
    import sys

    code = "\n".join(
        [
            "import sys",
            "from starlette.testclient import TestClient",
            "from adlab.serving.app import create_app",
            f"client = TestClient(create_app({str(value_run[1])!r}))",
            "line = {'customer_id': 'a', 'date': '2020-03-01', 'amount': 10.0, 'quantity': 1}",
            "assert client.post('/score', json={'transactions': [line]}).status_code == 200",
            "print(sorted(name for name in ('torch', 'lightning') if name in sys.modules))",
        ]
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    assert loaded.stdout.strip().splitlines()[-1] == "[]"
