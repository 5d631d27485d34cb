"""Value runs as a user starts them: value_csv end to end, its rating, eval, skipped BG/NBD, CLI errors."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd
import pytest
import torch

from adlab.data.features import TrainSplit
from adlab.data.sources.transactions import generate_transactions
from adlab.errors import AdlabError
from adlab.eval import evaluate
from adlab.families.value.module import ValueModule
from adlab.predict import predict
from adlab.train import train
from tests.families.value.conftest import CUTOFF, HOLDOUT_END
from tests.helpers import TINY, compose_config, purchase_log_overrides, run_module


def _overrides(path: Path, tmp_path: Path) -> list[str]:
    return ["experiment=value_csv", *purchase_log_overrides(path, tmp_path, CUTOFF, HOLDOUT_END)]


def test_value_csv_fast_dev_run(transactions_csv, tmp_path):
    cfg = compose_config("train", [*_overrides(transactions_csv, tmp_path), "debug=fdr"], tmp_path / "run")
    metrics = train(cfg)
    assert {"test/normalized_gini", "test/decile_mape", "test/auroc", "baseline/naive/test/spearman"} <= set(
        metrics
    )


def test_value_csv_rates_customers_and_eval_reproduces_it(transactions_csv, tmp_path, wandb_media):
    cfg = compose_config(
        "train",
        [*_overrides(transactions_csv, tmp_path), "model.sequence_encoder=gru", "logger=wandb"],
        tmp_path / "run",
    )
    metrics = train(cfg)
    run = Path(cfg.paths.output_dir)
    written = json.loads((run / "metrics.json").read_text())
    for key in ("test/normalized_gini", "test/spearman", "test/top10_capture", "test/total_spend_error"):
        assert key in written and f"baseline/boosting/{key}" in written
    # the rating of the 40 test customers, keyed by customer id: ratings.csv, and the same predictions.parquet
    ratings = pd.read_csv(run / "ratings.csv", dtype={"customer_id": str})
    pd.testing.assert_frame_equal(ratings, pd.read_parquet(run / "predictions.parquet"), check_dtype=False)
    assert {"plots/value_deciles", "plots/lorenz"} <= set(wandb_media)
    ratings = ratings.sort_values(["decile", "predicted_spend"])
    assert len(ratings) == 40 and ratings["customer_id"].str.startswith("C").all()
    assert ratings["decile"].value_counts().sort_index().tolist() == [4] * 10
    assert ratings["tier"].value_counts().sort_index().tolist() == [8, 12, 20]
    by_decile = ratings.groupby("decile")["predicted_spend"]
    assert (by_decile.min().to_numpy()[:-1] >= by_decile.max().to_numpy()[1:]).all()
    assert ratings["buy_probability"].between(0, 1).all() and (ratings["holdout_spend"] >= 0).all()
    assert (run / "plots" / "value_deciles.png").is_file() and (run / "plots" / "lorenz.png").is_file()
    again = evaluate(
        compose_config(
            "eval",
            [f"ckpt_path={run / 'checkpoints' / 'best.ckpt'}", "extras.print_config=false"],
            tmp_path / "eval",
        )
    )
    assert again["test/normalized_gini"] == pytest.approx(metrics["test/normalized_gini"], abs=1e-6)
    # new customers' purchase histories, rated by adlab-predict with the run's scaling
    new = generate_transactions(30, seed=7)
    new = new[new["date"] <= CUTOFF].assign(customer_id=lambda f: "N" + f["customer_id"])
    new.to_csv(tmp_path / "new.csv", index=False)
    files = _predict(run, tmp_path / "new.csv", tmp_path / "predict")
    assert files[-1] == tmp_path / "predict" / "ratings.csv"
    scored = pd.read_csv(files[0])
    pd.testing.assert_frame_equal(scored, pd.read_csv(files[-1]))
    assert set(scored["customer_id"]) == set(new["customer_id"])
    assert {"predicted_spend", "buy_probability", "decile", "tier"} <= set(scored.columns)
    assert "holdout_spend" not in scored.columns
    # the same customers' whole year rated as of a later day (after the run's holdout end): the purchases
    # up to it count, later ones do not
    year = generate_transactions(30, seed=7).assign(customer_id=lambda f: "N" + f["customer_id"])
    year.to_csv(tmp_path / "year.csv", index=False)
    as_before = pd.read_csv(_predict(run, tmp_path / "year.csv", tmp_path / "before")[0])
    pd.testing.assert_frame_equal(as_before, scored)  # transactions after the run's cutoff are not read
    later = pd.read_csv(
        _predict(run, tmp_path / "year.csv", tmp_path / "later", f"data.source.cutoff={HOLDOUT_END}")[0]
    )
    assert set(later["customer_id"]) == set(year["customer_id"]) and not later.equals(scored)
    # as of the later day = the same history moved back so that that day falls on the run's cutoff
    shift = pd.Timestamp(HOLDOUT_END) - pd.Timestamp(CUTOFF)
    moved = year.assign(date=(pd.to_datetime(year["date"]) - shift).dt.date.astype(str))
    moved.to_csv(tmp_path / "moved.csv", index=False)
    pd.testing.assert_frame_equal(
        later, pd.read_csv(_predict(run, tmp_path / "moved.csv", tmp_path / "m")[0])
    )
    with pytest.raises(AdlabError, match=r"data.source.cutoff='soon': expected an ISO date"):
        _predict(run, tmp_path / "year.csv", tmp_path / "bad", "data.source.cutoff=soon")


def _predict(run: Path, log: Path, output_dir: Path, *overrides: str) -> list[Path]:
    """adlab-predict of a purchase log with the run's best checkpoint, as CSV; the files written."""
    return predict(
        compose_config(
            "predict",
            [
                f"ckpt_path={run / 'checkpoints' / 'best.ckpt'}",
                f"data.source.path={log}",
                "format=csv",
                "extras.print_config=false",
                *overrides,
            ],
            output_dir,
        )
    )


