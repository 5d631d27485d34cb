"""Per-row predictions: after training (test split), `adlab-predict` on a new file, `adlab-eval` on a new
labelled file; for propensity, imagery and copywriting on tiny data."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score

from adlab.data.synthetic import coil_like_table, make_image_folder, make_titles
from adlab.errors import AdlabError
from adlab.eval import evaluate
from adlab.harness.predictions import require_row_predictions
from adlab.predict import predict
from adlab.train import train
from tests.helpers import compose_config, run_module

QUIET = ["extras.print_config=false", "callbacks.progress_bar=null"]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models gain nothing from intra-op threads on a busy shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ------------------------------------------------------------------------------------ propensity
@pytest.fixture(scope="module")
def propensity_run(coil_data_dir, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("propensity") / "run"
    cfg = compose_config(
        "train",
        [f"paths.data_dir={coil_data_dir}", f"paths.log_dir={run.parent}", "trainer.max_epochs=2", *QUIET],
        run,
    )
    train(cfg)
    return run


def test_training_writes_the_test_rows_predictions(propensity_run):
    table = pd.read_parquet(propensity_run / "predictions.parquet")
    metrics = json.loads((propensity_run / "metrics.json").read_text())
    test_rows = np.load(propensity_run / "splits.npz")["test"]
    assert list(table.columns) == ["customer_id", "score", "decile", "target"]
    # the source's id column identifies the rows (customer ids run from 1 in the tiny table)
    assert table["customer_id"].tolist() == (test_rows + 1).tolist()
    assert roc_auc_score(table["target"], table["score"]) == pytest.approx(metrics["test/auroc"], abs=1e-4)
    assert sorted(table["decile"].unique()) == list(range(1, 11))
    assert table.groupby("decile")["score"].min().is_monotonic_decreasing


def test_predict_scores_a_new_file_with_the_checkpoint_preprocessing(propensity_run, tmp_path, capsys):
    new = coil_like_table(train_rows=40, test_rows=0, seed=7).drop(columns=["CARAVAN"])
    new.loc[[0, 3], "MOSTYPE"] = "a subtype never seen"
    new.to_csv(tmp_path / "new.csv", index=False)
    written = predict(
        compose_config(
            "predict",
            [
                f"ckpt_path={propensity_run / 'checkpoints' / 'best.ckpt'}",
                f"data.source.path={tmp_path / 'new.csv'}",
                "format=both",
                *QUIET[:1],
            ],
            tmp_path / "out",
        )
    )
    assert written == [tmp_path / "out" / "predictions.parquet", tmp_path / "out" / "predictions.csv"]
    table = pd.read_parquet(written[0])
    assert table["customer_id"].tolist() == new["customer_id"].tolist()
    assert table["score"].between(0, 1).all() and table["decile"].between(1, 10).all()
    assert pd.read_csv(written[1])["score"].to_numpy() == pytest.approx(table["score"].to_numpy())
    out = capsys.readouterr().out
    assert "40 rows of" in out and "MOSTYPE: 2" in out and str(written[0]) in out
    # a cut-off date is refused for a source that has none (a table of customers)
    with pytest.raises(AdlabError, match=r"data.source.cutoff=2020-01-01: .* has no cutoff"):
        predict(
            compose_config(
                "predict",
                [
                    f"ckpt_path={propensity_run / 'checkpoints' / 'best.ckpt'}",
                    f"data.source.path={tmp_path / 'new.csv'}",
                    "data.source.cutoff=2020-01-01",
                    *QUIET[:1],
                ],
                tmp_path / "refused",
            )
        )


def test_eval_tests_every_row_of_a_new_labelled_file(propensity_run, tmp_path, capsys):
    new = coil_like_table(train_rows=80, test_rows=0, seed=8).drop(columns=["split"])
    new.to_parquet(tmp_path / "labelled.parquet")
    overrides = [f"ckpt_path={propensity_run / 'checkpoints' / 'best.ckpt'}", *QUIET[:1]]
    metrics = evaluate(
        compose_config(
            "eval", [*overrides, f"data.source.path={tmp_path / 'labelled.parquet'}"], tmp_path / "ev"
        )
    )
    assert not any(key.startswith("val/") for key in metrics)  # every row is a test row
    table = pd.read_parquet(tmp_path / "ev" / "predictions.parquet")
    assert len(table) == 80 and table["target"].tolist() == new["CARAVAN"].tolist()
    assert metrics["test/auroc"] == pytest.approx(roc_auc_score(new["CARAVAN"], table["score"]), abs=1e-4)
    assert "every row of a new file" in capsys.readouterr().out
    # what eval would silently ignore is refused on one line
    for unread in ("+data.source.target=other", "+model.dropout=0.5"):
        with pytest.raises(AdlabError, match=unread.lstrip("+").split("=")[0]):
            evaluate(compose_config("eval", [*overrides, unread], tmp_path / "refused"))
    with pytest.raises(AdlabError, match="CARAVAN"):  # a labelled file needs its target
        new.drop(columns=["CARAVAN"]).to_csv(tmp_path / "unlabelled.csv", index=False)
        evaluate(
            compose_config(
                "eval", [*overrides, f"data.source.path={tmp_path / 'unlabelled.csv'}"], tmp_path / "x"
            )
        )


def test_a_cross_fitted_run_writes_its_ensembles_predictions(train_config):
    """The test rows scored by the merged ensemble that was tested (under a budget the folds share)."""
    cfg = train_config(
        [
            "experiment=propensity_coil",
            "fit.folds=2",
            "trainer.max_epochs=1",
            "baselines=none",
            "trainer.max_time=60",
        ]
    )
    metrics = train(cfg)
    run = Path(cfg.paths.output_dir)
    table = pd.read_parquet(run / "predictions.parquet")
    assert len(table) == len(np.load(run / "splits.npz")["test"])
    assert roc_auc_score(table["target"], table["score"]) == pytest.approx(metrics["test/auroc"], abs=1e-4)


def test_predict_command_line(propensity_run, tmp_path):
    coil_like_table(train_rows=10, test_rows=0).to_csv(tmp_path / "new.csv", index=False)
    checkpoint = propensity_run / "checkpoints" / "best.ckpt"
    result = run_module(
        "adlab.predict",
        f"ckpt_path={checkpoint}",
        f"data.source.path={tmp_path / 'new.csv'}",
        f"hydra.run.dir={tmp_path / 'out'}",
        "extras.print_config=false",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert len(pd.read_parquet(tmp_path / "out" / "predictions.parquet")) == 10
    with pytest.raises(AdlabError, match="data.source.path is not set; expected the file to score"):
        predict(compose_config("predict", [f"ckpt_path={checkpoint}"], tmp_path / "no"))
    with pytest.raises(AdlabError, match="format=xml: expected one of parquet, csv, both"):
        predict(compose_config("predict", [f"ckpt_path={checkpoint}", "format=xml"], tmp_path / "no"))


def test_a_generator_is_pointed_to_adlab_generate():
    class Generator(torch.nn.Module):
        def generate_outputs(self, options, output_dir):
            return output_dir

    with pytest.raises(AdlabError, match="use adlab-generate ckpt_path=gan.ckpt"):
        require_row_predictions(Generator(), "gan.ckpt")
    from adlab.families.creatives.module import CreativesModule

    assert hasattr(CreativesModule, "generate_outputs") and not hasattr(CreativesModule, "prediction_columns")


# -------------------------------------------------------------------------------------- imagery
def test_imagery_predictions_after_training_on_a_new_folder_and_in_eval(tmp_path):
    folder = make_image_folder(tmp_path / "products", per_class=6)
    run = tmp_path / "run"
    train(
        compose_config(
            "train",
            [
                "experiment=imagery_folder",
                f"data.source.path={folder}",
                "data.source.image_size=16",
                "data.batch_size=8",
                "trainer.max_epochs=1",
                f"paths.log_dir={tmp_path}",
                *QUIET,
            ],
            run,
        )
    )
    table = pd.read_parquet(run / "predictions.parquet")
    probabilities = [c for c in table.columns if c.startswith("probability_")]
    assert list(table.columns[:4]) == ["path", "predicted_class", "probability", "true_class"]
    assert sorted(probabilities) == ["probability_blue_bag", "probability_green_hat", "probability_red_shoe"]
    assert np.allclose(table[probabilities].sum(axis=1), 1, atol=1e-5)
    assert table["path"].map(lambda p: Path(p).is_file()).all()
    # an unlabelled folder (files at any depth, no class folders) is scored file by file
    new = tmp_path / "new" / "batch 1"
    new.mkdir(parents=True)
    for index, image in enumerate(sorted(folder.rglob("*.png"))[:4]):
        shutil.copy(image, new / f"{index}.png")
    checkpoint = run / "checkpoints" / "best.ckpt"
    predict(
        compose_config(
            "predict",
            [f"ckpt_path={checkpoint}", f"data.source.path={new.parent}", *QUIET[:1]],
            tmp_path / "p",
        )
    )
    scored = pd.read_parquet(tmp_path / "p" / "predictions.parquet")
    assert [Path(p).name for p in scored["path"]] == ["0.png", "1.png", "2.png", "3.png"]
    assert set(scored["predicted_class"]) <= {"Green_Hat", "Red shoe", "blue-bag"}
    # the labelled training folder as a new file: every image tested
    metrics = evaluate(
        compose_config(
            "eval", [f"ckpt_path={checkpoint}", f"data.source.path={folder}", *QUIET[:1]], tmp_path / "e"
        )
    )
    tested = pd.read_parquet(tmp_path / "e" / "predictions.parquet")
    assert len(tested) == 18
    accuracy = (tested["predicted_class"] == tested["true_class"]).mean()
    assert metrics["test/accuracy"] == pytest.approx(accuracy, abs=1e-6)


# ---------------------------------------------------------------------------------- copywriting
def test_copywriting_predictions_hold_each_text_bits_per_char(tmp_path, capsys):
    titles = make_titles(tmp_path / "titles.csv", rows=200)
    run = tmp_path / "run"
    metrics = train(
        compose_config(
            "train",
            [
                "experiment=copy_csv",
                f"data.source.path={titles}",
                "data.source.text=Title",
                "data.source.conditions=[Department Name,Rating]",
                "model.net.hidden_size=16",
                "model.net.embedding_dim=8",
                "model.samples_per_condition=1",
                "baselines.ngram.orders=[2]",
                "trainer.max_epochs=1",
                "+trainer.limit_train_batches=2",
                f"paths.log_dir={tmp_path}",
                *QUIET,
            ],
            run,
        )
    )
    table = pd.read_parquet(run / "predictions.parquet")
    assert list(table.columns) == ["row", "text", "chars", "bits_per_char"]
    # the per-text figures add up to the test split's bits per character
    total_bits = (table["bits_per_char"] * table["chars"]).sum()
    assert total_bits / table["chars"].sum() == pytest.approx(metrics["test/bpc"], rel=1e-4)
    source = pd.read_csv(titles)
    texts = source.loc[table["row"], "Title"].str.split().str.join(" ")
    assert table["text"].tolist() == texts.tolist()
    assert (table["chars"].to_numpy() == texts.str.len().to_numpy() + 1).all()
    new = source.head(12).copy()
    new.loc[4, "Department Name"] = "Shoes"  # a condition value the model never saw
    new.loc[5, "Title"] = "  "
    new.to_csv(tmp_path / "new.csv", index=False)
    predict(
        compose_config(
            "predict",
            [
                f"ckpt_path={run / 'checkpoints' / 'best.ckpt'}",
                f"data.source.path={tmp_path / 'new.csv'}",
                *QUIET[:1],
            ],
            tmp_path / "p",
        )
    )
    scored = pd.read_parquet(tmp_path / "p" / "predictions.parquet")
    kept = [
        row for row in range(12) if str(new.loc[row, "Title"]).strip() and not pd.isna(new.loc[row, "Title"])
    ]
    assert scored["row"].tolist() == kept
    assert scored["bits_per_char"].map(math.isfinite).all() and (scored["bits_per_char"] > 0).all()
    out = capsys.readouterr().out
    assert "Department Name: 1" in out and "empty text left out" in out
