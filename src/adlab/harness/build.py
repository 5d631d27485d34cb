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
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, Logger
from omegaconf import DictConfig, OmegaConf, open_dict

from adlab.data.features import DataMeta
from adlab.errors import AdlabError
from adlab.harness.callbacks import (
    EpochSeed,
    MonitoredMetric,
    NonFiniteLoss,
    TimeBudget,
    time_budget,
)
from adlab.harness.config_checks import check_target_node

if TYPE_CHECKING:
    from adlab.harness.fit import FitStrategy


def instantiate_node(node: DictConfig, **kwargs: Any) -> Any:
    """`hydra.utils.instantiate`, re-raising an `AdlabError` from a constructor as itself (Hydra wraps it).

    The node's keys and values are checked against what its `_target_` takes first
    (`harness.config_checks.check_target_node`), so a wrong type is one line naming the key."""
    check_target_node(node, resolve=True)
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as error:
        cause = error.__cause__
        while isinstance(cause, InstantiationException):
            cause = cause.__cause__
        if isinstance(cause, AdlabError):
            raise cause from None
        if isinstance(cause, MisconfigurationException) or _refused_by_library(cause):
            # a setting Lightning cannot honour (`trainer.accelerator=gpu` without one, `devices=abc` ...)
            where = node._get_full_key(None) or str(node.get("_target_"))
            raise AdlabError(f"{where}: {cause}") from None
        raise


def _refused_by_library(error: BaseException | None) -> bool:
    """A ValueError/TypeError raised by Lightning's or torch's own argument checks (its last frame is theirs:
    `Trainer(devices="abc")`, `nn.Dropout(p=1.5)` ...)."""
    if not isinstance(error, (ValueError, TypeError)) or error.__traceback__ is None:
        return False
    frame = error.__traceback__
    while frame.tb_next is not None:
        frame = frame.tb_next
    path = frame.tb_frame.f_code.co_filename.replace("\\", "/")
    return "/lightning/" in path or "/torch/nn/" in path or "/torch/optim/" in path


def build_datamodule(cfg: DictConfig, strategy: FitStrategy | None = None) -> L.LightningDataModule:
    """Instantiate `cfg.data` and set it up (through `strategy.setup_data`, which chooses the rows), so that
    data errors surface before anything is written."""
    try:
        datamodule = instantiate_node(cfg.data, seed=cfg.seed, _convert_="partial")
        if strategy is None:
            datamodule.setup("fit")
        else:
            strategy.setup_data(datamodule)
    except AdlabError as error:
        from adlab.data.fetch import missing_dataset_hint

        hint = missing_dataset_hint(cfg.data.get("source", {}).get("path"), cfg.paths.get("data_dir"))
        if hint is None or "adlab-data fetch" in str(error):
            raise
        raise AdlabError(f"{error}; {hint}") from None
    return datamodule


def build_model(cfg: DictConfig, meta: DataMeta) -> L.LightningModule:
    """Instantiate `cfg.model` with the data module's `meta` (passed as it is: Hydra would turn a dataclass
    argument into a config node)."""
    build = instantiate_node(cfg.model, _partial_=True, _convert_="partial")
    try:
        return build(meta=meta)
    except (TypeError, ValueError) as error:
        if isinstance(error, ValueError) and not _refused_by_library(error):
            raise
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
    """The configured callbacks plus what every job needs: per-epoch seeding, the config store and the stop
    on a NaN loss (before it reaches a checkpoint)."""
    callbacks = [
        instantiate_node(c)
        for c in (cfg.get("callbacks") or {}).values()
        if c is not None and "_target_" in c
    ]
    first = [MonitoredMetric(cfg.get("monitor"))]  # before checkpointing and early stopping read `monitor`
    return [*first, *callbacks, NonFiniteLoss(), EpochSeed(cfg.seed), ConfigInCheckpoint(resolved)]


def _wandb_has_key() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def build_loggers(cfg: DictConfig, job_type: str) -> list[Logger]:
    """CSV always; whatever `cfg.logger` adds. W&B runs offline unless a key is configured; MLflow writes
    to `sqlite:///<outputs root>/mlflow.db` unless given a tracking URI."""
    output_dir = cfg.paths.output_dir
    loggers: list[Logger] = [CSVLogger(output_dir, name="csv", version="")]
    for name, logger_cfg in (cfg.get("logger") or {}).items():
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
        if "mlflow" in logger_cfg._target_.lower():
            from adlab.harness.ledger import outputs_root

            os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # not its database set-up lines
            with open_dict(logger_cfg):
                root = outputs_root(cfg)
                logger_cfg.tracking_uri = logger_cfg.get("tracking_uri") or f"sqlite:///{root / 'mlflow.db'}"
                logger_cfg.artifact_location = logger_cfg.get("artifact_location") or str(
                    root / "mlartifacts"
                )
        try:
            loggers.append(instantiate(logger_cfg, _convert_="all"))
        except InstantiationException as error:
            if isinstance(error.__cause__, ModuleNotFoundError):  # an optional logger's package
                raise AdlabError(
                    f"logger {name}: {error.__cause__}; it comes with adlab's `ui` extra: pip install -e '.[ui]'"
                ) from None
            raise
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
    """Instantiate `cfg.trainer` with the job's callbacks and loggers, writing under the run directory.

    A `trainer.max_time` budget is kept by adlab's `TimeBudget` instead of Lightning's timer (which waits
    for `min_epochs` and warns at every batch): it stops inside an epoch if need be, so `min_epochs` is 0.
    """
    budget = time_budget(cfg.trainer.get("max_time"))
    overrides: dict[str, Any] = {}
    if budget is not None:
        callbacks = [*callbacks, TimeBudget(budget)]
        overrides = {"max_time": None, "min_epochs": 0}
    return instantiate_node(
        cfg.trainer, callbacks=callbacks, logger=loggers, default_root_dir=cfg.paths.output_dir, **overrides
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
    """The config with every interpolation resolved, as plain containers (what gets logged), without
    Hydra's own node (a CLI job's config has none; one composed in Python does)."""
    resolved = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    resolved.pop("hydra", None)  # type: ignore[union-attr]
    return resolved  # type: ignore[return-value]


def finish_wandb() -> None:
    """End the W&B run of this process, if one is open (called in a `finally` by every job)."""
    try:
        import wandb
    except ImportError:
        return
    if wandb.run is not None:
        wandb.finish()
