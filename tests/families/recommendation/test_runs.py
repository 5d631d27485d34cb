"""Recommendation runs as a user starts them: recommend_csv end to end, eval, generate, export, CLI errors."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf

from adlab.errors import AdlabError
from adlab.eval import evaluate
from adlab.generate import generate
from adlab.train import train
from tests.helpers import TINY, compose_config, run_module

METRICS = ("hr_at_10", "ndcg_at_10", "mrr", "coverage_at_10", "mean_popularity_at_10")


def _overrides(paths: dict[str, Path], tmp_path: Path) -> list[str]:
    return [
        "experiment=recommend_csv",
        f"data.source.path={paths['ratings']}",
        "data.source.user=user_id",
        "data.source.item=item_id",
        "data.source.time=timestamp",
        f"data.source.items_path={paths['items']}",
        "data.source.item_title=title",
        "data.source.item_attributes=[genre]",
        f"data.source.users_path={paths['users']}",
        "data.source.user_attributes=[gender]",
        "data.source.max_length=8",
        "data.batch_size=32",
        "model.net.dim=16",
        f"paths.log_dir={tmp_path}",
        *TINY,
    ]


def test_recommend_csv_fast_dev_run_reports_model_and_baselines(movielens_like, tmp_path):
    cfg = compose_config("train", [*_overrides(movielens_like, tmp_path), "debug=fdr"], tmp_path / "run")
    metrics = train(cfg)
    for name in METRICS:
        assert f"test/{name}" in metrics and f"baseline/popularity/test/{name}" in metrics
    assert 0 <= metrics["baseline/item_knn/val/ndcg_at_10"] <= 1
    assert not any(key.startswith("baseline/als/") for key in metrics)  # implicit is not installed here


@pytest.fixture(scope="module")
def trained_two_tower(movielens_like, tmp_path_factory) -> Path:
    """A two-tower model trained for 2 epochs on the tiny log; its run directory."""
    tmp_path = tmp_path_factory.mktemp("two_tower")
    overrides = [*_overrides(movielens_like, tmp_path), "model=recommend_two_tower", "model.net.dim=16"]
    cfg = compose_config("train", overrides, tmp_path / "run")
    metrics = train(cfg)
    run = Path(cfg.paths.output_dir)
    (run / "returned_metrics.json").write_text(json.dumps(metrics))
    return run


def test_a_run_writes_examples_and_predictions_and_eval_reproduces_it(trained_two_tower, tmp_path):
    run = trained_two_tower
    metrics = json.loads((run / "returned_metrics.json").read_text())
    with open(run / "recommendation_examples.csv", encoding="utf-8") as stream:
        examples = list(csv.DictReader(stream))
    assert len(examples) == 10 and examples[0]["recommended"].count("Film ") == 10
    assert examples[0]["history"].startswith("Film ") and 1 <= int(examples[0]["target_rank"]) <= 40
    predictions = pd.read_parquet(run / "predictions.parquet")
    assert list(predictions.columns) == ["user", "target_item", "target_rank", "recommended"]
    assert predictions["recommended"].str.count(r"\|").eq(9).all()
    again = evaluate(
        compose_config(
            "eval",
            [f"ckpt_path={run / 'checkpoints' / 'best.ckpt'}", "extras.print_config=false"],
            tmp_path / "eval",
        )
    )
    assert again["test/ndcg_at_10"] == pytest.approx(metrics["test/ndcg_at_10"], abs=1e-6)


def _generate_options(run: Path, tmp_path: Path, **options) -> dict:
    cfg = compose_config(
        "generate",
        [f"ckpt_path={run / 'checkpoints' / 'best.ckpt'}", *(f"{k}={v}" for k, v in options.items())],
        tmp_path / "generate",
    )
    return cfg


def test_generate_prints_a_users_titles(trained_two_tower, tmp_path, capsys):
    path = generate(_generate_options(trained_two_tower, tmp_path, user=7, k=5))
    printed = capsys.readouterr().out
    assert "user 7:" in printed and printed.count("Film ") >= 5
    rows = list(csv.DictReader(open(path, encoding="utf-8")))
    assert [r["rank"] for r in rows] == ["1", "2", "3", "4", "5"] and rows[0]["title"].startswith("Film ")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"user": 7, "k": 0}, "k=0: expected"),
        ({"user": 7, "k": 41}, "k=41: expected"),
        ({"user": "nobody"}, "user=nobody: not a user"),
    ],
)
def test_generate_refuses_bad_options(trained_two_tower, tmp_path, options, message):
    with pytest.raises(AdlabError, match=message):
        generate(_generate_options(trained_two_tower, tmp_path, **options))


def test_export_writes_an_onnx_package_that_matches_pytorch(trained_two_tower):
    from adlab.export import export_checkpoint

    out = export_checkpoint(trained_two_tower / "checkpoints" / "best.ckpt", "onnx")
    metadata = json.loads((out / "metadata.json").read_text())
    preprocessing = json.loads((out / "preprocessing.json").read_text())
    assert metadata["parity"]["max_rel_error"] <= 1e-5 and metadata["inputs"] == ["history", "user_features"]
    assert len(preprocessing["item_ids"]) == len(preprocessing["item_vectors"]) == 40


@pytest.mark.slow
def test_the_cli_names_a_missing_column_and_exits_2(movielens_like, tmp_path):
    overrides = [o for o in _overrides(movielens_like, tmp_path) if not o.startswith("data.source.time=")]
    result = run_module(
        "adlab.train", *overrides, "data.source.time=when", f"hydra.run.dir={tmp_path / 'run'}"
    )
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert "no time 'when' column" in last and "Traceback" not in result.stderr


@pytest.mark.parametrize("model", ["recommend_sasrec", "recommend_two_tower"])
def test_the_optuna_preset_searches_keys_both_models_have(movielens_like, tmp_path, model):
    overrides = [*_overrides(movielens_like, tmp_path), f"model={model}", "hparams_search=recommend_optuna"]
    cfg = compose_config("train", overrides, tmp_path / "run")
    assert cfg.optimized_metric == "val/ndcg_at_10"
    for key in cfg.hydra.sweeper.params:
        assert OmegaConf.select(cfg, key) is not None, key


def test_the_package_recommends_excluding_seen_items_with_a_popularity_fallback(trained_two_tower):
    from adlab.export import export_checkpoint
    from adlab.serving.package import load_package
    from adlab.serving.recommender import RecommenderScorer

    scorer = RecommenderScorer(
        load_package(export_checkpoint(trained_two_tower / "checkpoints" / "best.ckpt"))
    )
    answer = scorer.recommend(["3", "4", "no-such-film", 5], k=5)
    assert len(answer.items) == 5 and not {"3", "4", "5"} & set(answer.items)
    assert answer.unknown == 1 and answer.fallback is None and answer.titles[0].startswith("Film ")
    assert answer.scores == sorted(answer.scores, reverse=True)
    empty = scorer.recommend(["no-such-film"], k=3)
    assert empty.fallback == "popularity" and empty.items == [scorer.item_ids[i] for i in scorer._popular[:3]]
    similar = scorer.similar("7", k=4)
    assert len(similar.items) == 4 and "7" not in similar.items
    for call, message in [
        (lambda: scorer.recommend(["3"], k=0), "k=0: expected"),
        (lambda: scorer.recommend(["3"], k=41), "k=41: expected"),
        (lambda: scorer.recommend("3", k=2), "expected a list of item ids"),
        (lambda: scorer.similar("no-such-film"), "not in the catalogue"),
    ]:
        with pytest.raises(AdlabError, match=message):
            call()
