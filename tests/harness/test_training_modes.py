"""Resume, DDP on CPU, W&B offline, and every experiment composing and running on tiny data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from adlab.harness.configs import config_dir
from adlab.train import train
from tests.helpers import compose_config, run_module

EXPERIMENTS = sorted(p.stem for p in (config_dir() / "experiment").glob("*.yaml"))
TABULAR = [e for e in EXPERIMENTS if e.startswith("propensity")]


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes_and_instantiates(experiment, tmp_path):
    cfg = compose_config("train", [f"experiment={experiment}", "paths.data_dir=/nonexistent"], tmp_path)
    for group in ("data", "model", "trainer"):
        assert "_target_" in cfg[group], group
    assert cfg.monitor.startswith("val/")
    extra = []
    if cfg.trainer.accelerator == "gpu":  # GPU presets: everything but the accelerator is checked here
        extra.append("trainer.accelerator=cpu")
    # bring-your-own-data presets take the file and its columns from the user
    extra += [
        f"data.source.{key}=given" for key in cfg.data.source if OmegaConf.is_missing(cfg.data.source, key)
    ]
    if extra:
        overrides = [f"experiment={experiment}", "paths.data_dir=/nonexistent", *extra]
        cfg = compose_config("train", overrides, tmp_path)
    instantiate(cfg.trainer)
    # the data module and its source are built (reading files waits for setup)
    assert instantiate(cfg.data, seed=cfg.seed, _convert_="partial").source is not None


# presets whose data is another file: point them at the tiny CoIL-like table (their model, trainer and
# callbacks are what a fast dev run checks)
COIL_AS_TABLE = [
    "data.source.path=${paths.data_dir}/coil2000/coil2000.parquet",
    "data.source.target=CARAVAN",
    "data.source.id_column=customer_id",
    "data.source.drop=[split]",
]
# the churn presets name their positive class ("Yes"/"yes"); CARAVAN is 0/1
CHURN_AS_TABLE = [*COIL_AS_TABLE, "data.source.positive=null"]
TABULAR_OVERRIDES = {
    "propensity_cdnow": COIL_AS_TABLE,
    "propensity_csv": COIL_AS_TABLE,
    "propensity_telco": CHURN_AS_TABLE,
    "propensity_mlc": CHURN_AS_TABLE,
}


@pytest.mark.parametrize("experiment", TABULAR)
def test_fast_dev_run_of_tabular_experiments(experiment, train_config):
    overrides = TABULAR_OVERRIDES.get(experiment, [])
    metrics = train(train_config([f"experiment={experiment}", "debug=fdr", *overrides]))
    assert "test/auroc" in metrics


def test_resume_from_last_checkpoint_matches_uninterrupted_run(train_config, tmp_path):
    common = [
        "experiment=propensity_coil",
        "fit=plain",
        "trainer.deterministic=true",
        "seed=7",
        "callbacks.early_stopping=null",
    ]
    full = train(train_config([*common, "trainer.max_epochs=3"], output_dir=tmp_path / "full"))
    train(train_config([*common, "trainer.max_epochs=1"], output_dir=tmp_path / "first"))
    last = tmp_path / "first" / "checkpoints" / "last.ckpt"
    resumed = train(
        train_config([*common, "trainer.max_epochs=3", f"ckpt_path={last}"], output_dir=tmp_path / "resumed")
    )
    for key, value in full.items():
        if key.startswith(("val/", "test/")):
            assert resumed[key] == pytest.approx(value, rel=1e-6, abs=1e-7), key
    assert (tmp_path / "resumed" / "checkpoints" / "best.ckpt").is_file()


def test_wandb_offline_run_receives_test_metrics(train_config, tmp_path, monkeypatch):
    import wandb
    from lightning.pytorch.loggers import WandbLogger

    received: dict[str, float] = {}
    original = WandbLogger.log_metrics

    def spy(self, metrics, step=None):
        received.update(metrics)
        return original(self, metrics, step)

    monkeypatch.setattr(WandbLogger, "log_metrics", spy)
    metrics = train(train_config(["experiment=propensity_coil", "logger=wandb", "logger.wandb.offline=true"]))
    assert wandb.run is None  # the job finished its run
    assert received["test/top20_hits"] == pytest.approx(metrics["test/top20_hits"])
    assert received["test/auroc"] == pytest.approx(metrics["test/auroc"])
    run_files = list((tmp_path / "run" / "wandb").glob("offline-run-*/run-*.wandb"))
    assert run_files, "no offline W&B run written"


def test_ddp_on_cpu_with_two_processes(coil_data_dir, tmp_path):
    run_dir = tmp_path / "ddp"
    result = run_module(
        "adlab.train",
        "experiment=propensity_coil",
        "fit=plain",
        "trainer=ddp_cpu",
        "trainer.max_epochs=1",
        f"paths.data_dir={coil_data_dir}",
        f"hydra.run.dir={run_dir}",
        "extras.print_config=false",
        "callbacks.progress_bar=null",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (
        "distributed_backend=gloo" in result.stderr + result.stdout
        or "world_size: 2" in result.stderr + result.stdout
    )
    metrics = json.loads((Path(run_dir) / "metrics.json").read_text())
    assert "test/auroc" in metrics and "test/top20_hits" in metrics


@pytest.mark.parametrize(
    "overrides",
    [
        ["debug=fdr"],
        ["debug=limit"],
        ["debug=overfit", "trainer.max_epochs=2"],
        ["trainer.precision=bf16-mixed", "debug=fdr"],
    ],
    ids=["fdr", "limit", "overfit", "bf16"],
)
def test_debug_modes_and_precision(overrides, train_config):
    metrics = train(train_config(["experiment=propensity_coil", "fit=plain", *overrides]))
    assert "test/auroc" in metrics


@pytest.mark.parametrize("trainer", ["cpu", "gpu", "ddp", "ddp_cpu", "fsdp"])
def test_trainer_configs_compose(trainer, tmp_path):
    cfg = compose_config("train", [f"trainer={trainer}"], tmp_path)
    assert cfg.trainer._target_ == "lightning.Trainer"
    if trainer in ("cpu", "ddp_cpu"):
        instantiate(cfg.trainer)


def test_built_wheel_carries_the_configs(tmp_path):
    """A wheel (not only an editable install) must find configs/: they are packaged as adlab/configs."""
    import zipfile

    from hatchling.builders.wheel import WheelBuilder

    root = Path(__file__).resolve().parents[2]
    wheel = Path(next(WheelBuilder(str(root)).build(directory=str(tmp_path), versions=["standard"])))
    names = zipfile.ZipFile(wheel).namelist()
    assert "adlab/configs/train.yaml" in names
    assert "adlab/configs/experiment/propensity_coil.yaml" in names
    assert "adlab/harness/configs.py" in names
