"""Export parity, batch scoring of files and the HTTP service, on a tiny CoIL-shaped checkpoint."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from dataclasses import dataclass
from typing import ClassVar

import lightning as L
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import torch
from fastapi.testclient import TestClient
from safetensors.torch import load_file

from adlab.data.features import DataMeta, TabularFeatures
from adlab.errors import AdlabError
from adlab.export import export_checkpoint
from adlab.harness.checkpoints import StoredRun, load_module
from adlab.harness.exporting import export_spec
from adlab.harness.io import atomic_write_text
from adlab.serving.app import create_app
from adlab.serving.batch import score_file
from adlab.serving.schema import TabularSchema
from adlab.serving.scorer import load_scorer
from adlab.train import train
from tests.helpers import TINY, compose_config

ID = "customer_id"


@pytest.fixture(scope="module")
def run(tmp_path_factory, coil_data_dir):
    """A propensity checkpoint trained on the tiny CoIL-like data (as the `train_config` fixture composes it)."""
    output = tmp_path_factory.mktemp("serving_run")
    cfg = compose_config(
        "train",
        [
            f"paths.data_dir={coil_data_dir}",
            *TINY,
            "experiment=propensity_coil",
            "fit=plain",
            "baselines=none",
        ],
        output,
    )
    train(cfg)
    return output


@pytest.fixture(scope="module")
def packages(run, tmp_path_factory):
    """The checkpoint exported to ONNX and TorchScript."""
    root = tmp_path_factory.mktemp("packages")
    best = run / "checkpoints" / "best.ckpt"
    return {fmt: export_checkpoint(best, fmt, root / fmt) for fmt in ("onnx", "torchscript")}


@pytest.fixture(scope="module")
def held_out(run, coil_data_dir):
    """The official test customers (raw values, never seen in training) and PyTorch's probabilities for them."""
    frame = pd.read_parquet(coil_data_dir / "coil2000" / "coil2000.parquet")
    frame = frame[frame["split"] == "test"].drop(columns=["split"]).reset_index(drop=True)
    stored = StoredRun.read(run / "checkpoints" / "best.ckpt")
    model = load_module(stored)
    categorical, numeric = TabularFeatures.from_dict(stored.preprocessing).transform(frame)  # as in training
    with torch.inference_mode():
        expected = torch.sigmoid(model(torch.from_numpy(categorical), torch.from_numpy(numeric))).numpy()
    return frame, expected


