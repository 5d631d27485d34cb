"""Print the composed config as a rich tree at the start of a job."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.syntax import Syntax
from rich.tree import Tree

FIRST = ("data", "model", "callbacks", "logger", "trainer", "paths", "extras")


def print_config_tree(cfg: DictConfig, resolve: bool = True) -> None:
    """Print each top-level group of `cfg` as a branch of YAML (resolved by default)."""
    tree = Tree("config", style="dim", guide_style="dim")
    keys = [k for k in FIRST if k in cfg] + [k for k in cfg if k not in FIRST]
    for key in keys:
        branch = tree.add(str(key), style="bold")
        value = cfg[key]
        text = OmegaConf.to_yaml(value, resolve=resolve) if isinstance(value, DictConfig) else str(value)
        branch.add(Syntax(text, "yaml", background_color="default"))
    Console().print(tree)
