"""The imagery family: image sources, batch augmentation, every network preset, metrics and plots."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from adlab.data.catalog import CATALOG
from adlab.data.sources.images import ImageSource, class_keys, read_idx
from adlab.data.synthetic import FOLDER_CLASSES, make_fashion_like, make_image_folder
from adlab.errors import AdlabError
from adlab.eval import evaluate
from adlab.families.imagery.augment import BatchAugment, flip_and_translate
from adlab.harness.checkpoints import load_module
from adlab.train import train
from tests.helpers import compose_config

FAST = ["extras.print_config=false", "callbacks.progress_bar=null", "trainer.max_epochs=1"]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models gain nothing from intra-op threads, and on a busy shared CPU their syncs cost seconds."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def fashion_dir(tmp_path_factory) -> Path:
    data_dir = tmp_path_factory.mktemp("imagery_data")
    make_fashion_like(data_dir)
    return data_dir


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("folder") / "products")


# ------------------------------------------------------------------ data
def test_fashion_mnist_is_registered_with_checksums_and_official_urls():
    dataset = CATALOG["fashion_mnist"]
    files = {f.name: f.sha256 for archive in dataset.archives for f in archive.files}
    assert files["train-images-idx3-ubyte.gz"].startswith("b0564c3e")
    assert files["t10k-labels-idx1-ubyte.gz"].startswith("8d3605d1")
    assert dataset.archives[0].kind == "apt" and dataset.archives[0].package == "dataset-fashion-mnist"
    assert set(dataset.official) == set(files)


def test_idx_source_declares_the_official_test_split(fashion_dir):
    source = ImageSource(str(fashion_dir / "fashion_mnist"), classes=[f"c{k}" for k in range(10)])
    raw = source.load()
    assert raw.images.shape == (460, 1, 28, 28) and raw.images.dtype == torch.uint8
    assert (raw.official == "test").sum() == 60
    assert read_idx(fashion_dir / "fashion_mnist" / "t10k-labels-idx1-ubyte.gz").tolist()[:3] == [0, 1, 2]


def test_truncated_idx_file_is_named(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(bytes([0, 0, 8, 3]) + (5).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2 + b"\0" * 10)
    with pytest.raises(AdlabError, match="train-images-idx3-ubyte"):
        read_idx(path)


def test_image_folder_is_read_resized_and_coloured(image_folder):
    raw = ImageSource(str(image_folder), image_size=16).load()
    assert raw.classes == sorted(name.replace("/", "_") for name in FOLDER_CLASSES)
    # one grey file per class is promoted to RGB because the others have colour
    assert raw.images.shape == (24, 3, 16, 16)
    assert np.bincount(raw.labels).tolist() == [8, 8, 8]
    grey = ImageSource(str(image_folder), image_size=[12, 10], channels=1, fit="crop").load()
    assert grey.images.shape == (24, 1, 12, 10)


def test_folder_with_train_and_test_folders_is_an_official_split(tmp_path):
    make_image_folder(tmp_path / "shop" / "train", per_class=4)
    make_image_folder(tmp_path / "shop" / "test", per_class=2, seed=1)
    raw = ImageSource(str(tmp_path / "shop"), image_size=16).load()
    assert sorted(pd.Series(raw.official).value_counts().items()) == [("test", 6), ("train", 12)]


def test_manifest_reads_relative_paths_labels_and_split(image_folder, tmp_path):
    files = sorted(p for p in image_folder.rglob("*") if p.is_file())
    manifest = tmp_path / "manifest.csv"
    pd.DataFrame(
        {
            "path": [str(p.relative_to(image_folder)) for p in files],
            "label": [p.parent.name for p in files],
            "split": ["test" if i % 4 == 0 else "train" for i in range(len(files))],
        }
    ).to_csv(manifest, index=False)
    (tmp_path / "Red shoe").symlink_to(image_folder / "Red shoe")
    for name in ("blue-bag", "Green_Hat"):
        (tmp_path / name).symlink_to(image_folder / name)
    raw = ImageSource(str(manifest), image_size=8).load()
    assert raw.images.shape == (24, 3, 8, 8)
    assert set(raw.official) == {"train", "test"}
    assert [raw.classes[label] for label in raw.labels] == [p.parent.name for p in files]


def test_corrupt_image_error_names_the_file_and_skip_counts_it(tmp_path):
    root = make_image_folder(tmp_path / "products", per_class=3)
    broken = root / "blue-bag" / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    with pytest.raises(AdlabError, match="broken.png"):
        ImageSource(str(root), image_size=16).load()
    raw = ImageSource(str(root), image_size=16, on_error="skip").load()
    assert raw.skipped == [str(broken)] and len(raw.labels) == 9


def test_different_sizes_without_image_size_is_an_error(image_folder):
    with pytest.raises(AdlabError, match="image_size"):
        ImageSource(str(image_folder)).load()


def test_class_keys_are_metric_safe_and_unique():
    assert class_keys(["T-shirt/top", "Ankle boot", "a b", "a-b"]) == [
        "t_shirt_top",
        "ankle_boot",
        "a_b_2",
        "a_b_3",
    ]


# ----------------------------------------------------------- augmentation
def test_flip_and_translate_moves_whole_images():
    images = torch.arange(2 * 3 * 5 * 6, dtype=torch.float32).view(2, 3, 5, 6)
    assert torch.equal(flip_and_translate(images, 0, flip=False), images)
    torch.manual_seed(0)
    flipped = flip_and_translate(images, 0, flip=True)
    for original, out in zip(images, flipped, strict=True):
        assert torch.equal(out, original) or torch.equal(out, original.flip(2))
    shifted = flip_and_translate(images, 2, flip=False)
    assert shifted.shape == images.shape
    # every row of a shifted image is a (possibly zero-padded) slice of an original row
    assert set(shifted.unique().tolist()) <= set(images.unique().tolist()) | {0.0}


def test_random_erasing_follows_its_probability():
    images = torch.ones(64, 1, 16, 16)
    assert torch.equal(BatchAugment(erase_prob=0.0).erase(images), images)
    erased = BatchAugment(erase_prob=1.0).erase(images)
    assert ((erased == 0).flatten(1).sum(1) > 0).all()


# ----------------------------------------------------- models via harness
def _folder_config(image_folder: Path, tmp_path: Path, overrides: list[str]):
    return compose_config(
        "train",
        [
            "experiment=imagery_folder",
            f"data.source.path={image_folder}",
            "data.source.image_size=32",
            "data.batch_size=8",
            *FAST,
            *overrides,
        ],
        tmp_path / "run",
    )


@pytest.mark.parametrize(
    "overrides",
    [
        ["model=imagery"],
        ["model=imagery_resnet", "model.net.widths=[8,16]", "model.net.blocks=[1,1]", "model.ema_decay=0.9"],
        ["model=imagery_torchvision", "model.net.name=shufflenet_v2_x0_5", "model.schedule=cosine"],
    ],
    ids=["small_cnn", "resnet_small_ema", "torchvision"],
)
def test_every_architecture_trains_and_round_trips_its_checkpoint(image_folder, tmp_path, overrides):
    metrics = train(_folder_config(image_folder, tmp_path, [*overrides, "+trainer.limit_train_batches=1"]))
    assert 0 <= metrics["test/accuracy"] <= 1
    checkpoint = tmp_path / "run" / "checkpoints" / "best.ckpt"
    model = load_module(checkpoint)
    images = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    logits = model(model.prepare(images))
    assert logits.shape == (4, len(FOLDER_CLASSES))
    features = model.features(images)
    assert features.ndim == 2 and features.shape[0] == 4
    # the rebuilt model gives the stored weights' predictions: reload into a fresh model and compare
    again = load_module(checkpoint)
    assert torch.allclose(again(again.prepare(images)), logits, atol=1e-5)
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    assert state["adlab_data"]["meta"]["classes"] == sorted(n.replace("/", "_") for n in FOLDER_CLASSES)
    # class names from the data reach metrics.json and the plots
    run = tmp_path / "run"
    written = json.loads((run / "metrics.json").read_text())
    for key in ("red_shoe", "blue_bag", "green_hat"):
        assert f"test/accuracy_{key}" in written and f"val/accuracy_{key}" in written
    assert written["test/accuracy"] == pytest.approx(metrics["test/accuracy"])
    assert "test/macro_f1" in written
    assert (run / "plots" / "confusion_matrix.png").stat().st_size > 1000
    assert (run / "plots" / "misclassified.png").is_file() or written["test/accuracy"] == 1.0
    header = (run / "confusion_matrix.csv").read_text().splitlines()[0]
    assert header == "true,Green_Hat,Red shoe,blue-bag"
    if overrides == ["model=imagery"]:
        # adlab-eval rebuilds data and model from the checkpoint and reproduces the test metrics and plots
        eval_cfg = compose_config(
            "eval", [f"ckpt_path={checkpoint}", "extras.print_config=false"], tmp_path / "eval"
        )
        evaluated = evaluate(eval_cfg)
        for key, value in metrics.items():
            if key.startswith("test/"):
                assert evaluated[key] == pytest.approx(value, abs=1e-6), key
        assert (tmp_path / "eval" / "plots" / "confusion_matrix.png").is_file()


def test_network_too_big_for_the_images_is_a_config_error(image_folder, tmp_path):
    cfg = _folder_config(image_folder, tmp_path, ["model=imagery_torchvision", "model.net.name=alexnet"])
    with pytest.raises(AdlabError, match="32x32"):
        train(cfg)
    with pytest.raises(AdlabError, match="schedule"):
        train(_folder_config(image_folder, tmp_path, ["model.schedule=linear"]))


@pytest.mark.parametrize("experiment", ["imagery_fashion", "imagery_fashion_cpu", "imagery_folder"])
def test_experiment_fast_dev_run(experiment, fashion_dir, image_folder, tmp_path, wandb_media):
    overrides = [
        f"experiment={experiment}",
        "debug=fdr",
        f"paths.data_dir={fashion_dir}",
        "logger=wandb",
        *FAST,
    ]
    if experiment == "imagery_fashion":
        overrides += [
            "trainer=cpu",
            "trainer.precision=32-true",
            "model.net.widths=[8,16]",
            "model.net.blocks=[1,1]",
        ]
    if experiment == "imagery_folder":
        # a real (short) run: fast_dev_run replaces the loggers with a dummy, and W&B is checked here
        overrides += [f"data.source.path={image_folder}", "data.source.image_size=16", "debug=limit"]
    cfg = compose_config("train", overrides, tmp_path / "run")
    assert cfg.monitor == "val/accuracy" and cfg.monitor_mode == "max"
    metrics = train(cfg)
    assert {"test/accuracy", "test/macro_f1", "val/accuracy"} <= set(metrics)
    if experiment != "imagery_folder":
        assert "test/accuracy_t_shirt_top" in metrics and "test/accuracy_ankle_boot" in metrics
    if experiment == "imagery_folder":
        # the offline W&B run received the confusion matrix and the misclassified grid
        assert {"plots/confusion_matrix", "plots/misclassified"} <= set(wandb_media)