def features(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.drop(columns=[ID, "CARAVAN"])


def read_only(frame: pd.DataFrame, package) -> pd.DataFrame:
    """The columns the package's model reads: what a request carries (the preset reads 12 of 85)."""
    schema = TabularSchema(json.loads((package / "preprocessing.json").read_text()))
    return frame[schema.required]


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_matches_pytorch_on_held_out_rows(packages, held_out, fmt):
    frame, expected = held_out
    scorer = load_scorer(packages[fmt], allow_torchscript=fmt == "torchscript")
    scores = scorer.score_table(pa.Table.from_pandas(features(frame), preserve_index=False))
    assert scores.shape == expected.shape == (300,)
    assert np.max(np.abs(scores - expected)) <= 1e-5
    records = read_only(frame, packages[fmt]).head(20).to_dict("records")
    single = np.array([scorer.score_record(record) for record in records])
    assert np.max(np.abs(single - expected[:20])) <= 1e-5
    assert np.max(np.abs(scorer.score_records(records) - expected[:20])) <= 1e-5
    metadata = json.loads((packages[fmt] / "metadata.json").read_text())
    preprocessing = json.loads((packages[fmt] / "preprocessing.json").read_text())
    assert metadata["model_format"] == fmt and metadata["parity"]["max_rel_error"] <= 1e-5
    onnx_metadata = json.loads((packages["onnx"] / "metadata.json").read_text())
    assert metadata["model_version"] == onnx_metadata["model_version"]  # one checkpoint, one version
    assert "test/auroc" in metadata["training_metrics"]
    assert preprocessing["version"] == 1 and len(preprocessing["features"]) == 85
    assert preprocessing["graph"] == "unfolded"  # periodic embeddings are not folded
    assert preprocessing["features"][0]["vocabulary"][0].startswith("subtype")
    # large batches go through the graph in calls of at most graph_batch_rows rows, with the same scores
    assert 256 <= preprocessing["graph_batch_rows"] <= 65536
    scorer.graph_rows = 7
    split = scorer.score_table(pa.Table.from_pandas(features(frame), preserve_index=False))
    assert np.max(np.abs(split - expected)) <= 1e-5


def test_bidding_scorer_exports_folded_and_matches_pytorch(coil_data_dir, tmp_path):
    """propensity_coil_rtb (plain numbers, one hidden layer, a column selection) exports as the folded
    graph; it must still score held-out rows as the model does."""
    run = tmp_path / "rtb"
    overrides = [f"paths.data_dir={coil_data_dir}", *TINY, "experiment=propensity_coil_rtb", "baselines=none"]
    train(compose_config("train", overrides, run))
    best = run / "checkpoints" / "best.ckpt"
    stored = StoredRun.read(best)
    assert type(export_spec(load_module(stored), stored).graph).__name__ == "FoldedEnsembleGraph"
    package = export_checkpoint(best, "onnx", tmp_path / "package")
    assert json.loads((package / "preprocessing.json").read_text())["graph"] == "folded"
    scorer = load_scorer(package)
    frame = pd.read_parquet(coil_data_dir / "coil2000" / "coil2000.parquet")
    frame = frame[frame["split"] == "test"].drop(columns=["split"]).reset_index(drop=True)
    categorical, numeric = TabularFeatures.from_dict(stored.preprocessing).transform(frame)
    with torch.inference_mode():
        expected = torch.sigmoid(
            load_module(stored)(torch.from_numpy(categorical), torch.from_numpy(numeric))
        ).numpy()
    scores = scorer.score_table(pa.Table.from_pandas(features(frame), preserve_index=False))
    assert np.max(np.abs(scores - expected)) <= 1e-5
    single = np.array([scorer.score_record(r) for r in read_only(frame, package).head(20).to_dict("records")])
    assert np.max(np.abs(single - expected[:20])) <= 1e-5


def test_missing_numerics_take_the_training_fill(run, packages, held_out):
    # a model trained with data.source.impute: serving fills missing numerics as training did
    preprocessing = json.loads((packages["onnx"] / "preprocessing.json").read_text())
    schema = TabularSchema({**preprocessing, "allow_missing_numeric": True})
    frame = features(held_out[0]).head(30).copy()
    frame.iloc[::3, frame.columns.get_loc("NUM01")] = np.nan  # two columns the model reads
    frame.iloc[1::4, frame.columns.get_loc(schema.required[-1])] = np.nan
    state = TabularFeatures.from_dict(StoredRun.read(run / "checkpoints" / "best.ckpt").preprocessing)
    expected = state.transform(frame)[1]
    mean, scale = np.asarray(state.mean), np.asarray(state.scale)
    table_numeric = schema.encode_table(pa.Table.from_pandas(frame, preserve_index=False))[1]
    read = frame[schema.required]
    records = read.astype(object).where(read.notna(), None).to_dict("records")
    record_numeric = schema.encode_records(records)[1]
    # the columns the model reads are filled as in training (the others hold placeholders it never reads)
    positions = [schema.numeric.index(name) for name in schema.required if name in schema.numeric]
    for numeric in (table_numeric, record_numeric):
        scaled = (numeric - mean) / scale
        assert np.max(np.abs(scaled[:, positions] - expected[:, positions])) <= 1e-5


def test_export_refuses_what_is_not_a_checkpoint(tmp_path):
    bad = tmp_path / "model.ckpt"
    bad.write_text("not a checkpoint")
    with pytest.raises(AdlabError, match="model.ckpt"):
        export_checkpoint(bad, "onnx", tmp_path / "out")
    with pytest.raises(AdlabError, match="format="):
        export_checkpoint(bad, "tflite", tmp_path / "out")


@pytest.fixture
def umask():
    """`umask(mask)` sets the process umask for the test; the old one comes back afterwards."""
    previous = os.umask(0o022)
    yield os.umask
    os.umask(previous)


def test_export_writes_safetensors_weights_and_group_readable_files(run, tmp_path, umask):
    umask(0o022)
    best = run / "checkpoints" / "best.ckpt"
    package = export_checkpoint(best, "onnx", tmp_path / "package", weights="safetensors")
    metadata = json.loads((package / "metadata.json").read_text())
    assert metadata["weights_file"] == "model.safetensors" and metadata["parity"]["max_rel_error"] <= 1e-5
    weights = load_file(package / "model.safetensors")
    stored = StoredRun.read(best)
    assert set(weights) == set(stored.state_dict)
    assert all(torch.equal(weights[name], stored.state_dict[name]) for name in weights)
    modes = {path.name: stat.S_IMODE(path.stat().st_mode) for path in package.iterdir() if path.is_file()}
    assert {"model.onnx", "model.safetensors", "metadata.json", "preprocessing.json"} <= set(modes)
    assert set(modes.values()) == {0o644}, modes
    with pytest.raises(AdlabError, match="weights='pickle'"):
        export_checkpoint(best, "onnx", tmp_path / "other", weights="pickle")


def test_atomic_writes_take_the_mode_a_plain_open_would(tmp_path, umask):
    for mask, mode in ((0o022, 0o644), (0o027, 0o640), (0o002, 0o664)):
        umask(mask)
        path = atomic_write_text(tmp_path / f"written-{mask:o}.json", "{}")
        assert stat.S_IMODE(path.stat().st_mode) == mode
        assert not list(tmp_path.glob(".*.tmp"))


def test_torchscript_packages_need_an_explicit_opt_in(packages, monkeypatch):
    """A TorchScript file is code (`torch.jit.load` runs it): refused unless the caller opts in; the
    service, which runs ONNX only, refuses it before loading anything."""

    def never(*args, **kwargs):
        raise AssertionError("torch.jit.load ran")

    monkeypatch.setattr(torch.jit, "load", never)
    with pytest.raises(AdlabError, match="runs code from model.pt when loaded.*allow_torchscript=true"):
        load_scorer(packages["torchscript"])
    with pytest.raises(AdlabError, match="the service runs ONNX Runtime"):
        create_app(packages["torchscript"])


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_score_file_keeps_row_ids_in_small_chunks(packages, held_out, tmp_path, suffix):
    frame, expected = held_out
    source = tmp_path / f"customers.{suffix}"
    getattr(frame, f"to_{suffix}")(source, index=False)
    output = tmp_path / f"scores.{suffix}"
    rows = score_file(load_scorer(packages["onnx"]), source, output, keep=["CARAVAN"], chunk_rows=64)
    scored = pd.read_csv(output) if suffix == "csv" else pd.read_parquet(output)
    assert rows == 300 and list(scored.columns) == [ID, "CARAVAN", "score"]
    assert (scored[ID].to_numpy() == frame[ID].to_numpy()).all()
    assert np.max(np.abs(scored["score"].to_numpy() - expected)) <= 1e-5


def _broken(frame: pd.DataFrame, problem: str) -> pd.DataFrame:
    frame = frame.drop(columns=["CARAVAN"])
    if problem == "missing":
        return frame.drop(columns=["NUM01"])
    if problem == "extra":
        return frame.assign(coupon="yes")
    if problem == "text in a numeric column":
        values = frame["NUM01"].astype(object)
        values.iloc[250] = "high"  # past the first chunk
        return frame.assign(NUM01=values)
    return frame.assign(MOSTYPE=np.arange(len(frame)))  # numbers in a text category


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
@pytest.mark.parametrize(
    "problem, column",
    [
        ("missing", "NUM01"),
        ("extra", "coupon"),
        ("text in a numeric column", "NUM01"),
        ("numbers as category", "MOSTYPE"),
    ],
)
def test_score_file_names_the_bad_column(packages, held_out, tmp_path, suffix, problem, column):
    source = tmp_path / f"bad.{suffix}"
    broken = _broken(held_out[0], problem)
    if suffix == "parquet" and problem == "text in a numeric column":
        broken["NUM01"] = broken["NUM01"].astype(str)  # parquet columns have one type
    getattr(broken, f"to_{suffix}")(source, index=False)
    output = tmp_path / "scores.csv"
    with pytest.raises(AdlabError, match=f"column '{column}'"):
        score_file(load_scorer(packages["onnx"]), source, output, chunk_rows=100)
    assert not output.exists() and not any(tmp_path.glob(".scores*"))


def test_adlab_score_exits_2_with_one_line(packages, held_out, tmp_path):
    source = tmp_path / "bad.csv"
    _broken(held_out[0], "extra").to_csv(source, index=False)
    result = subprocess.run(
        [sys.executable, "-m", "adlab.serving.batch", f"model={packages['onnx']}", f"input={source}",
         f"output={tmp_path / 'scores.csv'}", f"hydra.run.dir={tmp_path / 'job'}"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "column 'coupon'" in lines[0]


@pytest.fixture(scope="module")
def client(packages):
    return TestClient(create_app(packages["onnx"], max_body_bytes=100_000, max_batch_rows=50))


def test_service_health_and_metadata(client):
    health = client.get("/health")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    metadata = client.get("/metadata").json()
    assert metadata["model_version"] == health.json()["model_version"]
    # the preset's model reads 12 of the 85 columns: a request carries those (plus an optional id)
    assert len(metadata["features"]) == 12 and metadata["features"][0]["name"] == "MOSTYPE"
    assert len(metadata["unread_features"]) == 73 and metadata["id_column"] == ID
    assert "test/auroc" in metadata["training_metrics"]


def test_service_scores_valid_requests(client, held_out, packages):
    frame, expected = held_out
    records = read_only(frame, packages["onnx"]).head(40).to_dict("records")
    one = client.post("/score", json=records[0])
    assert one.status_code == 200
    assert one.json()["score"] == pytest.approx(float(expected[0]), abs=1e-5)
    batch = client.post("/score/batch", json={"rows": records})
    assert batch.status_code == 200
    assert np.max(np.abs(np.array(batch.json()["scores"]) - expected[:40])) <= 1e-5
    unseen = dict(records[0], MOSTYPE="a subtype never seen in training")
    assert client.post("/score", json=unseen).status_code == 200


def test_service_rejects_malformed_requests_with_422(client, held_out, packages):
    record = read_only(held_out[0], packages["onnx"]).iloc[0].to_dict()
    cases = {
        "not json": (b"{not json", None),
        "not utf-8": (b'{"MOSTYPE": "\xff"}', None),
        "empty": (b"", None),
        "a list": (b"[1, 2]", None),
        "too deep": (b"[" * 50_000 + b"]" * 50_000, None),
        "missing": (json.dumps({k: v for k, v in record.items() if k != "NUM01"}).encode(), "NUM01"),
        "extra": (json.dumps(dict(record, coupon=1)).encode(), "coupon"),
        "text as number": (json.dumps(dict(record, NUM01="4")).encode(), "NUM01"),
        "bool as number": (json.dumps(dict(record, NUM01=True)).encode(), "NUM01"),
        "null number": (json.dumps(dict(record, NUM01=None)).encode(), "NUM01"),
        "NaN": (json.dumps(dict(record, NUM01=float("nan"))).encode(), "NUM01"),
        "huge integer": (json.dumps(dict(record, NUM01=10**400)).encode(), "NUM01"),
        "beyond float32": (json.dumps(dict(record, NUM01=1e39)).encode(), "NUM01"),
        "number as category": (json.dumps(dict(record, MOSTYPE=3)).encode(), "MOSTYPE"),
        "list as category": (json.dumps(dict(record, MOSTYPE=["a"])).encode(), "MOSTYPE"),
    }
    for name, (body, feature) in cases.items():
        response = client.post("/score", content=body, headers={"content-type": "application/json"})
        assert response.status_code == 422, (name, response.status_code, response.text)
        assert response.json().get("feature") == feature, name
    bad_batches = [
        {"rows": [record, dict(record, NUM01="x")]},
        {"rows": "all"},
        {"customers": [record]},
        [record],
    ]
    for body in bad_batches:
        response = client.post("/score/batch", json=body)
        assert response.status_code == 422, (body, response.text)
    assert "row 1" in client.post("/score/batch", json=bad_batches[0]).json()["detail"]


def test_service_refuses_oversized_requests_with_413(client, held_out, packages):
    record = read_only(held_out[0], packages["onnx"]).iloc[0].to_dict()
    padded = json.dumps(dict(record, padding="x" * 200_000)).encode()
    assert client.post("/score", content=padded).status_code == 413
    chunked = client.post("/score", content=iter([b" " * 60_000, b" " * 60_000]))  # no Content-Length
    assert chunked.status_code == 413
    assert client.post("/score/batch", json={"rows": [record] * 51}).status_code == 413
    assert client.get("/health").status_code == 200  # still serving


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_image_classifier_exports_with_its_scaling_in_the_graph(tmp_path, fmt):
    imagery = pytest.importorskip("adlab.families.imagery.module")
    meta = {
        "kind": "images", "dataset": "toy", "classes": ["shirt", "shoe", "bag"], "class_keys": ["0", "1", "2"],
        "channels": 1, "image_size": [28, 28], "mean": [0.29], "std": [0.35],
    }  # fmt: skip
    model = imagery.ImageryModule(meta).eval()
    checkpoint = tmp_path / "imagery.ckpt"
    torch.save(
        {
            "state_dict": model.state_dict(),
            "adlab_config": {
                "experiment_name": "toy",
                "model": {"_target_": "adlab.families.imagery.module.ImageryModule"},
            },
            "adlab_data": {"meta": meta, "preprocessing": {}},
        },
        checkpoint,
    )
    package = export_checkpoint(checkpoint, fmt, tmp_path / fmt)
    images = torch.randint(
        0, 256, (5, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(1)
    )
    with torch.inference_mode():
        expected = torch.softmax(model(model.prepare(images)), dim=-1).numpy()
    from adlab.serving.backends import load_backend
    from adlab.serving.package import load_package

    exported = load_backend(load_package(package), allow_torchscript=True).run_raw([images.numpy()])[0]
    assert exported.shape == (5, 3) and np.max(np.abs(exported - expected)) <= 1e-5
    assert json.loads((package / "preprocessing.json").read_text())["classes"] == meta["classes"]
    with pytest.raises(AdlabError, match="images"):
        load_scorer(package)  # files and the service take tabular scorers


@dataclass
class EmbeddingMeta(DataMeta):
    """The meta of a made-up kind of data, for a family without a dedicated exporter."""

    kind: ClassVar[str] = "embeddings"
    width: int = 0


class TinyScorer(L.LightningModule):
    """A family without a dedicated exporter: exported from its `example_input_array` and `forward`."""

    def __init__(self, meta: EmbeddingMeta):
        super().__init__()
        self.layer = torch.nn.Linear(meta.width, 3)
        self.example_input_array = torch.zeros(1, meta.width)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.layer(features))


def test_other_families_export_from_their_example_input(tmp_path):
    meta = EmbeddingMeta(dataset="toy", width=4)
    model = TinyScorer(meta).eval()
    checkpoint = tmp_path / "tiny.ckpt"
    torch.save(
        {
            "state_dict": model.state_dict(),
            "adlab_config": {"model": {"_target_": f"{__name__}.TinyScorer"}},
            "adlab_data": {"meta": meta.to_dict(), "preprocessing": {"scale": [1.0, 2.0]}},
        },
        checkpoint,
    )
    package = export_checkpoint(checkpoint, "onnx", tmp_path / "onnx")
    from adlab.serving.backends import load_backend
    from adlab.serving.package import load_package

    loaded = load_package(package)
    rows = torch.randn(7, 4, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        expected = model(rows).numpy()
    assert np.max(np.abs(load_backend(loaded).run_raw([rows.numpy()])[0] - expected)) <= 1e-5
    assert loaded.metadata["inputs"] == ["features"]
    assert loaded.preprocessing["state"] == {"scale": [1.0, 2.0]}
