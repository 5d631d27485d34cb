"""The propensity family beyond the harness: ensemble, marketing outputs, calibration, GBM baseline,
CDNOW features, generated web sessions, any CSV, the seeds summary."""

from __future__ import annotations

import csv
import inspect
import json
import subprocess
import sys
from pathlib import Path

import lightning as L
import numpy as np
import pandas as pd
import pytest
import torch

from adlab.calibration import fit_calibrator, log_loss, reliability_bins
from adlab.data.datamodule import MarketingDataModule
from adlab.data.datasets.cdnow import rfm_features
from adlab.data.sources.sessions import generate_sessions
from adlab.data.sources.tabular import TabularSource
from adlab.errors import AdlabError
from adlab.eval import evaluate
from adlab.export import export_checkpoint
from adlab.features import l1_path_ranking
from adlab.metrics.binary import PropensityMetrics
from adlab.models.propensity import PropensityModule, merge_cross_fitted
from adlab.train import train
from tests.conftest import TINY, compose_config

ROOT = Path(__file__).resolve().parents[1]
META = {"categorical": ["a", "b"], "cardinalities": [5, 3], "numeric": ["x", "y", "z"], "positive_rate": 0.1}


def _batch(rows: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    categorical = torch.stack([torch.randint(0, 5, (rows,)), torch.randint(0, 3, (rows,))], dim=1)
    return categorical, torch.randn(rows, 3)


def test_ensemble_scores_with_the_mean_member_logit():
    torch.manual_seed(0)
    model = PropensityModule(META, members=4, hidden_sizes=[8], report=False).eval()
    categorical, numeric = _batch()
    members = model.member_logits(categorical, numeric)
    assert members.shape == (4, 16)
    # independently initialised members disagree; the score is their mean logit
    assert members.std(dim=0).mean() > 1e-3
    torch.testing.assert_close(model(categorical, numeric), members.mean(dim=0))
    # every member starts at the base rate
    start = torch.sigmoid(model.net.layers[-1].bias).flatten()
    torch.testing.assert_close(start, torch.full((4,), 0.1))
    loss = model.loss(members, torch.ones(16))
    loss.backward()
    assert loss.ndim == 0 and model.net.layers[-1].weight.grad.abs().sum() > 0


def test_feature_selection_and_periodic_embeddings():
    model = PropensityModule(META, features=["b", "z"], numeric_embedding="periodic", report=False).eval()
    # the parameter order older checkpoints' optimizer states follow
    assert [name for name, _ in model.net.numeric_embedding.named_parameters()] == [
        "frequencies",
        "weight",
        "bias",
    ]
    categorical, numeric = _batch()
    before = model(categorical, numeric)
    numeric[:, :2] = 100.0  # columns x and y are not read
    categorical[:, 0] = 0
    torch.testing.assert_close(model(categorical, numeric), before)
    with pytest.raises(AdlabError, match="model.features"):
        PropensityModule(META, features=["nope"])
    with pytest.raises(AdlabError, match="model.calibration"):
        PropensityModule(META, calibration="platt")


def test_select_numeric_ranks_on_train_and_travels_in_the_checkpoint():
    generator = torch.Generator().manual_seed(0)
    numeric = torch.randn(600, 3, generator=generator)
    # buyers depend on z strongly and on x weakly; y is noise
    logits = 2.5 * numeric[:, 2] + 0.8 * numeric[:, 0] - 2.0
    target = torch.bernoulli(torch.sigmoid(logits), generator=generator)
    train_split = {"numeric": numeric, "target": target}
    assert l1_path_ranking(numeric.numpy(), target.numpy()) == [2, 0, 1]
    model = PropensityModule(META, select_numeric=1, report=False).eval()
    assert model.select_numeric_columns(train_split) == ["z"]
    categorical, batch_numeric = _batch()
    before = model(categorical, batch_numeric)
    batch_numeric[:, :2] = 100.0  # x and y are not read
    torch.testing.assert_close(model(categorical, batch_numeric), before)
    # the choice is state: a fresh module reads z only after loading the trained one's weights
    fresh = PropensityModule(META, select_numeric=1, report=False).eval()
    assert fresh.numeric_index.tolist() == [0]
    fresh.load_state_dict(model.state_dict())
    assert fresh.numeric_index.tolist() == [2]
    torch.testing.assert_close(fresh(categorical, batch_numeric), before)
    # loading leaves the candidate columns intact, and a trained module keeps its columns when fitted again
    assert fresh.numeric_candidates.tolist() == [0, 1, 2] and bool(fresh.numeric_selected)

    class Trainer:
        datamodule = type(
            "Data", (), {"tensors": {"train": {"numeric": numeric[:, [2, 0, 1]], "target": target}}}
        )

    fresh.trainer = Trainer()
    fresh.setup("fit")  # z now sits in column 0: a re-ranking would switch the trained network to it
    assert fresh.numeric_index.tolist() == [2]
    unfitted = PropensityModule(META, select_numeric=1, report=False)
    unfitted.trainer = Trainer()
    unfitted.setup("fit")
    assert unfitted.numeric_index.tolist() == [0]
    assert PropensityModule(META, select_numeric=2, report=False).select_numeric_columns(train_split) == [
        "x",
        "z",
    ]
    for bad in (0, 4):
        with pytest.raises(AdlabError, match="model.select_numeric"):
            PropensityModule(META, select_numeric=bad)


def test_piecewise_linear_bins_fit_on_train_and_travel_in_the_checkpoint():
    generator = torch.Generator().manual_seed(0)
    # x: a discrete code with 4 levels; y: continuous; z: constant
    train_numeric = torch.stack(
        [
            torch.randint(0, 4, (400,), generator=generator).float(),
            torch.randn(400, generator=generator),
            torch.full((400,), 2.0),
        ],
        dim=1,
    )
    # a skewed code (90% zeros, then 1, 2, 3): coinciding quantiles merge its bins into one, 0 to 3
    skewed = PropensityModule(META, numeric_embedding="piecewise_linear", bins=6, report=False)
    code = torch.cat([torch.zeros(900), torch.tensor([1.0, 2.0, 3.0]).repeat_interleave(34)[:100]])
    skewed.fit_bins({"numeric": code[:, None].expand(-1, 3)})
    assert skewed.net.numeric_embedding.edges[0, 0, 0].tolist() == [0, 3, 3, 3, 3, 3, 3]
    torch.testing.assert_close(
        skewed.net.numeric_embedding.encode(torch.full((1, 3), 1.0))[0, 0, 0],
        torch.tensor([1 / 3, 0, 0, 0, 0, 0]),
    )
    with pytest.raises(AdlabError, match="NaN or infinite"):
        skewed.fit_bins({"numeric": torch.full((5, 3), float("nan"))})
    model = PropensityModule(META, numeric_embedding="piecewise_linear", bins=6, report=False).eval()
    embedding = model.net.numeric_embedding
    assert not bool(embedding.fitted)

    class Trainer:
        datamodule = type(
            "Data", (), {"tensors": {"train": {"numeric": train_numeric, "target": torch.zeros(400)}}}
        )

    model.trainer = Trainer()
    model.setup("fit")
    edges = embedding.edges[0, 0]
    assert bool(embedding.fitted) and embedding.edges.shape == (1, 1, 3, 7)
    # a discrete code: one bin per gap between its levels (a thermometer), the spare bins unused
    assert edges[0].tolist() == [0, 1, 2, 3, 3, 3, 3]
    levels = torch.linspace(0, 1, 7, dtype=torch.float64)
    expected = torch.quantile(train_numeric[:, 1].double(), levels, interpolation="lower").float()
    torch.testing.assert_close(edges[1], expected)
    assert edges[2].tolist() == [2.0] * 7
    probe = torch.tensor([[1.5, float(expected[3]), 2.0], [-9.0, 99.0, 2.0]])
    encoded = embedding.encode(probe)[0]
    torch.testing.assert_close(encoded[0, 0], torch.tensor([1.0, 0.5, 0, 0, 0, 0]))
    torch.testing.assert_close(encoded[0, 1], torch.tensor([1.0, 1, 1, 0, 0, 0]))
    # outside the training range the encoding saturates; a constant column reads 0
    torch.testing.assert_close(encoded[1, 0], torch.zeros(6))
    torch.testing.assert_close(encoded[1, 1], torch.ones(6))
    assert encoded[:, 2].abs().sum() == 0
    # the bins are state: a fresh module scores the same after loading, and a fitted one keeps them
    categorical, numeric = _batch()
    before = model(categorical, numeric)
    fresh = PropensityModule(META, numeric_embedding="piecewise_linear", bins=6, report=False).eval()
    fresh.load_state_dict(model.state_dict())
    torch.testing.assert_close(fresh(categorical, numeric), before)
    fresh.trainer = type(
        "Trainer",
        (),
        {
            "datamodule": type(
                "Data",
                (),
                {"tensors": {"train": {"numeric": train_numeric * 10, "target": torch.zeros(400)}}},
            )
        },
    )()
    fresh.setup("fit")
    torch.testing.assert_close(fresh(categorical, numeric), before)
    with pytest.raises(AdlabError, match="model.bins"):
        PropensityModule(META, numeric_embedding="piecewise_linear", bins=0)
    with pytest.raises(AdlabError, match="piecewise_linear"):
        unfitted = PropensityModule(META, numeric_embedding="piecewise_linear", report=False)
        unfitted.trainer = type("Trainer", (), {"datamodule": None})()
        unfitted.setup("fit")


class _Weights(L.Callback):
    """The raw weights after every optimizer step, and the weights each validation scored, by step."""

    def __init__(self):
        self.steps, self.validated = {}, {}

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_index):
        if trainer.global_step:  # step 0: no optimizer step yet (gradient accumulation)
            self.steps[trainer.global_step] = [p.detach().clone() for p in module.net.parameters()]

    def on_validation_epoch_end(self, trainer, module):
        if not trainer.sanity_checking:
            self.validated[trainer.global_step] = [p.detach().clone() for p in module.net.parameters()]