def test_the_mse_head_predicts_spend_without_a_probability(transactions_csv, tmp_path):
    cfg = compose_config("train", [*_overrides(transactions_csv, tmp_path), "debug=fdr"], tmp_path / "run")
    from adlab.harness.build import build_datamodule

    datamodule = build_datamodule(cfg)
    model = ValueModule(datamodule.meta, head="mse", report=False)
    model.fit_to_train(datamodule.train_split())
    train_target = datamodule.tensors["train"]["target"]
    assert float(model.spend_scale) == pytest.approx(float(train_target[train_target > 0].mean()))
    spend, probability = model.predict_value(datamodule.tensors["test"]["features"])
    assert probability is None and spend.shape == (40,) and bool((spend >= 0).all())


def test_ziln_head_starts_at_the_train_marginals(transactions_csv):
    from adlab.data.datamodule import MarketingDataModule
    from adlab.data.sources.transactions import TransactionsSource

    source = TransactionsSource(str(transactions_csv), "customer_id", "date", "amount", CUTOFF, HOLDOUT_END)
    datamodule = MarketingDataModule(source, seed=1)
    datamodule.setup("fit")
    model = ValueModule(datamodule.meta)
    train_split = datamodule.tensors["train"]
    model.fit_to_train(TrainSplit(tensors=train_split, meta=datamodule.meta))
    rate = float((train_split["target"] > 0).float().mean())
    assert float(torch.sigmoid(model.nets[0].head.bias[0].detach())) == pytest.approx(rate, rel=1e-4)


def test_bgnbd_is_skipped_with_a_reason_when_everyone_bought_once(tmp_path, caplog):
    # 60 customers with one calibration purchase each; 20 of them buy again in the holdout
    customers = [f"c{i}" for i in range(60)]
    log = pd.DataFrame(
        {
            "customer_id": customers + customers[:20],
            "date": ["2021-01-05"] * 60 + ["2021-03-01"] * 20,
            "amount": [20.0] * 80,
        }
    )
    path = tmp_path / "once.csv"
    log.to_csv(path, index=False)
    overrides = [
        "experiment=value_csv",
        f"data.source.path={path}",
        "data.source.customer=customer_id",
        "data.source.date=date",
        "data.source.amount=amount",
        "data.source.cutoff=2021-01-31",
        "data.source.holdout_end=2021-03-01",
        f"paths.log_dir={tmp_path}",
        "debug=fdr",
        *TINY,
    ]
    with caplog.at_level(logging.WARNING):
        metrics = train(compose_config("train", overrides, tmp_path / "run"))
    assert caplog.text.count("BG/NBD + Gamma-Gamma skipped") == 1 and "bought more than once" in caplog.text
    assert not any(key.startswith("baseline/bgnbd/") for key in metrics)
    assert "baseline/naive/test/normalized_gini" in metrics and "test/normalized_gini" in metrics


def test_cli_bad_input_is_one_line_and_exit_2(transactions_csv, tmp_path):
    result = run_module(
        "adlab.train",
        *[o for o in _overrides(transactions_csv, tmp_path) if not o.startswith("data.source.amount")],
        "data.source.amount=price",
        f"hydra.run.dir={tmp_path / 'cli'}",
    )
    assert result.returncode == 2
    lines = [line for line in result.stderr.strip().splitlines() if "price" in line]
    assert len(lines) == 1 and "amount 'price'" in lines[0] and "Traceback" not in result.stderr


@pytest.mark.slow
def test_bgnbd_fits_where_pymc_marketing_is_installed(transactions_csv):
    pytest.importorskip("pymc_marketing", reason="peer library: make peers, then run with .venv-peers")
    from adlab.data.datamodule import MarketingDataModule
    from adlab.data.sources.transactions import TransactionsSource
    from adlab.families.value.baselines import BetaGeoGammaGammaBaseline

    source = TransactionsSource(str(transactions_csv), "customer_id", "date", "amount", CUTOFF, HOLDOUT_END)
    datamodule = MarketingDataModule(source, seed=1)
    datamodule.setup("fit")
    scores = BetaGeoGammaGammaBaseline().evaluate(datamodule)
    assert 0 < scores["test/normalized_gini"] <= 1 and 0.5 < scores["test/auroc"] <= 1
