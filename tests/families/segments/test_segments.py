"""Segments as a user runs them (segments_csv end to end, eval, CLI errors), the guards and the metrics."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from adlab.data.features import TabularMeta, TrainSplit, TransactionsMeta
from adlab.errors import AdlabError
from adlab.eval import evaluate
from adlab.families.segments.baselines import RFMCellsBaseline
from adlab.families.segments.metrics import buy_rate_spread, eta_squared, segment_metrics, segment_shares
from adlab.families.segments.module import SegmentModule
from adlab.families.segments.report import name_segments, segment_profile
from adlab.train import train
from tests.families.segments.conftest import CUTOFF, HOLDOUT_END
from tests.helpers import compose_config, purchase_log_overrides, run_module


def _overrides(path: Path, tmp_path: Path) -> list[str]:
    return ["experiment=segments_csv", *purchase_log_overrides(path, tmp_path, CUTOFF, HOLDOUT_END)]


def test_segments_csv_fast_dev_run(segments_csv, tmp_path):
    cfg = compose_config("train", [*_overrides(segments_csv, tmp_path), "debug=fdr"], tmp_path / "run")
    metrics = train(cfg)
    for key in ("eta2_spend", "buy_rate_spread", "min_share", "silhouette", "ari_bootstrap"):
        assert f"test/{key}" in metrics and f"baseline/kmeans/test/{key}" in metrics
        assert f"baseline/gmm/test/{key}" in metrics and f"baseline/rfm/test/{key}" in metrics
    assert 0 <= metrics["test/eta2_spend"] <= 1


def test_segments_csv_writes_segments_profiles_and_eval_reproduces_them(segments_csv, tmp_path, wandb_media):
    cfg = compose_config(
        "train",
        [
            *_overrides(segments_csv, tmp_path),
            "model.k=3",
            "model.pretrain_epochs=2",
            "trainer.max_epochs=4",
            "logger=wandb",
        ],
        tmp_path / "run",
    )
    metrics = train(cfg)
    run = Path(cfg.paths.output_dir)
    written = json.loads((run / "metrics.json").read_text())
    assert written["test/min_share"] > 0 and written["test/segments"] == 3
    segments = pd.read_parquet(run / "predictions.parquet")
    assert len(segments) == 60 and segments["customer_id"].str.startswith("C").all()
    assert set(segments["segment"]) <= {0, 1, 2} and (segments["distance"] >= 0).all()
    profiles = pd.read_csv(run / "profiles.csv")
    assert profiles["size"].sum() == 60 and profiles["name"].str.len().gt(0).all()
    assert {"top_features", "buy_rate", "mean_holdout_spend"} <= set(profiles.columns)
    # each segment's top features with their lift over the population, and a name made from them
    assert profiles["top_features"].str.count("lift").eq(3).all() and profiles["name"].is_unique
    assert profiles["buy_rate"].between(0, 1).all() and (profiles["mean_holdout_spend"] >= 0).all()
    assert {"tables/profiles", "tables/segments", "plots/segments_map"} <= set(wandb_media)
    assert len(pd.read_csv(run / "segments.csv")) == 60
    assert (run / "plots" / "segments_map.png").is_file()
    # the segments' names travel in the checkpoint
    assert set(segments["segment_name"]) <= set(profiles["name"])
    again = evaluate(
        compose_config(
            "eval",
            [f"ckpt_path={run / 'checkpoints' / 'best.ckpt'}", "extras.print_config=false"],
            tmp_path / "eval",
        )
    )
    assert again["test/eta2_spend"] == pytest.approx(metrics["test/eta2_spend"], abs=1e-6)


def test_cli_bad_k_is_one_line_and_exit_2(segments_csv, tmp_path):
    result = run_module(
        "adlab.train", *_overrides(segments_csv, tmp_path), "model.k=1", f"hydra.run.dir={tmp_path / 'cli'}"
    )
    assert result.returncode == 2
    lines = [line for line in result.stderr.strip().splitlines() if "model.k=1" in line]
    assert len(lines) == 1 and "Traceback" not in result.stderr


def test_a_log_with_no_usable_column_is_one_line_naming_the_file(tmp_path):
    path = tmp_path / "orders.csv"
    pd.DataFrame({"when": ["2020-01-02", "2020-02-03"], "what": ["cd", "dvd"]}).to_csv(path, index=False)
    cfg = compose_config("train", _overrides(path, tmp_path), tmp_path / "run")
    with pytest.raises(AdlabError, match=f"data.source.path={path}: no customer 'customer_id'") as error:
        train(cfg)
    assert "\n" not in str(error.value)
    assert not (Path(cfg.paths.output_dir) / "metrics.json").exists()


# ------------------------------------------------------------------ guards
def _meta(features: int = 3) -> TransactionsMeta:
    return TransactionsMeta(dataset="t", features=[f"f{i}" for i in range(features)])


def _split(values: torch.Tensor) -> TrainSplit:
    return TrainSplit(
        tensors={"features": values, "target": torch.zeros(len(values))}, meta=_meta(values.shape[1])
    )


@pytest.mark.parametrize(
    ("options", "expected"),
    [({"k": 1}, "model.k=1"), ({"k": 60, "min_segment_share": 0.02}, "exceeds all customers")],
)
def test_bad_k_is_refused(options, expected):
    with pytest.raises(AdlabError, match=expected):
        SegmentModule(_meta(), **options)


def test_more_segments_than_customers_or_constant_features_are_refused():
    with pytest.raises(AdlabError, match="at most the 5 train customers"):
        SegmentModule(_meta(), k=8).fit_to_train(_split(torch.randn(5, 3)))
    with pytest.raises(AdlabError, match="fewer than k=8"):
        # 30 customers cannot hold 8 segments of at least 12% (4 customers) each
        SegmentModule(_meta(), k=8, min_segment_share=0.12).fit_to_train(_split(torch.randn(30, 3)))
    with pytest.raises(AdlabError, match="every feature is constant"):
        SegmentModule(_meta(), k=2).fit_to_train(_split(torch.ones(50, 3)))


def test_a_collapsed_segment_stops_the_run():
    module = SegmentModule(_meta(), k=3, min_segment_share=0.05, seed=0)
    module.fit_to_train(_split(torch.randn(200, 3)))
    module._start_centres()
    with torch.no_grad():
        module.centres[2] = 1e6  # no customer is nearest to this centre any more
    with pytest.raises(AdlabError, match="segment collapse at epoch 0: segment 2 holds 0.00%"):
        module._check_shares()


def test_a_small_segment_is_a_warning_within_the_grace_and_an_error_when_training_ends(monkeypatch):
    module = SegmentModule(_meta(), k=3, min_segment_share=0.1, pretrain_epochs=0, share_grace_epochs=2)
    module.fit_to_train(_split(torch.randn(100, 3)))
    # segment 2 holds 7%: under the 10% share, above half of it
    segments = np.array([0] * 47 + [1] * 46 + [2] * 7)
    monkeypatch.setattr(module, "_train_segments", lambda: (segments, None))
    module._check_shares()  # epoch 0 of 2 grace epochs: a warning, and the epoch is not selectable
    assert module._under_share
    with pytest.raises(AdlabError, match="segment 2 holds 7.00% of train customers"):
        module._check_shares(final=True)
    segments[-3:] = 0  # 4%: under half the share, a collapse even within the grace
    with pytest.raises(AdlabError, match="segment 2 holds 4.00%"):
        module._check_shares()


def test_tabular_customers_are_segmented_with_categorical_embeddings():
    meta = TabularMeta(dataset="t", categorical=["kind"], cardinalities=[4], numeric=["a", "b"])
    module = SegmentModule(meta, k=2, latent_dim=3, seed=0)
    generator = torch.Generator().manual_seed(0)
    tensors = {
        "numeric": torch.randn(100, 2, generator=generator),
        "categorical": torch.randint(1, 4, (100, 1), generator=generator),
        "target": torch.zeros(100),
    }
    module.fit_to_train(TrainSplit(tensors=tensors, meta=meta))
    loss = module.training_step(tensors, 0)
    loss.backward()
    assert module.net.embeddings[0].weight.grad is not None
    module._start_centres()
    with torch.no_grad():
        outputs = module.predict_step(tensors, 0)
    columns = module.prediction_columns({k: v.numpy() for k, v in outputs.items()})
    assert (
        set(columns) == {"segment", "segment_name", "distance", "target"} and len(columns["segment"]) == 100
    )


# ------------------------------------------------------------------ metrics and baselines
def test_eta_squared_and_buy_rate_spread_by_hand():
    # values 1 2 | 3 4: total SS 5, between SS 2 x 1 + 2 x 1 = 4
    assert eta_squared(np.array([1.0, 2.0, 3.0, 4.0]), np.array([0, 0, 1, 1])) == pytest.approx(0.8)
    assert eta_squared(np.ones(4), np.array([0, 0, 1, 1])) == 0.0
    assert buy_rate_spread(np.array([1, 0, 1, 1]), np.array([0, 0, 1, 1])) == pytest.approx(0.5)
    assert segment_shares(np.array([0, 0, 2, 2]), 4).tolist() == [0.5, 0.0, 0.5, 0.0]
    spend = np.array([0.0, 0.0, np.e - 1, np.e**3 - 1])
    scores = segment_metrics(
        np.array([0, 0, 1, 1]), 2, np.array([[0.0], [0.1], [5.0], [5.2]]), spend, spend=True
    )
    # log1p(spend) = 0 0 1 3: mean 1, total SS 1 + 1 + 0 + 4 = 6, between 2 x 1 + 2 x 1 = 4
    assert scores["eta2_spend"] == pytest.approx(4 / 6)
    assert scores["buy_rate_spread"] == 1.0 and scores["min_share"] == 0.5 and scores["silhouette"] > 0.9


def test_rfm_cells_are_terciles_of_recency_frequency_and_spend():
    baseline = RFMCellsBaseline()
    baseline.columns = [0, 1, 2]
    features = np.random.default_rng(0).uniform(size=(2700, 3))
    baseline.fit(features)
    cells = baseline.predict(features)
    assert baseline.k == 27 and np.bincount(cells).min() > 50


def test_segment_names_come_from_the_top_features():
    inputs = np.array([[2.0, 2.0, -2.0], [2.0, 2.0, -2.0], [-2.0, -2.0, 2.0], [-2.0, -2.0, 2.0]])
    profile = segment_profile(
        inputs, inputs, np.array([0, 0, 1, 1]), 2, ["frequency", "total_spend", "days_since_last"]
    )
    assert name_segments(profile, 2) == ["recent frequent big spenders", "lapsed one-time small spenders"]
    # one-order customers have no gaps (0, lift 0): not "fast-repeat"; "recently active" is inside the first word
    names = ["orders_last_30_days", "orders_last_90_days", "mean_gap_days", "frequency"]
    inputs = np.array(
        [[2.0, 2.0, 0.0, 1.0], [2.0, 2.0, 0.0, 1.0], [-2.0, -2.0, 4.0, -1.0], [-2.0, -2.0, 4.0, -1.0]]
    )
    profile = segment_profile(inputs, inputs, np.array([0, 0, 1, 1]), 2, names)
    assert name_segments(profile, 2)[0] == "very recently active frequent"
    # the broader word ranked first ("recently active", 90 days) gives way to the more specific one
    features = [("orders_last_90_days", 3.2, 11.5), ("orders_last_30_days", 3.1, 14.6), ("orders", 2.9, 4.7)]
    assert name_segments([{"features": features}], 1) == ["very recently active frequent"]
    # "recent" says less than "very recently active"; of "recently active" and its negation the stronger stays
    features = [
        ("orders_last_30_days", 3.0, 11.0),
        ("days_since_last", -2.9, 0.1),
        ("std_gap_days", 2.0, 7.2),
    ]
    assert name_segments([{"features": features}], 1) == ["very recently active irregular"]
    features = [("orders_last_90_days", 1.0, 2.0), ("orders_last_30_days", -0.5, 0.5), ("orders", 0.9, 2.0)]
    assert name_segments([{"features": features}], 1) == ["recently active frequent"]


def test_several_encoders_form_the_segments_in_their_embeddings_side_by_side():
    single = SegmentModule(_meta(), k=2, latent_dim=3, seed=0)
    module = SegmentModule(_meta(), k=2, latent_dim=3, encoders=3, seed=0)
    # one autoencoder keeps its checkpoint keys; the ensemble's first member is that same autoencoder
    assert "net.encoder.0.weight" in single.state_dict()
    assert torch.equal(module.net.members[0].encoder[0].weight, single.net.encoder[0].weight)
    assert not torch.equal(module.net.members[1].encoder[0].weight, module.net.members[0].encoder[0].weight)
    values = torch.randn(100, 3, generator=torch.Generator().manual_seed(0))
    module.fit_to_train(_split(values))
    latent = module(values)
    assert latent.shape == (100, 9) and module.centres.shape == (2, 9)
    members = [m.reconstruction_loss(m.encode(values), values, None) for m in module.net.members]
    loss = module.net.reconstruction_loss(latent, values, None)
    assert float(loss) == pytest.approx(float(torch.stack(members).mean()), rel=1e-6)
    module._start_centres()
    assert set(module.predict_step({"features": values}, 0)["segment"].tolist()) == {0, 1}
    with pytest.raises(AdlabError, match="model.encoders=0"):
        SegmentModule(_meta(), encoders=0)
