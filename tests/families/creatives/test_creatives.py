"""The creatives family: GAN networks, manual optimisation, EMA, FID/KID/CAS scoring, experiments, generation."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import pytest
import torch
from hydra.utils import instantiate

from adlab.data.datasets.fashion_mnist import FASHION_MNIST_CLASSES
from adlab.data.features import DataMeta, TrainSplit
from adlab.data.sources.images import ImageSource
from adlab.data.synthetic import make_fashion_like
from adlab.errors import AdlabError
from adlab.eval import evaluate
from adlab.families.creatives.evaluation import (
    EvaluatorNet,
    GenerativeScores,
    new_classifier,
    train_evaluator,
)
from adlab.families.creatives.nets import diff_augment
from adlab.families.imagery.module import ImageryModule
from adlab.generate import generate
from adlab.train import train
from tests.helpers import compose_config

CLASSES = list(FASHION_MNIST_CLASSES)
META = {
    "kind": "images",
    "classes": CLASSES,
    "class_keys": [c.lower().replace("-", "_").replace("/", "_").replace(" ", "_") for c in CLASSES],
    "channels": 1,
    "image_size": [28, 28],
    "mean": [0.3],
    "std": [0.35],
}
FAST = ["extras.print_config=false", "callbacks.progress_bar=null"]
# narrow networks: the tests check wiring, not image quality
SMALL = [
    "model.generator.width=32",
    "model.discriminator.width=16",
    "data.batch_size=32",
    "data.eval_batch_size=64",
]
# the built-in evaluator and the CAS classifier on tiny data: a few hundred images, one or two epochs
QUICK_EVAL = ["model.cas_samples=200", "model.cas_epochs=1", "model.evaluator_epochs=2"]


@pytest.fixture(scope="module")
def fashion_dir(tmp_path_factory) -> Path:
    data_dir = tmp_path_factory.mktemp("creatives_data")
    make_fashion_like(data_dir)
    return data_dir


@pytest.fixture(scope="module")
def evaluator_ckpt(fashion_dir, tmp_path_factory) -> str:
    """An imagery classifier checkpoint trained by adlab on the fashion-like data (two batches)."""
    run = tmp_path_factory.mktemp("evaluator") / "run"
    overrides = [
        "experiment=imagery_fashion_cpu",
        f"paths.data_dir={fashion_dir}",
        "trainer.max_epochs=1",
        "+trainer.limit_train_batches=2",
        "model.misclassified_shown=0",
        *FAST,
    ]
    train(compose_config("train", overrides, run))
    return str(run / "checkpoints" / "best.ckpt")


def _model(preset: str, overrides: list[str] = ()) -> L.LightningModule:
    cfg = compose_config("train", [f"experiment={preset}", *SMALL, *overrides, *FAST], Path("unused"))
    return instantiate(cfg.model, meta=META, _convert_="partial")


@pytest.mark.parametrize("preset", ["creative_dcgan", "creative_sngan"])
def test_generator_and_discriminator_shapes(preset):
    model = _model(preset)
    labels = torch.tensor([0, 3, 9, 5])
    images = model.generator(torch.randn(4, model.latent_dim), labels if model.conditional else None)
    assert images.shape == (4, 1, 28, 28) and images.dtype == torch.float32
    assert images.min() >= -1 and images.max() <= 1
    scores = model.discriminator(images, labels if model.conditional else None)
    assert scores.shape == (4,)
    samples = model.sample(labels)
    assert samples.shape == (4, 1, 28, 28) and samples.dtype == torch.uint8


def test_conditional_discriminator_uses_the_label():
    model = _model("creative_sngan")
    images = torch.rand(2, 1, 28, 28) * 2 - 1
    # a trained projection embedding separates the classes; at initialisation they differ already
    assert not torch.allclose(
        model.discriminator(images, torch.tensor([0, 0])), model.discriminator(images, torch.tensor([1, 1]))
    )


def _loader(count: int = 16) -> torch.utils.data.DataLoader:
    rows = [
        {"image": torch.randint(0, 256, (1, 28, 28), dtype=torch.uint8), "target": i % 10}
        for i in range(count)
    ]
    return torch.utils.data.DataLoader(rows, batch_size=8)


@pytest.mark.parametrize("preset", ["creative_dcgan", "creative_sngan"])
def test_one_manual_step_updates_both_networks_and_the_ema(preset, tmp_path):
    model = _model(preset, ["model.n_dis=1", "model.ema_decay=0.9", "model.grad_clip=1.0"])
    assert not model.automatic_optimization
    before_g = {k: v.clone() for k, v in model.generator.state_dict().items()}
    before_d = {k: v.clone() for k, v in model.discriminator.state_dict().items()}
    trainer = L.Trainer(
        max_steps=2,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(model, train_dataloaders=_loader())
    # one batch = one D step and one G step; global_step counts both
    assert trainer.global_step == 2
    # the generator holds its weight average since it sampled the epoch's grid: the raw weights back
    model.weight_average.swap_out(model.generator)
    changed = lambda before, net: any(not torch.equal(v, net.state_dict()[k]) for k, v in before.items())  # noqa: E731
    assert changed(before_g, model.generator) and changed(before_d, model.discriminator)
    ema = model.weight_average.weights
    assert any(not torch.equal(p, ema[index]) for index, p in enumerate(model.generator.parameters()))
    assert (tmp_path / "plots" / "samples_epoch_000.png").is_file()


def test_n_dis_makes_several_discriminator_steps_per_generator_step(tmp_path):
    model = _model("creative_sngan", ["model.n_dis=2"])
    trainer = L.Trainer(
        max_epochs=1,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(model, train_dataloaders=_loader(32))
    g_optimizer, d_optimizer = (o.optimizer for o in model.optimizers())
    steps = [int(next(iter(o.state.values()))["step"]) for o in (g_optimizer, d_optimizer)]
    assert steps == [2, 4] and trainer.global_step == 6


def test_diff_augment_keeps_shape_and_changes_images():
    images = torch.rand(6, 1, 28, 28) * 2 - 1
    out = diff_augment(images, ["color", "translation", "cutout"])
    assert out.shape == images.shape and not torch.equal(out, images)
    with pytest.raises(AdlabError, match="unknown"):
        diff_augment(images, ["rotate"])


def test_fid_with_classifier_features_is_zero_for_identical_sets_and_grows_with_a_shift():
    torch.manual_seed(0)
    classifier = ImageryModule(META, misclassified_shown=0).eval()
    images = torch.randint(0, 200, (120, 1, 28, 28), dtype=torch.uint8)
    labels = torch.arange(120) % 10
    scores = []
    for fake in (images, (images.int() + 50).clamp(0, 255).to(torch.uint8)):
        scorer = GenerativeScores(classifier, kid_subset_size=60, kid_subsets=10, floor=False)
        scorer.update_real(images, labels)
        scorer.update_fake(fake, labels)
        scores.append(scorer.compute())
    same, shifted = scores
    assert abs(same["fid"]) < 1e-3 * max(shifted["fid"], 1e-9) and shifted["fid"] > 0
    # KID is an unbiased estimate: about 0 (either sign) for identical sets
    assert abs(same["kid"]) < 0.05 * shifted["kid"]
    assert same["diversity_fake"] == pytest.approx(same["diversity_real"])
    assert 0 <= same["generated_class_accuracy"] <= 1 and 0 <= same["evaluator_accuracy"] <= 1
    # CAS needs a classifier trained on generated images (update_cas); not measured here
    assert "cas" not in same


def test_scoring_without_an_evaluator_is_a_config_error(tmp_path):
    model = _model("creative_dcgan")
    with pytest.raises(AdlabError, match="evaluator_ckpt"):
        model.evaluator()
    # a run that validates reports it before its first training step
    trainer = L.Trainer(max_steps=1, logger=False, enable_progress_bar=False, default_root_dir=tmp_path)
    with pytest.raises(AdlabError, match="evaluator_ckpt"):
        trainer.fit(model, train_dataloaders=_loader(), val_dataloaders=_loader())
    assert trainer.global_step == 0


@pytest.mark.parametrize("preset", ["creative_dcgan", "creative_sngan"])
def test_creative_experiments_fast_dev_run(preset, fashion_dir, evaluator_ckpt, tmp_path):
    overrides = [
        f"experiment={preset}",
        "debug=fdr",
        f"paths.data_dir={fashion_dir}",
        f"model.evaluator_ckpt={evaluator_ckpt}",
        *QUICK_EVAL,
    ]
    cfg = compose_config("train", [*overrides, *SMALL, *FAST], tmp_path / "run")
    assert cfg.monitor == "val/fid" and cfg.monitor_mode == "min"
    metrics = train(cfg)
    assert {"val/fid", "test/fid", "test/kid", "test/fid_floor"} <= set(metrics)
    assert ("test/cas" in metrics) == (preset == "creative_sngan")
    assert metrics["test/fid"] > 0 and metrics["test/fid_floor"] >= 0


def test_trained_checkpoint_generates_an_image_folder_the_source_reads(
    fashion_dir, evaluator_ckpt, tmp_path, wandb_media
):
    run = tmp_path / "run"
    overrides = [
        "experiment=creative_sngan",
        "logger=wandb",
        "trainer.max_epochs=1",
        "+trainer.limit_train_batches=2",
        f"paths.data_dir={fashion_dir}",
        f"model.evaluator_ckpt={evaluator_ckpt}",
        "model.grid_samples=3",
        *QUICK_EVAL,
    ]
    metrics = train(compose_config("train", [*overrides, *SMALL, *FAST], run))
    assert 0 <= metrics["test/cas"] <= 1
    written = json.loads((run / "metrics.json").read_text())
    assert {"test/fid", "test/kid", "test/cas", "test/fid_floor", "test/cas_ankle_boot"} <= set(written)
    for name in ("samples_epoch_000", "class_grid", "interpolation", "diversity"):
        assert (run / "plots" / f"{name}.png").stat().st_size > 500
    assert "collapsed" in (run / "diversity.csv").read_text().splitlines()[0]
    # the offline W&B run received the grids and the diversity table
    assert {"plots/samples_epoch_000", "plots/class_grid", "tables/diversity"} <= set(wandb_media)

    out = tmp_path / "generated"
    cfg = compose_config("generate", [f"ckpt_path={run / 'checkpoints' / 'best.ckpt'}", "n=3"], out)
    folder = generate(cfg)
    raw = ImageSource(str(folder), format="folder").load()
    assert raw.images.shape == (30, 1, 28, 28) and raw.images.dtype == torch.uint8
    assert sorted(raw.classes) == sorted(c.replace("/", "_") for c in CLASSES)
    assert (out / "class_grid.png").is_file()
    with pytest.raises(AdlabError, match="not classes"):
        generate(
            compose_config(
                "generate", [f"ckpt_path={run / 'checkpoints' / 'best.ckpt'}", "classes=[hat]"], out
            )
        )


@pytest.mark.parametrize("preset", ["creative_dcgan", "creative_sngan"])
def test_preset_without_an_evaluator_trains_one_and_reports_honest_figures(preset, fashion_dir, tmp_path):
    cache = tmp_path / "evaluators"
    overrides = [
        f"experiment={preset}",
        "trainer.max_epochs=1",
        "+trainer.limit_train_batches=2",
        f"paths.data_dir={fashion_dir}",
        f"model.evaluator_cache_dir={cache}",
        "model.grid_samples=2",
        *QUICK_EVAL,
    ]
    run = tmp_path / "run"
    train(compose_config("train", [*overrides, *SMALL, *FAST], run))
    written = json.loads((run / "metrics.json").read_text())
    wanted = {"test/fid", "test/kid", "test/fid_floor", "test/fid_noise", "test/evaluator_accuracy"}
    if preset == "creative_sngan":
        wanted |= {"test/cas", "test/generated_class_accuracy", "val/generated_class_accuracy"}
    assert wanted <= set(written)
    assert all(value == value and abs(value) != float("inf") for value in written.values()), written
    # the evaluator learned the classes (chance: 0.1); its accuracy says how far to trust the FID scale
    assert 0.2 < written["test/evaluator_accuracy"] <= 1 and 0 <= written.get("test/cas", 0) <= 1
    # an untrained generator sits far above the real-vs-real floor
    assert written["test/fid_floor"] < written["test/fid"]
    assert 0 <= written["test/diversity_classes"] <= 10
    assert (
        sum(key.startswith("test/diversity_ratio_") for key in written)
        <= written["test/diversity_classes"] + 1
    )
    cached = list(cache.glob("fashion_mnist-*/evaluator.pt"))
    assert len(cached) == 1

    # adlab-eval reads the evaluator and the floor's train features from the checkpoint (no train split)
    checkpoint = run / "checkpoints" / "best.ckpt"
    evaluated = evaluate(
        compose_config("eval", [f"ckpt_path={checkpoint}", "extras.print_config=false"], tmp_path / "eval")
    )
    for key in ("test/fid", "test/fid_floor", "test/fid_noise", "test/evaluator_accuracy"):
        assert evaluated[key] == pytest.approx(written[key], rel=1e-4, abs=1e-6), key
    if preset == "creative_dcgan":
        # a resumed fit gets no train split either: its checkpoint brings the evaluator and the floor
        resumed = train(
            compose_config(
                "train",
                [
                    *overrides,
                    *SMALL,
                    *FAST,
                    f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}",
                    "trainer.max_epochs=2",
                ],
                tmp_path / "resumed",
            )
        )
        assert resumed["test/fid_floor"] == pytest.approx(written["test/fid_floor"], rel=1e-4)
        assert resumed["test/evaluator_accuracy"] == pytest.approx(written["test/evaluator_accuracy"])


def test_a_cached_evaluator_is_reused_for_the_same_train_split(tmp_path):
    torch.manual_seed(0)
    images = torch.randint(0, 256, (40, 1, 28, 28), dtype=torch.uint8)
    labels = torch.arange(40) % 10
    first = train_evaluator(None, images, labels, CLASSES, epochs=1, cache_dir=tmp_path, dataset="tiny")
    (path,) = tmp_path.glob("tiny-*/evaluator.pt")
    written = path.stat().st_mtime_ns
    again = train_evaluator(None, images, labels, CLASSES, epochs=1, cache_dir=tmp_path, dataset="tiny")
    assert path.stat().st_mtime_ns == written
    for a, b in zip(first.net.state_dict().values(), again.net.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    # other labels are another split: trained anew, cached beside
    train_evaluator(None, images, labels.flip(0), CLASSES, epochs=1, cache_dir=tmp_path, dataset="tiny")
    assert len(list(tmp_path.glob("tiny-*/evaluator.pt"))) == 2


def test_the_checkpoint_carries_the_evaluator_and_the_floor_features():
    model = _model(
        "creative_sngan", ["model.floor_samples=30", "model.evaluator_cache_dir=null", *QUICK_EVAL]
    )
    images = torch.randint(0, 256, (50, 1, 28, 28), dtype=torch.uint8)
    model.fit_to_train(
        TrainSplit({"image": images, "target": torch.arange(50) % 10}, DataMeta.from_dict(META))
    )
    checkpoint: dict = {}
    model.on_save_checkpoint(checkpoint)
    assert checkpoint["creatives_floor_features"].shape == (30, 128)
    restored = _model("creative_sngan")
    restored.on_load_checkpoint(checkpoint)
    assert torch.equal(restored._floor_features, model._floor_features)
    assert torch.allclose(restored.evaluator().features(images), model.evaluator().features(images))


def test_diversity_reports_only_classes_it_can_measure():
    classifier = new_classifier(EvaluatorNet, CLASSES, (1, 28, 28))
    scorer = GenerativeScores(classifier, kid=False, floor=False)
    images = torch.randint(0, 256, (12, 1, 28, 28), dtype=torch.uint8)
    labels = torch.tensor([0] * 6 + [1] * 5 + [2])
    scorer.update_real(images, labels)
    scorer.update_fake(images, labels)
    result = scorer.compute()
    assert result["count_real"][:4] == [6, 5, 1, 0]
    # one image or none: no spread (NaN in the raw list; the module reports only measured classes)
    assert result["diversity_real"][0] > 0 and result["diversity_real"][2] != result["diversity_real"][2]