def _fit_tiny(directory, epochs, ema_decay, ckpt_path=None, **trainer_options):
    """Fit a small PropensityModule on 4 batches an epoch (no dropout, unshuffled: deterministic), saving
    a checkpoint after every validation and one after every optimizer step (under `steps/`)."""
    generator = torch.Generator().manual_seed(0)
    categorical = torch.stack(
        [torch.randint(0, 5, (128,), generator=generator), torch.randint(0, 3, (128,), generator=generator)],
        1,
    )
    numeric = torch.randn(128, 3, generator=generator)
    target = (numeric[:, 0] + torch.randn(128, generator=generator) > 1).float()
    rows = [
        {"categorical": c, "numeric": x, "target": y}
        for c, x, y in zip(categorical, numeric, target, strict=True)
    ]
    torch.manual_seed(0)
    model = PropensityModule(
        META, members=2, hidden_sizes=[8], dropout=0.0, ema_decay=ema_decay, report=False, calibration=None
    )
    weights = _Weights()
    checkpoints = L.pytorch.callbacks.ModelCheckpoint(
        directory, "{step}", monitor="val/auroc", mode="max", save_top_k=-1, save_last=True
    )
    every_step = L.pytorch.callbacks.ModelCheckpoint(
        directory / "steps", "{step}", every_n_train_steps=1, save_top_k=-1
    )
    trainer = L.Trainer(
        max_epochs=epochs,
        callbacks=[weights, checkpoints, every_step],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        **trainer_options,
    )
    loader = torch.utils.data.DataLoader(rows, batch_size=32)
    trainer.fit(model, loader, loader, ckpt_path=ckpt_path)
    return weights


