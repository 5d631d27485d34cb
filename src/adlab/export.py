"""`adlab-export ckpt_path=... format=onnx|torchscript [weights=safetensors]`: turn a training checkpoint
into a deployable package.

A package is a directory (see `adlab.serving.package` for the reader):

- `model.onnx` or `model.pt` (TorchScript): the scoring graph, batch dimension dynamic.
- `preprocessing.json`: versioned description of the inputs and of the preprocessing fitted on train.
- `metadata.json`: model version, family, features, training metrics (the run's metrics.json), parity check
  (`parity.max_rel_error`: max |exported - PyTorch| / max(1, |PyTorch|) over the example inputs). Older
  packages name it `max_abs_error`; in those exported before the value family it is max |exported - PyTorch|.
- with `weights=safetensors`, `model.safetensors`: the checkpoint's weights, readable without unpickling.

What the graph holds is the family's choice, asked through the module's `export_spec(stored)` hook
(`adlab.harness.exporting`); a module without one is exported from its `example_input_array` and
`forward`, with its fitted preprocessing copied into `preprocessing.json` as it is.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf
from safetensors.torch import save as safetensors_bytes

from adlab.cli import check_overrides, report_user_errors
from adlab.errors import AdlabError
from adlab.harness.checkpoints import StoredRun, load_module
from adlab.harness.configs import config_dir, register_resolvers
from adlab.harness.exporting import PARITY_TOLERANCE, export_spec, parity_error, write_graph
from adlab.harness.io import atomic_write_bytes, atomic_write_text
from adlab.harness.report import print_outputs
from adlab.serving.package import FORMATS, METADATA_FILE, PACKAGE_VERSION, PREPROCESSING_FILE, WEIGHTS_FORMATS


def weights_file_bytes(stored: StoredRun, metadata: dict[str, str]) -> bytes:
    """The checkpoint's state dict as safetensors: tensors by name, and any non-tensor entry (a module's
    extra state) as JSON in the header under `adlab.extra_state`; `metadata` joins the header."""
    tensors, extra = {}, {}
    for name, value in stored.state_dict.items():
        if hasattr(value, "detach"):
            # safetensors stores neither shared nor strided storage: every tensor gets its own copy
            tensors[name] = value.detach().cpu().contiguous().clone()
        else:
            extra[name] = value
    header = dict(metadata)
    if extra:
        try:
            header["adlab.extra_state"] = json.dumps(extra)
        except TypeError as error:
            raise AdlabError(
                f"weights=safetensors: {sorted(extra)} of {stored.path} are neither tensors nor JSON ({error})"
            ) from None
    return safetensors_bytes(tensors, metadata=header)


def _training_metrics(ckpt_path: Path) -> dict[str, Any]:
    # adlab-train writes <run>/checkpoints/best.ckpt and <run>/metrics.json
    metrics_path = ckpt_path.resolve().parent.parent / "metrics.json"
    return json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}


def _json(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=False) + "\n"


MIN_OPSET = 18  # the oldest opset torch's (dynamo) ONNX exporter writes without converting down


def export_checkpoint(
    ckpt_path: str | Path,
    fmt: str = "onnx",
    out: str | Path | None = None,
    opset: int = 18,
    weights: str | None = None,
) -> Path:
    """Export a checkpoint written by adlab-train into a package directory; return the directory.

    Args:
        ckpt_path: the checkpoint (read without running code from it).
        fmt: graph format, `onnx` or `torchscript`.
        out: the package directory; default `<run>/export/<fmt>`.
        opset: ONNX opset.
        weights: `safetensors` also writes the checkpoint's weights as `model.safetensors`; None: graph only.

    The package is checked before its metadata is written: exported and eager outputs must agree
    within `PARITY_TOLERANCE` on the spec's example inputs, or a `RuntimeError` is raised. Written files
    are readable as a plain `open` would leave them (0644 under the usual umask 022).
    """
    if fmt not in FORMATS:
        raise AdlabError(f"format={fmt!r}: expected one of {sorted(FORMATS)}")
    if weights is not None and weights not in WEIGHTS_FORMATS:
        raise AdlabError(f"weights={weights!r}: expected null or one of {sorted(WEIGHTS_FORMATS)}")
    if fmt == "onnx":
        import onnx

        # torch's exporter writes opset 18 and up; below, its down-conversion can fail and leave opset 18
        # while the package would claim the one asked for
        newest = onnx.defs.onnx_opset_version()
        if not MIN_OPSET <= opset <= newest:
            raise AdlabError(f"opset={opset}: expected an ONNX opset from {MIN_OPSET} to {newest}")
    ckpt_path = Path(ckpt_path)
    stored = StoredRun.read(ckpt_path)
    model = load_module(stored)
    spec = export_spec(model, stored)
    out = Path(out) if out else ckpt_path.resolve().parent.parent / "export" / fmt
    model_path = write_graph(spec, fmt, out / FORMATS[fmt], opset)
    preprocessing_text = _json(spec.preprocessing)
    atomic_write_text(out / PREPROCESSING_FILE, preprocessing_text)
    # the version names what is scored (weights + preprocessing), not the exporter's byte layout,
    # so re-exporting a checkpoint keeps its version and both formats of it share one
    digest = hashlib.sha256(ckpt_path.read_bytes() + preprocessing_text.encode()).hexdigest()[:12]
    config = stored.config
    model_version = f"{config.get('experiment_name', 'model')}-{digest}"
    features = [{"name": f["name"], "kind": f["kind"]} for f in spec.preprocessing.get("features", [])]
    metadata = {
        "format": "adlab-model-package",
        "version": PACKAGE_VERSION,
        "model_version": model_version,
        "model_format": fmt,
        "model_file": model_path.name,
        "family": type(model).__name__,
        "dataset": stored.meta.dataset,
        "features": features,
        "inputs": spec.input_names,
        "outputs": spec.output_names,
        "training_metrics": _training_metrics(ckpt_path),
        "source_checkpoint": str(ckpt_path.resolve()),
        "git_commit": config.get("git_commit"),
        "exported_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "opset": opset if fmt == "onnx" else None,
    }
    if weights is not None:
        header = {"format": "pt", "model_version": model_version, "family": type(model).__name__}
        weights_path = atomic_write_bytes(out / WEIGHTS_FORMATS[weights], weights_file_bytes(stored, header))
        metadata["weights_file"] = weights_path.name
    atomic_write_text(out / METADATA_FILE, _json(metadata))
    error = parity_error(spec, out)
    if not error <= PARITY_TOLERANCE:
        (out / METADATA_FILE).unlink()  # without metadata the package cannot be loaded by mistake
        raise RuntimeError(
            f"exported {fmt} graph disagrees with PyTorch by {error:.3g} (> {PARITY_TOLERANCE})"
        )
    metadata["parity"] = {
        "rows": int(spec.example_inputs[0].shape[0]),
        "max_rel_error": error,
        "tolerance": PARITY_TOLERANCE,
    }
    atomic_write_text(out / METADATA_FILE, _json(metadata))
    return out


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="export")
@report_user_errors
def _hydra_main(cfg: DictConfig) -> None:
    out = export_checkpoint(cfg.ckpt_path, cfg.format, cfg.get("out"), int(cfg.opset), cfg.get("weights"))
    metadata = json.loads((out / METADATA_FILE).read_text())
    print(f"exported {metadata['family']} ({metadata['model_version']}) to {out}")
    print(OmegaConf.to_yaml({"parity": metadata["parity"]}).strip())
    print_outputs(None, {"package": out})


def main() -> None:
    """Console entry point (`adlab-export`)."""
    register_resolvers()
    check_overrides("export", sys.argv[1:])
    _hydra_main()


if __name__ == "__main__":
    main()
