"""`adlab-generate ckpt_path=... n=...`: sample from a generative checkpoint (ad copy or creatives).

The checkpoint's family decides what is written: its LightningModule implements
`generate_outputs(options: DictConfig, output_dir: Path) -> Path` and is rebuilt here from the config and
data meta stored in the checkpoint, without reading the training data.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from adlab.checkpoints import load_checkpoint
from adlab.cli import check_overrides, report_user_errors
from adlab.errors import AdlabError
from adlab.utils.build import build_model
from adlab.utils.configs import config_dir, register_resolvers


def load_model(ckpt_path: str, device: str = "cpu") -> torch.nn.Module:
    """Rebuild a LightningModule from an adlab checkpoint (config + data meta + weights), in eval mode."""
    checkpoint = load_checkpoint(ckpt_path)
    stored = OmegaConf.create(checkpoint["adlab_config"])
    meta = (checkpoint.get("adlab_data") or {}).get("meta")
    if meta is None:
        raise AdlabError(
            f"ckpt_path={ckpt_path}: the checkpoint carries no data meta; retrain with this adlab version"
        )
    model = build_model(stored, meta)
    model.load_state_dict(checkpoint["state_dict"])
    if hasattr(model, "on_load_checkpoint"):
        model.on_load_checkpoint(checkpoint)
    return model.to(device).eval()


def generate(cfg: DictConfig) -> Path:
    """Load the checkpoint and let its family write its samples into the run directory."""
    model = load_model(cfg.ckpt_path, cfg.get("device", "cpu"))
    if not hasattr(model, "generate_outputs"):
        raise AdlabError(
            f"ckpt_path={cfg.ckpt_path}: a {type(model).__name__} checkpoint cannot generate; expected ad copy or creatives"
        )
    torch.manual_seed(int(cfg.seed))
    return model.generate_outputs(cfg, Path(cfg.paths.output_dir))


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="generate")
@report_user_errors
def _hydra_main(cfg: DictConfig) -> None:
    generate(cfg)


def main() -> None:
    """Console entry point (`adlab-generate`)."""
    register_resolvers()
    check_overrides("generate", sys.argv[1:])
    _hydra_main()


if __name__ == "__main__":
    main()
