"""Where adlab's Hydra configs live, in an editable install and in a built wheel."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

from omegaconf import OmegaConf


def config_dir() -> Path:
    """Absolute path of the `configs/` tree.

    A built wheel carries the tree inside the package (`adlab/configs`); an editable install reads the
    repository's top-level `configs/`.
    """
    packaged = Path(str(resources.files("adlab"))) / "configs"
    if packaged.is_dir():
        return packaged
    repository = Path(__file__).resolve().parents[3] / "configs"
    if repository.is_dir():
        return repository
    raise FileNotFoundError(f"adlab configs not found in {packaged} or {repository}")


def register_resolvers() -> None:
    """Register the OmegaConf resolvers that adlab configs use (idempotent)."""
    if not OmegaConf.has_resolver("adlab_uid"):
        # A short random suffix keeps run directories apart even when jobs start in the same second
        # on different nodes; `use_cache` keeps one value per config so every reference agrees.
        OmegaConf.register_new_resolver("adlab_uid", lambda: uuid.uuid4().hex[:6], use_cache=True)


def compose_only(config_name: str, overrides: Sequence[str] = (), hydra: bool = False):
    """The config composed from adlab's config folder with `overrides` (with Hydra's node when `hydra`),
    Hydra's global state cleared before and after; Hydra's exceptions pass through."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    register_resolvers()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            return hydra_compose(
                config_name=config_name, overrides=list(overrides), return_hydra_config=hydra
            )
    finally:
        GlobalHydra.instance().clear()


def compose(config_name: str, overrides: list[str], output_dir: str | Path):
    """Compose an adlab config from Python exactly as the CLI would, writing into `output_dir`.

    Hydra's runtime fields (output dir, cwd) are filled in so that interpolations such as
    `${hydra:runtime.output_dir}` resolve; the result can be passed to `adlab.train.train`.
    """
    import os

    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    cfg = compose_only(config_name, overrides, hydra=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(Path(output_dir).resolve())
        cfg.hydra.runtime.cwd = os.getcwd()
        cfg.hydra.job.num = 0
    HydraConfig().set_config(cfg)
    return cfg
