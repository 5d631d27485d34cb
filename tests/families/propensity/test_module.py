"""`PropensityModule` on its own: the ensemble, column choice and bins fitted on train, its typed meta, the
weight average and the merge of cross-fitted fold networks."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from adlab.data.features import DataMeta, TabularMeta, TrainSplit
from adlab.errors import AdlabError
from adlab.families.propensity.features import l1_path_ranking
from adlab.families.propensity.module import PropensityModule, merge_cross_fitted

META = TabularMeta(categorical=["a", "b"], cardinalities=[5, 3], numeric=["x", "y", "z"], positive_rate=0.1)


def _batch(rows: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    categorical = torch.stack([torch.randint(0, 5, (rows,)), torch.randint(0, 3, (rows,))], dim=1)
    return categorical, torch.randn(rows, 3)


def _train_split(numeric: torch.Tensor, target: torch.Tensor | None = None) -> TrainSplit:
    target = torch.zeros(len(numeric)) if target is None else target
    return TrainSplit(tensors={"numeric": numeric, "target": target}, meta=META)


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


def test_meta_is_typed_in_the_module_and_plain_in_its_hyperparameters():
    model = PropensityModule(META, report=False)
    assert model.meta == META
    # checkpoints hold plain containers only (they load with weights_only=True) and rebuild the module
    assert model.hparams.meta == META.to_dict() and isinstance(model.hparams.meta, dict)
    rebuilt = PropensityModule(**model.hparams)
    assert rebuilt.meta == META
    with pytest.raises(AdlabError, match="model=propensity needs tabular data"):
        PropensityModule(DataMeta(dataset="photos"))


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


def test_unknown_columns_and_calibrations_are_config_errors():
    with pytest.raises(AdlabError, match="model.features"):
        PropensityModule(META, features=["nope"])
    with pytest.raises(AdlabError, match="model.calibration"):
        PropensityModule(META, calibration="platt")
    for bad in (0, 4):
        with pytest.raises(AdlabError, match="model.select_numeric"):
            PropensityModule(META, select_numeric=bad)
    with pytest.raises(AdlabError, match="model.bins"):
        PropensityModule(META, numeric_embedding="piecewise_linear", bins=0)


@pytest.fixture
def buyers() -> tuple[torch.Tensor, torch.Tensor]:
    """600 customers whose buying depends on z strongly and on x weakly; y is noise."""
    generator = torch.Generator().manual_seed(0)
    numeric = torch.randn(600, 3, generator=generator)
    logits = 2.5 * numeric[:, 2] + 0.8 * numeric[:, 0] - 2.0
    return numeric, torch.bernoulli(torch.sigmoid(logits), generator=generator)


def test_l1_path_ranks_the_informative_columns_first(buyers):
    numeric, target = buyers
    assert l1_path_ranking(numeric.numpy(), target.numpy()) == [2, 0, 1]


def test_select_numeric_reads_only_the_columns_ranked_on_train(buyers):
    model = PropensityModule(META, select_numeric=1, report=False).eval()
    assert model.select_numeric_columns({"numeric": buyers[0], "target": buyers[1]}) == ["z"]
    categorical, numeric = _batch()
    before = model(categorical, numeric)
    numeric[:, :2] = 100.0  # x and y are not read
    torch.testing.assert_close(model(categorical, numeric), before)
    two = PropensityModule(META, select_numeric=2, report=False)
    assert two.select_numeric_columns({"numeric": buyers[0], "target": buyers[1]}) == ["x", "z"]


def test_fit_to_train_selects_the_columns(buyers):
    model = PropensityModule(META, select_numeric=1, report=False)
    assert model.numeric_index.tolist() == [0]  # a placeholder until fitted
    model.fit_to_train(_train_split(*buyers))
    assert model.numeric_index.tolist() == [2] and bool(model.numeric_selected)


def test_selected_columns_travel_in_the_state_dict(buyers):
    model = PropensityModule(META, select_numeric=1, report=False).eval()
    model.fit_to_train(_train_split(*buyers))
    categorical, numeric = _batch()
    fresh = PropensityModule(META, select_numeric=1, report=False).eval()
    fresh.load_state_dict(model.state_dict())
    assert fresh.numeric_index.tolist() == [2]
    torch.testing.assert_close(fresh(categorical, numeric), model(categorical, numeric))
    # loading leaves the candidate columns intact
    assert fresh.numeric_candidates.tolist() == [0, 1, 2] and bool(fresh.numeric_selected)


def test_fit_to_train_keeps_the_columns_of_a_trained_network(buyers):
    trained = PropensityModule(META, select_numeric=1, report=False)
    trained.fit_to_train(_train_split(*buyers))
    fresh = PropensityModule(META, select_numeric=1, report=False)
    fresh.load_state_dict(trained.state_dict())
    numeric, target = buyers
    # z now sits in column 0: a re-ranking would switch the trained network's first layer to it
    fresh.fit_to_train(_train_split(numeric[:, [2, 0, 1]], target))
    assert fresh.numeric_index.tolist() == [2]


@pytest.fixture
def train_numeric() -> torch.Tensor:
    """400 rows: x a discrete code with 4 levels; y continuous; z constant."""
    generator = torch.Generator().manual_seed(0)
    return torch.stack(
        [
            torch.randint(0, 4, (400,), generator=generator).float(),
            torch.randn(400, generator=generator),
            torch.full((400,), 2.0),
        ],
        dim=1,
    )


def test_coinciding_quantiles_merge_into_one_bin():
    # a skewed code (90% zeros, then 1, 2, 3): its bins merge into one, 0 to 3
    skewed = PropensityModule(META, numeric_embedding="piecewise_linear", bins=6, report=False)
    code = torch.cat([torch.zeros(900), torch.tensor([1.0, 2.0, 3.0]).repeat_interleave(34)[:100]])
    skewed.fit_bins({"numeric": code[:, None].expand(-1, 3)})
    assert skewed.net.numeric_embedding.edges[0, 0, 0].tolist() == [0, 3, 3, 3, 3, 3, 3]
    torch.testing.assert_close(
        skewed.net.numeric_embedding.encode(torch.full((1, 3), 1.0))[0, 0, 0],
        torch.tensor([1 / 3, 0, 0, 0, 0, 0]),
    )


def test_bins_refuse_values_that_are_not_finite():
    model = PropensityModule(META, numeric_embedding="piecewise_linear", bins=6, report=False)
    with pytest.raises(AdlabError, match="NaN or infinite"):
        model.fit_to_train(_train_split(torch.full((5, 3), float("nan"))))


def test_fit_to_train_sets_the_bins_to_train_quantiles(train_numeric):
    model = PropensityModule(META, numeric_embedding="piecewise_linear", bins=6, report=False)
    embedding = model.net.numeric_embedding
    assert not bool(embedding.fitted)
    model.fit_to_train(_train_split(train_numeric))
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


def test_bins_travel_in_the_state_dict_and_a_fitted_module_keeps_them(train_numeric):
    model = PropensityModule(META, numeric_embedding="piecewise_linear", bins=6, report=False).eval()
    model.fit_to_train(_train_split(train_numeric))
    categorical, numeric = _batch()
    before = model(categorical, numeric)
    fresh = PropensityModule(META, numeric_embedding="piecewise_linear", bins=6, report=False).eval()
    fresh.load_state_dict(model.state_dict())
    torch.testing.assert_close(fresh(categorical, numeric), before)
    fresh.fit_to_train(_train_split(train_numeric * 10))
    torch.testing.assert_close(fresh(categorical, numeric), before)


@pytest.mark.parametrize(
    "options", [{"select_numeric": 1}, {"numeric_embedding": "piecewise_linear"}], ids=["columns", "bins"]
)
def test_fitting_without_fit_to_train_is_refused(options):
    model = PropensityModule(META, report=False, **options)
    with pytest.raises(AdlabError, match=r"expected fit_to_train\(train split\) before trainer.fit"):
        model.on_fit_start()


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


def _fold_networks(embedding: str) -> list[PropensityModule]:
    """Three fold networks of 2 members, each reading its own 2 of the 3 numeric columns."""
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
    return folds


@pytest.mark.parametrize("embedding", ["periodic", "piecewise_linear"])
def test_merged_fold_networks_score_exactly_their_mean(embedding):
    folds = _fold_networks(embedding)
    merged = merge_cross_fitted(folds, torch.arange(6.0), torch.zeros(6)).eval()
    # the union of the folds' columns, each member reading only its own fold's columns
    assert merged.hparams.members == 6 and merged.numeric_index.tolist() == [0, 1, 2]
    categorical, numeric = _batch()
    expected = torch.stack([module(categorical, numeric) for module in folds]).mean(dim=0)
    torch.testing.assert_close(merged(categorical, numeric), expected, atol=1e-5, rtol=1e-5)


def test_merged_ensemble_refuses_a_val_split_of_another_size():
    merged = merge_cross_fitted(_fold_networks("periodic"), torch.arange(6.0), torch.zeros(6))
    # its val metrics read the 6 stored out-of-fold scores
    merged.check_val_rows(6)
    with pytest.raises(AdlabError, match="stored out-of-fold scores for 6"):
        merged.check_val_rows(5)


def test_merged_ensemble_cannot_be_trained_further():
    merged = merge_cross_fitted(_fold_networks("periodic"), torch.arange(6.0), torch.zeros(6))
    # its members saw different folds
    with pytest.raises(AdlabError, match="cross-fitted"):
        merged.setup("fit")