@pytest.mark.parametrize(
    "options",
    [{}, {"val_check_interval": 0.5}, {"accumulate_grad_batches": 2}],
    ids=["epoch", "half", "accumulate"],
)
def test_weight_average_is_validated_and_checkpointed_while_training_goes_on_from_raw_weights(
    tmp_path, options
):
    decay = 0.8
    weights = _fit_tiny(tmp_path / "ema", 3, decay, **options)
    # training is untouched by the average: the raw trajectory equals a fit without it
    plain = _fit_tiny(tmp_path / "plain", 3, None, **options)
    assert sorted(weights.steps) == sorted(plain.steps)
    for step, expected in plain.steps.items():
        for raw, reference in zip(weights.steps[step], expected, strict=True):
            torch.testing.assert_close(raw, reference, rtol=0, atol=0)
    # each validation scored the warmed-up average of the raw weights after every optimizer step so far,
    # and the checkpoint written after it holds that average, with the raw weights beside it
    average = None
    for count, step in enumerate(sorted(weights.steps)):
        raw = weights.steps[step]
        step_decay = min(decay, (1 + count) / (10 + count))
        average = [w.clone() for w in raw] if average is None else average
        average = [a * step_decay + w * (1 - step_decay) for a, w in zip(average, raw, strict=True)]
        # a checkpoint written at this step holds the average with this step's update in it
        saved = torch.load(tmp_path / "ema" / "steps" / f"step={step}.ckpt", weights_only=False)
        assert saved["adlab_weight_average"]["updates"] == count + 1
        for got, want in zip(saved["adlab_weight_average"]["weights"], average, strict=True):
            torch.testing.assert_close(got, want)
        if step in weights.validated:
            for got, want in zip(weights.validated[step], average, strict=True):
                torch.testing.assert_close(got, want)
            assert not all(torch.equal(a, w) for a, w in zip(average, raw, strict=True))
            checkpoint = torch.load(tmp_path / "ema" / f"step={step}.ckpt", weights_only=False)
            saved = [value for key, value in checkpoint["state_dict"].items() if key.startswith("net.")]
            for got, want in zip(saved, average, strict=True):
                torch.testing.assert_close(got, want)
            for got, want in zip(checkpoint["adlab_weight_average"]["raw"], raw, strict=True):
                torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert len(weights.validated) == (6 if options.get("val_check_interval") else 3)
    # resumed after 2 epochs, a fit goes on from the raw weights and the average: the same as straight through
    two = _fit_tiny(tmp_path / "two", 2, decay, **options)
    resumed = _fit_tiny(tmp_path / "resumed", 3, decay, ckpt_path=tmp_path / "two" / "last.ckpt", **options)
    for step in resumed.steps:
        for got, want in zip(resumed.steps[step], weights.steps[step], strict=True):
            torch.testing.assert_close(got, want)
    final = max(weights.validated)
    for got, want in zip(resumed.validated[final], weights.validated[final], strict=True):
        torch.testing.assert_close(got, want)
    assert set(two.steps) < set(weights.steps)
    with pytest.raises(AdlabError, match=r"model.ema_decay=1\.0: expected a decay between 0 and 1"):
        PropensityModule(META, ema_decay=1.0)


