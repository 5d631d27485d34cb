"""Jobs that rebuild a training run from its checkpoint: the stored config, and a new file to read with it.

`adlab-eval` and `adlab-predict` take the training job's data, model, fit and seed from the checkpoint
(`stored_job_config`) and only their own trainer, paths and loggers from the command line. With
`data.source.path=FILE`, the source reads FILE instead of the run's data, built with the run's stored meta
and preprocessing (`MarketingDataModule.setup_new`): every row becomes a test row, nothing is refitted,
and categories the train split never had are counted. `adlab-predict` may also move the date a log's
features are computed at (`data.source.cutoff`, for sources that have one). Any other override of what the
checkpoint decides (`+model.x=...`, `+data.source.target=...`) is refused on one line rather than silently
ignored.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from adlab.data.sources.base import NewData
from adlab.errors import AdlabError
from adlab.harness.build import instantiate_node
from adlab.harness.checkpoints import StoredRun
from adlab.harness.configs import config_dir

# the keys of this job's own config that the rebuilt job takes (the rest comes from the checkpoint)
JOB_KEYS = ("trainer", "paths", "logger", "tags", "task_name", "experiment_name")
# what a job may set of the stored `data.source` (where its config declares it): the file to read, and the
# cut-off date its features are computed at (a purchase log rated as of a later day)
NEW_DATA_KEYS = ("path", "cutoff")


def stored_job_config(cfg: DictConfig, run: StoredRun) -> DictConfig:
    """The training job's data/model/fit/seed from the checkpoint, with this job's trainer, logger and paths
    (and `data.source.path` when this job names a new file)."""
    stored = run.job_config()
    job = OmegaConf.create({key: stored[key] for key in ("data", "model", "fit", "seed") if key in stored})
    job = OmegaConf.merge(job, {key: cfg[key] for key in JOB_KEYS if key in cfg})
    with open_dict(job):
        job.paths.output_dir = cfg.paths.output_dir
        job.callbacks = {}
        source = job.data.get("source") or {}
        for key, value in new_data_settings(cfg).items():
            if key not in source:
                what = "reads no file" if key == "path" else f"has no {key}"
                raise AdlabError(
                    f"data.source.{key}={value}: the checkpoint's data source ({source.get('_target_')}) "
                    f"{what}, so it cannot be given one"
                )
            job.data.source[key] = value
    return job


def new_data_settings(cfg: DictConfig) -> dict[str, str]:
    """The `NEW_DATA_KEYS` this job sets (not null): `data.source.path` and, for adlab-predict, the cutoff."""
    values = {key: OmegaConf.select(cfg, f"data.source.{key}", default=None) for key in NEW_DATA_KEYS}
    return {key: str(value) for key, value in values.items() if value not in (None, "")}


def new_data_path(cfg: DictConfig) -> str | None:
    """This job's `data.source.path` (a new file), or None to use the checkpoint's own data."""
    return new_data_settings(cfg).get("path")


def _declared_keys(config_name: str) -> set[str]:
    """Top-level keys of `configs/<config_name>.yaml`: its values and its defaults' groups."""
    declared = OmegaConf.load(config_dir() / f"{config_name}.yaml")
    keys = {str(key) for key in declared if key != "defaults"}
    for entry in declared.get("defaults") or []:
        if isinstance(entry, str) and entry != "_self_":
            keys.add(entry.split("/")[0].split("@")[0].lstrip("+~"))
        elif not isinstance(entry, str):
            keys.update(str(key).split("/")[0].split("@")[0].lstrip("+~") for key in entry)
    return keys | {"hydra"}


def _leaves(node: Any, prefix: str) -> list[str]:
    if isinstance(node, DictConfig):
        return [leaf for key, value in node.items() for leaf in _leaves(value, f"{prefix}.{key}")]
    return [prefix]


def refuse_unread_overrides(cfg: DictConfig, config_name: str) -> None:
    """Raise one line for keys the job would ignore: anything its config file does not declare (added with
    `+key=...`), and under `data` anything but the `NEW_DATA_KEYS` its config declares."""
    entry = f"adlab-{config_name}"
    declared = _declared_keys(config_name)
    unread = [leaf for key in cfg if str(key) not in declared for leaf in _leaves(cfg[key], str(key))]
    settable = OmegaConf.load(config_dir() / f"{config_name}.yaml").get("data", {}).get("source", {})
    readable = {"data"} | {f"data.source.{key}" for key in NEW_DATA_KEYS if key in settable}
    unread += [leaf for leaf in _leaves(cfg.get("data"), "data") if leaf not in readable]
    if unread:
        given = " and ".join(sorted(readable - {"data"}))
        raise AdlabError(
            f"{unread[0]}: {entry} does not read it; data, model and fit come from the checkpoint's stored "
            f"config, and only {given} may be given"
        )


def setup_new_data(job: DictConfig, run: StoredRun, labelled: bool) -> tuple[Any, NewData]:
    """The job's data module set up on its `data.source.path` with the run's meta and preprocessing."""
    datamodule = instantiate_node(job.data, seed=job.seed, _convert_="partial")
    new = datamodule.setup_new(run.meta, run.preprocessing, labelled)
    return datamodule, new


def describe_new_data(new: NewData, path: str) -> list[str]:
    """Lines saying what was read: rows, unseen categories (column: rows), notes."""
    lines = [f"{new.rows} rows of {path}, built with the checkpoint's preprocessing"]
    if new.unseen:
        counts = ", ".join(f"{column}: {rows}" for column, rows in new.unseen.items())
        lines.append(f"unseen categories (read as the unknown category), rows per column: {counts}")
    lines += new.notes
    return lines
