"""Build the pieces of a job (data, model, callbacks, loggers, trainer) from a composed config."""

from __future__ import annotations

import netrc
import os
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

import lightning as L
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, Logger
from omegaconf import DictConfig, OmegaConf, open_dict

from adlab.data.features import DataMeta
from adlab.errors import AdlabError
from adlab.harness.callbacks import EpochSeed

if TYPE_CHECKING:
    from adlab.harness.fit import FitStrategy


def instantiate_node(node: DictConfig, **kwargs: Any) -> Any:
    """`hydra.utils.instantiate`, re-raising an `AdlabError` from a constructor as itself (Hydra wraps it)."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as error:
        cause = error.__cause__
        while isinstance(cause, InstantiationException):
            cause = cause.__cause__
        if isinstance(cause, AdlabError):
            raise cause from None
        raise


def build_datamodule(cfg: DictConfig, strategy: FitStrategy | None = None) -> L.LightningDataModule:
    """Instantiate `cfg.data` and set it up (through `strategy.setup_data`, which chooses the rows), so that
    data errors surface before anything is written."""
    datamodule = instantiate_node(cfg.data, seed=cfg.seed, _convert_="partial")
    if strategy is None:
        datamodule.setup("fit")
    else:
        strategy.setup_data(datamodule)
    return datamodule


def build_model(cfg: DictConfig, meta: DataMeta) -> L.LightningModule:
    """Instantiate `cfg.model` with the data module's `meta` (passed as it is: Hydra would turn a dataclass
    argument into a config node)."""
    try:
        return instantiate_node(cfg.model, _partial_=True, _convert_="partial")(meta=meta)
    except TypeError as error:
        raise AdlabError(f"model config does not fit {cfg.model.get('_target_')}: {error}") from None


def prepare_model(model: L.LightningModule, datamodule: Any) -> None:
    """Hand a model about to be fitted from scratch what it fits on the train split, before `trainer.fit`:
    `model.fit_to_train(datamodule.train_split())` (column ranking, quantile bins, a tokenizer ...), for
    a model that defines the hook. Not called when a fit resumes from a checkpoint, which restores that state.
    """
    fit_to_train = getattr(model, "fit_to_train", None)
    if callable(fit_to_train):
        fit_to_train(datamodule.train_split())


class ConfigInCheckpoint(L.Callback):
    """Store the resolved job config in every checkpoint, so `adlab-eval` can rebuild data and model."""

    def __init__(self, config: dict[str, Any]):
        self.config = config

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        checkpoint["adlab_config"] = self.config
        datamodule = getattr(trainer, "datamodule", None)
        if datamodule is not None and hasattr(datamodule, "meta"):
            # {"meta": DataMeta.to_dict(), "preprocessing": e.g. TabularFeatures.to_dict()}: plain containers
            # (checkpoints load with weights_only=True), read back by adlab.harness.checkpoints.StoredRun
            checkpoint["adlab_data"] = datamodule.state_dict()


def build_callbacks(cfg: DictConfig, resolved: dict[str, Any]) -> list[L.Callback]:
    """The configured callbacks plus the two every job needs: per-epoch seeding and the config store."""
    callbacks = [
        instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None and "_target_" in c
    ]
    return [*callbacks, EpochSeed(cfg.seed), ConfigInCheckpoint(resolved)]


def _wandb_has_key() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def build_loggers(cfg: DictConfig, job_type: str) -> list[Logger]:
    """CSV always; whatever `cfg.logger` adds. W&B runs offline unless a key is configured."""
    output_dir = cfg.paths.output_dir
    loggers: list[Logger] = [CSVLogger(output_dir, name="csv", version="")]
    for logger_cfg in (cfg.get("logger") or {}).values():
        if logger_cfg is None or "_target_" not in logger_cfg:
            continue
        if "wandb" in logger_cfg._target_.lower():
            with open_dict(logger_cfg):
                if logger_cfg.get("offline") is None:
                    logger_cfg.offline = os.environ.get("WANDB_MODE") == "offline" or not _wandb_has_key()
                logger_cfg.job_type = job_type
                run_id = previous_wandb_run_id(cfg.get("ckpt_path"))
                if run_id:  # resuming: continue the W&B run of the checkpoint's job
                    logger_cfg.id = run_id
                    logger_cfg.resume = "allow"
        loggers.append(instantiate(logger_cfg, _convert_="all"))
    return loggers


WANDB_ID_FILE = "wandb_run_id"


def previous_wandb_run_id(ckpt_path: str | None) -> str | None:
    """The W&B run id saved beside a checkpoint by the job that wrote it."""
    if not ckpt_path:
        return None
    saved = Path(ckpt_path).parent / WANDB_ID_FILE
    return saved.read_text().strip() or None if saved.is_file() else None


def save_wandb_run_id(loggers: list[Logger], checkpoint_dir: str | Path) -> None:
    """Write the W&B run id beside the checkpoints so that a resumed job continues the same run."""
    from lightning.pytorch.loggers import WandbLogger

    for logger in loggers:
        if isinstance(logger, WandbLogger):
            path = Path(checkpoint_dir) / WANDB_ID_FILE
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(logger.experiment.id + "\n")


def build_trainer(cfg: DictConfig, callbacks: list[L.Callback], loggers: list[Logger]) -> L.Trainer:
    return instantiate(
        cfg.trainer, callbacks=callbacks, logger=loggers, default_root_dir=cfg.paths.output_dir
    )


def checkpoint_callback(trainer: L.Trainer) -> ModelCheckpoint | None:
    for callback in trainer.callbacks:
        if isinstance(callback, ModelCheckpoint):
            return callback
    return None


def git_commit() -> str | None:
    """The commit of the adlab checkout in use, when it is a git checkout."""
    try:
        here = Path(__file__).resolve().parent
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5
        )
        return result.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def resolved_config(cfg: DictConfig) -> dict[str, Any]:
    """The config with every interpolation resolved, as plain containers (what gets logged)."""
    return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)  # type: ignore[return-value]


def finish_wandb() -> None:
    """End the W&B run of this process, if one is open (called in a `finally` by every job)."""
    try:
        import wandb
    except ImportError:
        return
    if wandb.run is not None:
        wandb.finish()