@pytest.mark.parametrize("embedding", ["periodic", "piecewise_linear"])
def test_merged_fold_networks_score_exactly_their_mean(embedding):
    torch.manual_seed(0)
    folds = []
    for columns in ([0, 2], [1, 2], [2, 0]):
        module = PropensityModule(
            META, members=2, hidden_sizes=[4], select_numeric=2, numeric_embedding=embedding, report=False
        )
        module.numeric_index.copy_(torch.tensor(sorted(columns)))
        module.numeric_selected.fill_(True)
        if embedding == "piecewise_linear":
            # each fold's own bins
            module.net.numeric_embedding.fit(torch.randn(50, 2) * (1 + columns[0]))
        folds.append(module.eval())
    merged = merge_cross_fitted(folds, torch.arange(6.0), torch.zeros(6)).eval()
    # the union of the folds' columns, each member reading only its own fold's columns
    assert merged.hparams.members == 6 and merged.numeric_index.tolist() == [0, 1, 2]
    categorical, numeric = _batch()
    expected = torch.stack([module(categorical, numeric) for module in folds]).mean(dim=0)
    torch.testing.assert_close(merged(categorical, numeric), expected, atol=1e-5, rtol=1e-5)
    # its val metrics read the 6 stored out-of-fold scores: a val split of another size is refused
    merged.check_val_rows(6)
    with pytest.raises(AdlabError, match="stored out-of-fold scores for 6"):
        merged.check_val_rows(5)
    # the ensemble cannot be trained further (its members saw different folds)
    merged.trainer = type("Trainer", (), {"datamodule": None})()
    with pytest.raises(AdlabError, match="cross-fitted"):
        merged.setup("fit")


