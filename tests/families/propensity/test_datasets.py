"""Propensity data end to end: CDNOW features, generated web sessions, a user's CSV with a yes/no target."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from adlab.data.datasets.cdnow import rfm_features
from adlab.data.sources.sessions import generate_sessions
from adlab.data.sources.tabular import TabularSource
from adlab.errors import AdlabError
from adlab.harness.build import build_datamodule
from adlab.harness.checkpoints import load_module
from adlab.train import train
from tests.helpers import TINY, compose_config


def test_cdnow_features_see_nothing_after_the_cutoff():
    log = pd.DataFrame(
        {
            "customer_id": [1, 1, 1, 2, 2, 3],
            "date": pd.to_datetime(
                ["1997-01-05", "1997-01-05", "1997-03-01", "1997-02-01", "1997-11-20", "1997-09-30"]
            ),
            "cds": [1, 2, 1, 3, 1, 2],
            "dollars": [10.0, 20.0, 15.0, 30.0, 12.0, 25.0],
        }
    )
    features = rfm_features(log, "1997-09-30", "1998-06-30").set_index("customer_id")
    # same-day purchases are one order; the cutoff day itself belongs to the past
    assert features.loc[1, "orders"] == 2 and features.loc[1, "total_dollars"] == 45.0
    assert features.loc[1, "recency_days"] == (pd.Timestamp("1997-09-30") - pd.Timestamp("1997-03-01")).days
    assert features.loc[1, "mean_gap_days"] == 55
    assert features.loc[3, "recency_days"] == 0 and np.isnan(features.loc[3, "mean_gap_days"])
    assert features["repeat"].to_dict() == {1: 0, 2: 1, 3: 0}
    # rewriting everything after the cutoff (and past the horizon) changes labels only
    future = pd.DataFrame(
        {
            "customer_id": [1, 2, 3, 3],
            "date": pd.to_datetime(["1997-10-01", "1998-07-01", "1998-06-30", "1999-01-01"]),
            "cds": [9, 9, 9, 9],
            "dollars": [999.0] * 4,
        }
    )
    changed = pd.concat([log[log["date"] <= "1997-09-30"], future], ignore_index=True)
    other = rfm_features(changed, "1997-09-30", "1998-06-30").set_index("customer_id")
    pd.testing.assert_frame_equal(features.drop(columns="repeat"), other.drop(columns="repeat"))
    assert other["repeat"].to_dict() == {1: 1, 2: 0, 3: 1}
    with pytest.raises(AdlabError, match="horizon_end"):
        rfm_features(log, "1997-09-30", "1997-09-01")


def test_web_sessions_model_recovers_the_true_propensity(tmp_path):
    rows = 6000
    cfg = compose_config(
        "train",
        [
            "experiment=propensity_web",
            f"data.source.rows={rows}",
            "trainer.max_epochs=12",
            "baselines=none",
            "model.report=false",
            f"paths.log_dir={tmp_path}",
            *TINY[1:],
        ],
        tmp_path / "web",
    )
    metrics = train(cfg)
    # the same config gives the same generated table and split; score its test rows with the selected model
    datamodule = build_datamodule(cfg)
    model = load_module(tmp_path / "web" / "checkpoints" / "best.ckpt")
    test = datamodule.tensors["test"]
    with torch.no_grad():
        predicted = torch.sigmoid(model(test["categorical"], test["numeric"])).numpy()
    truth = generate_sessions(rows, cfg.data.source.seed, cfg.data.source.intercept)[
        "true_propensity"
    ].to_numpy()
    test_rows = np.load(tmp_path / "web" / "splits.npz")["test"]
    correlation = np.corrcoef(predicted, truth[test_rows])[0, 1]
    # stated bound: the scorer's probabilities correlate with the generator's at >= 0.85 (Pearson)
    assert correlation >= 0.85, correlation
    assert metrics["test/auroc"] > 0.75


def test_propensity_csv_with_a_yes_no_target(tmp_path):
    generator = np.random.default_rng(1)
    rows = 500
    spend = generator.gamma(2.0, 20.0, rows)
    channel = generator.choice(["web", "store", "phone"], rows)
    bought = generator.random(rows) < 1 / (1 + np.exp(-(spend - 40) / 15 - (channel == "web")))
    path = tmp_path / "customers.csv"
    pd.DataFrame({"spend": spend, "channel": channel, "Purchase": np.where(bought, "Yes", "No")}).to_csv(
        path, index=False
    )
    overrides = [
        "experiment=propensity_csv",
        f"data.source.path={path}",
        "data.source.target=Purchase",
        f"paths.log_dir={tmp_path}",
        *TINY,
    ]
    metrics = train(compose_config("train", overrides, tmp_path / "yes"))
    assert metrics["test/auroc"] > 0.6 and "baseline/gbm/test/auroc" in metrics
    assert (tmp_path / "yes" / "plots" / "gains_lift.png").is_file()
    # the positive class is settable: "No" flips the labels, and the scorer learns the flipped task
    assert np.array_equal(TabularSource(str(path), "Purchase", positive="No").load().labels, 1 - bought)
    flipped = train(compose_config("train", [*overrides, "data.source.positive=No"], tmp_path / "no"))
    assert flipped["baseline/logreg/test/auroc"] > 0.6
