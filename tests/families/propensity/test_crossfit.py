"""Cross-fitting (`fit=crossfit`): the pool and its folds, the fold networks, the merged ensemble that is
validated out of fold and tested once, cross-fitted baselines, and adlab-eval / adlab-export of the result."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from adlab.data.datamodule import MarketingDataModule
from adlab.data.splits import fold_assignment
from adlab.errors import AdlabError
from adlab.eval import evaluate
from adlab.export import export_checkpoint
from adlab.families.propensity.crossfit import CrossFit
from adlab.harness.build import build_datamodule
from adlab.harness.checkpoints import load_module
from adlab.harness.fit import PlainFit
from adlab.metrics.binary import PropensityMetrics
from adlab.train import train
from tests.helpers import TINY, compose_config

FOLDS = 3
OVERRIDES = [
    "experiment=propensity_coil",
    "model.members=2",
    "model.select_numeric=3",
    f"fit.folds={FOLDS}",
    "model.numeric_embedding=piecewise_linear",
    "model.ema_decay=0.9",
]


@dataclass
class CrossFitRun:
    """One cross-fitted training run on the tiny CoIL-like data, shared by the tests of this file."""

    config: DictConfig
    metrics: dict[str, Any]
    directory: Path
    pool: MarketingDataModule
    fold_of: np.ndarray

    def fold_network(self, fold: int) -> Any:
        return load_module(self.directory / "folds" / str(fold) / "checkpoints" / "best.ckpt")

    def held_out(self, fold: int) -> torch.Tensor:
        return torch.from_numpy(self.fold_of == fold)


def _config(coil_data_dir: Path, log_dir: Path, output_dir: Path, overrides: list[str]):
    return compose_config(
        "train",
        [f"paths.data_dir={coil_data_dir}", f"paths.log_dir={log_dir}", *TINY, *overrides],
        output_dir,
    )


@pytest.fixture(scope="module")
def run(coil_data_dir, tmp_path_factory) -> CrossFitRun:
    directory = tmp_path_factory.mktemp("crossfit")
    cfg = _config(coil_data_dir, directory, directory / "run", OVERRIDES)
    metrics = train(cfg)
    strategy = CrossFit(FOLDS)
    pool = build_datamodule(cfg, strategy)
    return CrossFitRun(cfg, metrics, directory / "run", pool, strategy.fold_of(pool))


@pytest.fixture
def pool(train_config) -> MarketingDataModule:
    """The pool data module of the cross-fitted config (set up, nothing trained)."""
    return build_datamodule(train_config(OVERRIDES), CrossFit(FOLDS))


def test_pool_is_the_train_and_val_rows_served_as_both(pool, train_config):
    plain = build_datamodule(train_config(["experiment=propensity_coil", "fit=plain"]))
    rows = np.sort(np.concatenate([plain.splits["train"], plain.splits["val"]]))
    assert np.array_equal(pool.splits["train"], rows) and np.array_equal(pool.splits["val"], rows)
    # the official test set is untouched
    assert np.array_equal(pool.splits["test"], plain.splits["test"])
    assert torch.equal(pool.tensors["test"]["target"], plain.tensors["test"]["target"])


def test_folds_partition_the_pool_stratified(pool):
    fold_of = CrossFit(FOLDS).fold_of(pool)
    rows = len(pool.splits["train"])
    assert np.array_equal(np.bincount(fold_of), [rows // FOLDS + (i < rows % FOLDS) for i in range(FOLDS)])
    buyers = pool.tensors["train"]["target"].numpy() == 1
    assert max(np.bincount(fold_of[buyers])) - min(np.bincount(fold_of[buyers])) <= 1


def test_preprocessing_is_fitted_once_on_the_pool(pool):
    # every fold's network sees the pool's encoding
    for fold in CrossFit(FOLDS).cut(pool):
        assert fold.data.features is pool.features
        assert fold.data.meta.cardinalities == pool.meta.cardinalities


def test_a_fold_holds_out_its_rows_as_val(pool):
    for index, fold in enumerate(CrossFit(FOLDS).cut(pool)):
        assert np.array_equal(fold.held_out, CrossFit(FOLDS).fold_of(pool) == index)
        assert np.array_equal(fold.data.splits["val"], pool.splits["train"][fold.held_out])
        assert np.array_equal(fold.data.splits["train"], pool.splits["train"][~fold.held_out])
        held_out = torch.from_numpy(fold.held_out)
        for name, tensor in pool.tensors["train"].items():
            assert torch.equal(fold.data.tensors["val"][name], tensor[held_out]), name
            assert torch.equal(fold.data.tensors["train"][name], tensor[~held_out]), name


def test_a_fold_network_starts_from_its_own_train_rows_positive_rate(pool):
    for fold in CrossFit(FOLDS).cut(pool):
        expected = float(fold.data.tensors["train"]["target"].float().mean())
        assert fold.data.meta.positive_rate == expected
        assert fold.data.meta.rows == {stage: len(rows) for stage, rows in fold.data.splits.items()}


def test_a_fold_cut_from_the_pool_equals_the_fold_set_up_afresh(pool, train_config):
    # what adlab-eval rebuilds for a fold network's checkpoint (fit.fold=k)
    for index, fold in enumerate(CrossFit(FOLDS).cut(pool)):
        fresh = build_datamodule(train_config([*OVERRIDES, f"fit.fold={index}"]), CrossFit(FOLDS, fold=index))
        for stage in ("train", "val", "test"):
            assert np.array_equal(fold.data.splits[stage], fresh.splits[stage])
            for name, tensor in fresh.tensors[stage].items():
                assert torch.equal(fold.data.tensors[stage][name], tensor), (stage, name)
        assert fold.data.meta == fresh.meta
        assert fold.data.features == fresh.features
        assert fold.data.batch_size == pool.batch_size and fold.data.seed == pool.seed


@pytest.mark.slow
def test_val_metrics_are_the_fold_networks_out_of_fold_scores(run):
    out_of_fold = torch.zeros(len(run.fold_of))
    for fold in range(FOLDS):
        tensors = {name: t[run.held_out(fold)] for name, t in run.pool.tensors["train"].items()}
        with torch.no_grad():
            out_of_fold[run.held_out(fold)] = run.fold_network(fold)(
                tensors["categorical"], tensors["numeric"]
            )
    expected = PropensityMetrics(0.2)
    expected.update(torch.sigmoid(out_of_fold), run.pool.tensors["train"]["target"])
    assert run.metrics["val/auroc"] == pytest.approx(float(expected.compute()["auroc"]), abs=1e-6)
    ensemble = load_module(run.directory / "checkpoints" / "best.ckpt")
    torch.testing.assert_close(ensemble.out_of_fold_logits, out_of_fold, atol=1e-5, rtol=1e-5)


@pytest.mark.slow
def test_each_fold_network_fits_its_bins_on_its_own_train_rows(run):
    for fold in range(FOLDS):
        network = run.fold_network(fold)
        own = run.pool.tensors["train"]["numeric"][~run.held_out(fold)][:, network.numeric_index]
        expected = torch.zeros_like(network.net.numeric_embedding.edges[0, 0])
        levels = torch.linspace(0, 1, expected.shape[1], dtype=torch.float64)
        for column, values in enumerate(own.T):
            unique = torch.unique(torch.quantile(values.double(), levels, interpolation="lower"))
            expected[column] = torch.cat([unique, unique[-1:].expand(len(levels) - len(unique))]).float()
        torch.testing.assert_close(network.net.numeric_embedding.edges[1, 0], expected)


@pytest.mark.slow
def test_the_tested_ensemble_scores_the_mean_of_the_fold_networks(run):
    test = run.pool.tensors["test"]
    ensemble = load_module(run.directory / "checkpoints" / "best.ckpt")
    with torch.no_grad():
        networks = [run.fold_network(fold) for fold in range(FOLDS)]
        expected = torch.stack([n(test["categorical"], test["numeric"]) for n in networks]).mean(dim=0)
        torch.testing.assert_close(
            ensemble(test["categorical"], test["numeric"]), expected, atol=1e-5, rtol=1e-5
        )


@pytest.mark.slow
def test_baselines_are_cross_fitted_like_the_networks(run):
    baseline = CrossFit(FOLDS).evaluate_baseline(instantiate(run.config.baselines.logreg), run.pool)
    for key, value in baseline.items():
        assert run.metrics[f"baseline/logreg/{key}"] == pytest.approx(value), key
    # out-of-fold val over the whole pool, not one fold
    assert run.metrics["baseline/logreg/val/top20_hits"] > 0


@pytest.mark.slow
def test_adlab_eval_reproduces_the_run_from_the_merged_checkpoint(run, tmp_path):
    checkpoint = run.directory / "checkpoints" / "best.ckpt"
    evaluated = evaluate(
        compose_config("eval", [f"ckpt_path={checkpoint}", "extras.print_config=false"], tmp_path / "eval")
    )
    for key in ("val/auroc", "test/auroc", "test/top20_hits", "test/ece_calibrated"):
        assert evaluated[key] == pytest.approx(run.metrics[key], abs=1e-6), key


@pytest.mark.slow
def test_adlab_eval_of_a_fold_checkpoint_validates_on_its_fold(run, tmp_path):
    checkpoint = run.directory / "folds" / "1" / "checkpoints" / "best.ckpt"
    evaluated = evaluate(
        compose_config("eval", [f"ckpt_path={checkpoint}", "extras.print_config=false"], tmp_path / "eval")
    )
    fold_metrics = pd.read_csv(run.directory / "folds" / "1" / "csv" / "metrics.csv")
    assert evaluated["val/auroc"] == pytest.approx(fold_metrics["val/auroc"].max(), abs=1e-6)


@pytest.mark.slow
def test_the_merged_ensemble_exports_with_the_models_scores(run, tmp_path):
    package = export_checkpoint(run.directory / "checkpoints" / "best.ckpt", "onnx", tmp_path / "package")
    assert json.loads((package / "metadata.json").read_text())["parity"]["max_rel_error"] <= 1e-5


def test_debug_limits_on_val_batches(train_config, tmp_path):
    # the merged ensemble scores only the rows its limited val loader serves
    limited = train(train_config([*OVERRIDES, "debug=limit", "data.eval_batch_size=32"]))
    assert 0 <= limited["val/auroc"] <= 1


@pytest.fixture
def table_config(train_config, tmp_path):
    path = tmp_path / "t.csv"
    rng = np.random.default_rng(0)
    pd.DataFrame({"x": rng.normal(size=200), "bought": rng.integers(0, 2, 200)}).to_csv(path, index=False)
    return lambda overrides: train_config(
        ["data=tabular", f"data.source.path={path}", "data.source.target=bought", *overrides]
    )


def test_fold_settings_are_checked_before_anything_is_written(table_config, tmp_path):
    with pytest.raises(AdlabError, match=r"fit\.folds=1: expected at least 2 folds"):
        train(table_config(["fit=crossfit", "fit.folds=1"]))
    with pytest.raises(AdlabError, match=r"fit\.fold=3: expected null or 0\.\.fit\.folds-1"):
        train(table_config(["fit=crossfit", "fit.folds=3", "fit.fold=3"]))
    with pytest.raises(AdlabError, match=r"cannot resume from or test a ckpt_path"):
        train(table_config(["fit=crossfit", "fit.folds=3", f"ckpt_path={tmp_path / 't.csv'}"]))
    assert not (tmp_path / "run").exists()


def test_a_pool_over_max_pool_rows_is_fitted_plainly(train_config, tmp_path):
    plain = build_datamodule(train_config(["experiment=propensity_coil", "fit=plain"]))
    pool_rows = len(plain.splits["train"]) + len(plain.splits["val"])
    strategy = CrossFit(FOLDS, max_pool_rows=pool_rows - 1)
    over = build_datamodule(train_config(OVERRIDES), strategy)
    assert strategy.plain
    for stage, rows in plain.splits.items():
        assert np.array_equal(over.splits[stage], rows), stage
    metrics = train(train_config([*OVERRIDES, f"fit.max_pool_rows={pool_rows - 1}"]))
    assert not (tmp_path / "run" / "folds").exists() and "baseline/logreg/val/auroc" in metrics
    assert load_module(tmp_path / "run" / "checkpoints" / "best.ckpt").out_of_fold_logits is None
    # at the limit, it cross-fits; and a strategy that fitted a larger pool plainly cross-fits this one
    assert build_datamodule(train_config(OVERRIDES), CrossFit(FOLDS, max_pool_rows=pool_rows)).splits[
        "train"
    ].shape == (pool_rows,)
    strategy.max_pool_rows = pool_rows
    assert build_datamodule(train_config(OVERRIDES), strategy).splits["train"].shape == (pool_rows,)
    assert not strategy.plain
    with pytest.raises(AdlabError, match=r"fit\.max_pool_rows=0: expected null or a positive"):
        CrossFit(FOLDS, max_pool_rows=0)


def test_too_many_folds_for_the_rows_is_an_error():
    with pytest.raises(AdlabError, match=r"fit\.folds=4: 4 train and val rows leave a fold empty"):
        fold_assignment(np.array([0, 0, 1, 1]), 4, seed=1)


@pytest.mark.parametrize("experiment", ["propensity_csv", "propensity_telco", "propensity_mlc"])
def test_the_bring_your_own_table_presets_cross_fit_tables_up_to_20000_rows(experiment, tmp_path):
    cfg = compose_config("train", [f"experiment={experiment}"], tmp_path)
    fit = instantiate(cfg.fit)
    assert isinstance(fit, CrossFit) and fit.folds == 5 and fit.max_pool_rows == 20_000
    # fit=plain (to resume, or for several devices) replaces the whole choice
    plain = compose_config("train", [f"experiment={experiment}", "fit=plain"], tmp_path)
    assert isinstance(instantiate(plain.fit), PlainFit)
