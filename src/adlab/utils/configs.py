"""Where adlab's Hydra configs live, in an editable install and in a built wheel."""

from __future__ import annotations

import uuid
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
