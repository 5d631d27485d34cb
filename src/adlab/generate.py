"""`adlab-generate ckpt_path=... n=...`: sample from a generative checkpoint (ad copy or creatives).

The checkpoint's family decides what is written: its LightningModule implements
`generate_outputs(options: DictConfig, output_dir: Path) -> Path` and is rebuilt from the config and
data meta stored in the checkpoint (`adlab.harness.checkpoints.load_module`), without reading the training
data.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig

from adlab.cli import check_overrides, report_user_errors
from adlab.errors import AdlabError
from adlab.harness.checkpoints import load_module
from adlab.harness.configs import config_dir, register_resolvers
from adlab.harness.report import print_outputs


def generate(cfg: DictConfig) -> Path:
    """Load the checkpoint and let its family write its samples into the run directory."""
    conditions = cfg.get("conditions")
    if conditions is not None and not isinstance(conditions, DictConfig):
        raise AdlabError(
            f"conditions={conditions!r}: expected a mapping of condition to value, e.g. conditions={{department:Dresses}}"
        )
    model = load_module(cfg.ckpt_path, cfg.get("device", "cpu"))
    if not hasattr(model, "generate_outputs"):
        raise AdlabError(
            f"ckpt_path={cfg.ckpt_path}: a {type(model).__name__} checkpoint cannot generate; expected ad copy or creatives"
        )
    torch.manual_seed(int(cfg.seed))
    return model.generate_outputs(cfg, Path(cfg.paths.output_dir))


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="generate")
@report_user_errors
def _hydra_main(cfg: DictConfig) -> None:
    print_outputs(cfg.paths.output_dir, {"samples": generate(cfg)})


def main() -> None:
    """Console entry point (`adlab-generate`)."""
    register_resolvers()
    check_overrides("generate", sys.argv[1:])
    _hydra_main()


if __name__ == "__main__":
    main()