def test_cross_fitting_scores_val_out_of_fold_and_tests_the_merged_ensemble(train_config, tmp_path):
    overrides = [
        "experiment=propensity_coil",
        "model.members=2",
        "model.select_numeric=3",
        "data.folds=3",
        "model.numeric_embedding=piecewise_linear",
        "model.ema_decay=0.9",
    ]
    metrics = train(train_config(overrides))
    run = tmp_path / "run"
    pool = MarketingDataModule(
        TabularSource(**{k: v for k, v in train_config(overrides).data.source.items() if k != "_target_"}),
        split="official",
        folds=3,
        seed=1,
    )
    pool.setup()
    # the folds partition the official training rows, stratified; the official test set is untouched
    assert np.array_equal(pool.splits["train"], pool.splits["val"])
    assert np.array_equal(
        np.bincount(pool.fold_of), [len(pool.pool) // 3 + (i < len(pool.pool) % 3) for i in range(3)]
    )
    buyers = pool.tensors["train"]["target"].numpy() == 1
    assert max(np.bincount(pool.fold_of[buyers])) - min(np.bincount(pool.fold_of[buyers])) <= 1
    # each fold's data module is cut from the pool, and equals a module set up afresh with data.fold=k
    for fold in range(3):
        view, fresh = (
            pool.fold_view(fold),
            MarketingDataModule(pool.source, split="official", folds=3, fold=fold),
        )
        fresh.setup()
        for stage in ("train", "val", "test"):
            assert np.array_equal(view.splits[stage], fresh.splits[stage])
            for name, tensor in fresh.tensors[stage].items():
                assert torch.equal(view.tensors[stage][name], tensor), (stage, name)
        assert view.meta == fresh.meta
        for name in inspect.signature(MarketingDataModule).parameters:
            if name not in ("source", "fold"):
                assert getattr(view, name) == getattr(pool, name), name
        assert json.dumps(view.preprocessing, sort_keys=True) == json.dumps(
            fresh.preprocessing, sort_keys=True
        )
    # each fold network was selected on its own fold; their out-of-fold scores make the val metrics
    out_of_fold = torch.zeros(len(pool.pool))
    fold_networks = []
    for fold in range(3):
        module = PropensityModule.load_from_checkpoint(
            run / "folds" / str(fold) / "checkpoints" / "best.ckpt", map_location="cpu"
        ).eval()
        held_out = pool.fold_of == fold
        tensors = {name: t[torch.from_numpy(held_out)] for name, t in pool.tensors["train"].items()}
        with torch.no_grad():
            out_of_fold[torch.from_numpy(held_out)] = module(tensors["categorical"], tensors["numeric"])
        fold_networks.append(module)
        # its piecewise-linear bins are quantiles of its own train rows only
        own = pool.tensors["train"]["numeric"][torch.from_numpy(~held_out)][:, module.numeric_index]
        expected_edges = torch.zeros_like(module.net.numeric_embedding.edges[0, 0])
        for column, values in enumerate(own.T):
            levels = torch.linspace(0, 1, expected_edges.shape[1], dtype=torch.float64)
            unique = torch.unique(torch.quantile(values.double(), levels, interpolation="lower"))
            expected_edges[column] = torch.cat(
                [unique, unique[-1:].expand(len(levels) - len(unique))]
            ).float()
        torch.testing.assert_close(module.net.numeric_embedding.edges[1, 0], expected_edges)
    target = pool.tensors["train"]["target"]
    expected_auroc = PropensityMetrics(0.2)
    expected_auroc.update(torch.sigmoid(out_of_fold), target)
    assert metrics["val/auroc"] == pytest.approx(float(expected_auroc.compute()["auroc"]), abs=1e-6)
    # the tested checkpoint is the merged ensemble: the mean of the fold networks on test
    test = pool.tensors["test"]
    ensemble = PropensityModule.load_from_checkpoint(
        run / "checkpoints" / "best.ckpt", map_location="cpu"
    ).eval()
    with torch.no_grad():
        expected = torch.stack([m(test["categorical"], test["numeric"]) for m in fold_networks]).mean(dim=0)
        torch.testing.assert_close(
            ensemble(test["categorical"], test["numeric"]), expected, atol=1e-5, rtol=1e-5
        )
    torch.testing.assert_close(ensemble.out_of_fold_logits, out_of_fold, atol=1e-5, rtol=1e-5)
    # baselines are cross-fitted too, and adlab-eval reproduces the run from the merged checkpoint
    for stage in ("val", "test"):
        assert f"baseline/logreg/{stage}/auroc" in metrics
    evaluated = evaluate(
        compose_config(
            "eval",
            [f"ckpt_path={run / 'checkpoints' / 'best.ckpt'}", "extras.print_config=false"],
            tmp_path / "eval",
        )
    )
    for key in ("val/auroc", "test/auroc", "test/top20_hits"):
        assert evaluated[key] == pytest.approx(metrics[key], abs=1e-6), key
    # the merged ensemble (per-fold bins stacked) exports with the model's scores
    package = export_checkpoint(run / "checkpoints" / "best.ckpt", "onnx", tmp_path / "package")
    assert json.loads((package / "metadata.json").read_text())["parity"]["max_abs_error"] <= 1e-5
    # debug limits on val batches (the merged ensemble scores only the rows its limited val loader serves)
    limited = train(
        train_config([*overrides, "debug=limit", "data.eval_batch_size=32"], output_dir=tmp_path / "limited")
    )
    assert 0 <= limited["val/auroc"] <= 1


def test_calibrators_fitted_on_scores_repair_overconfidence():
    generator = np.random.default_rng(0)
    true_logits = generator.normal(-2.0, 1.0, 20000)
    targets = generator.binomial(1, 1 / (1 + np.exp(-true_logits)))
    overconfident = 3.0 * true_logits  # a scorer that ranks right but is 3x too sure
    raw = log_loss(1 / (1 + np.exp(-overconfident)), targets)
    temperature = fit_calibrator("temperature", overconfident, targets)
    assert temperature.temperature == pytest.approx(3.0, rel=0.1)
    assert log_loss(temperature(overconfident), targets) < raw - 0.05
    isotonic = fit_calibrator("isotonic", overconfident, targets)
    calibrated = isotonic(np.sort(overconfident))
    assert np.all(np.diff(calibrated) >= 0)
    assert log_loss(isotonic(overconfident), targets) < raw - 0.05
    rows = reliability_bins(temperature(overconfident), targets)
    assert sum(row["count"] for row in rows) == len(targets)
    assert max(abs(row["predicted"] - row["observed"]) for row in rows) < 0.03


def test_coil_run_writes_marketing_outputs_and_both_baselines(train_config, tmp_path, wandb_media):
    cfg = train_config(["experiment=propensity_coil", "model.members=2", "seed=2", "logger=wandb"])
    metrics = train(cfg)
    run = tmp_path / "run"
    written = json.loads((run / "metrics.json").read_text())
    for plot in ("gains_lift", "calibration"):
        assert (run / "plots" / f"{plot}.png").stat().st_size > 5000, plot
    with open(run / "decile_table.csv", newline="") as stream:
        deciles = list(csv.DictReader(stream))
    assert [int(row["decile"]) for row in deciles] == list(range(1, 11))
    assert sum(int(row["customers"]) for row in deciles) == 300  # the tiny official test split
    assert float(deciles[-1]["cumulative_capture"]) == pytest.approx(1.0)
    # the top two deciles are the top 20%: their buyers are test/top20_hits
    assert int(deciles[0]["buyers"]) + int(deciles[1]["buyers"]) == written["test/top20_hits"]
    for key in ("test/ece", "test/ece_calibrated", "test/log_loss_calibrated"):
        assert 0 <= written[key] <= 1, key
    for baseline in ("logreg", "gbm"):
        for stage in ("val", "test"):
            for name in ("auroc", "top20_hits", "ece"):
                assert f"baseline/{baseline}/{stage}/{name}" in written
    assert written["test/top20_hits"] == pytest.approx(metrics["test/top20_hits"])
    # the offline W&B run received the plots and the decile table
    assert {"plots/gains_lift", "plots/calibration", "tables/decile_table"} <= set(wandb_media)


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
    from adlab.utils.build import build_datamodule

    metrics = train(cfg)
    # the same config gives the same generated table and split; score its test rows with the selected model
    datamodule = build_datamodule(cfg)
    model = PropensityModule.load_from_checkpoint(tmp_path / "web" / "checkpoints" / "best.ckpt").eval()
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


def _write_job(job: Path, seed: int, metrics: dict[str, float], overrides: list[str] | None = None) -> None:
    """A multirun job folder as Hydra and adlab-train leave it."""
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "config.yaml").write_text(f"seed: {seed}\n")
    if overrides is not None:
        (job / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    (job / "metrics.json").write_text(json.dumps(metrics))


def _seeds_summary(directory: Path) -> str:
    command = [sys.executable, str(ROOT / "scripts" / "seeds_summary.py"), str(directory)]
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout


def test_seeds_summary_prints_mean_and_std(tmp_path):
    for seed, hits in ((1, 100.0), (2, 110.0), (3, 120.0)):
        metrics = {"test/top20_hits": hits, "baseline/logreg/test/top20_hits": hits + 1, "val/auroc": 0.7}
        _write_job(tmp_path / str(seed - 1), seed, metrics)
    output = _seeds_summary(tmp_path)
    assert "110 ± 10" in output and "111 ± 10" in output
    assert "seed 3: model=120  logreg=121" in output
    assert "==" not in output  # one setting: one table
    # a multirun over a second setting: one table per setting, each over its own seeds
    for seed, hits in ((1, 90.0), (2, 94.0)):
        _write_job(
            tmp_path / str(seed + 2),
            seed,
            {"test/top20_hits": hits},
            [f"seed={seed}", "model.ema_decay=0.95"],
        )
    plain, averaged = _seeds_summary(tmp_path).split("== model.ema_decay=0.95")
    assert "== (no overrides)" in plain and "3 runs" in plain and "110 ± 10" in plain
    assert "2 runs" in averaged and "92 ± 2.8" in averaged and "seed 2: model=94" in averaged
