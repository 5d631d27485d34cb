"""`adlab-export ckpt_path=... format=onnx|torchscript`: turn a training checkpoint into a deployable package.

A package is a directory (see `adlab.serving.package` for the reader):

- `model.onnx` or `model.pt` (TorchScript): the scoring graph, batch dimension dynamic.
- `preprocessing.json`: versioned description of the inputs and of the preprocessing fitted on train.
- `metadata.json`: model version, family, features, training metrics (the run's metrics.json), parity check.

The propensity scorer is exported with its numeric standardisation inside the graph and a sigmoid at
the end, so the graph maps unscaled numeric values and vocabulary indices to a purchase probability;
the vocabularies (strings, which graph runtimes handle poorly) and the missing-value fill (a select
over every value, which costs ONNX Runtime more than the rest of the scaling) live in
`preprocessing.json`, where `adlab.serving.schema` applies them with lookup tables built once. Any other family is exported
generically from its `example_input_array` and `forward`, with its fitted preprocessing state copied into
`preprocessing.json` as it is.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import inspect
import io
import json
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
from lightning.pytorch.core.module import _jit_is_scripting
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn

from adlab.checkpoints import load_checkpoint
from adlab.cli import check_overrides, report_user_errors
from adlab.errors import AdlabError
from adlab.generate import load_model
from adlab.serving.package import (
    FORMATS,
    GRAPH_MAX_ROWS,
    METADATA_FILE,
    PACKAGE_VERSION,
    PREPROCESSING_FILE,
    PREPROCESSING_VERSION,
    load_package,
)
from adlab.utils.configs import config_dir, register_resolvers
from adlab.utils.io import atomic_write_text

PARITY_TOLERANCE = 1e-5  # max |exported - eager| on any output, checked before a package is written
GRAPH_CALL_BYTES = 512 * 2**20  # budget of a tabular graph call's intermediate tensors (see graph_batch_rows)


class TabularScoringGraph(nn.Module):
    """A propensity scorer with its numeric scaling: unscaled values in, purchase probability out.

    Args:
        scorer: module mapping `(categorical, scaled numeric)` to logits `(batch,)` (a `PropensityModule`).
        mean: per-column mean of the (filled) training values `(n_num,)`.
        scale: per-column standard deviation `(n_num,)`, zeros replaced by 1.

    Shapes: `categorical (batch, n_cat) int64` vocabulary indices (0 = unknown),
    `numeric (batch, n_num) float32` unscaled values with missing ones already filled ->
    `(batch,) float32` probability.
    """

    def __init__(self, scorer: nn.Module, mean: Sequence[float], scale: Sequence[float]):
        super().__init__()
        self.scorer = scorer
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32))
        self.register_buffer("scale", torch.tensor(scale, dtype=torch.float32))

    def forward(self, categorical: Tensor, numeric: Tensor) -> Tensor:
        return torch.sigmoid(self.scorer(categorical, (numeric - self.mean) / self.scale))


class FoldedEnsembleGraph(nn.Module):
    """A plain propensity ensemble (no numeric embedding, one hidden layer) folded for one-row latency.

    The same function as `TabularScoringGraph` over that model, with the algebra done once at export:
    each categorical embedding table is multiplied into its rows of every member's first layer (a lookup
    then yields that column's share of the hidden pre-activations of all members at once), the numeric
    scaling is folded into the numeric rows of the first layer, and the members' output layers and their
    mean into one vector. A request then costs a few Gathers, one MatMul per layer and a sigmoid: about a
    third fewer graph nodes than the unfolded graph, whose per-node overhead dominates one row.

    Shapes: as `TabularScoringGraph` (`categorical (batch, n_cat) int64`, unscaled `numeric (batch, n_num)
    float32` -> `(batch,) float32` probability).
    """

    def __init__(self, model: nn.Module, mean: Sequence[float], scale: Sequence[float]):
        super().__init__()
        first, last = [layer for layer in model.net.layers if hasattr(layer, "weight")]
        members, _, hidden = first.weight.shape
        weight = first.weight.detach()  # (members, inputs, hidden)
        bias = first.bias.detach().reshape(members, hidden)
        tables, offset = [], 0
        for table in model.net.embeddings:  # (members, cardinality, width)
            width = table.shape[-1]
            rows = weight[:, offset : offset + width]
            # (cardinality, members * hidden): a looked-up row is every member's share at once
            tables.append(torch.einsum("mcw,mwh->cmh", table.detach(), rows).flatten(1))
            offset += width
        numeric_rows = weight[:, offset:]  # (members, n_selected, hidden)
        mean_t = torch.tensor(mean, dtype=torch.float32)
        scale_t = torch.tensor(scale, dtype=torch.float32)
        categorical_index, numeric_index = model.column_selection()
        if numeric_index is not None:
            mean_t, scale_t = mean_t[numeric_index], scale_t[numeric_index]
        # (x - mean) / scale @ W = x @ (W / scale) - (mean / scale) @ W
        folded = numeric_rows / scale_t[None, :, None]
        bias = bias - torch.einsum("f,mfh->mh", mean_t / scale_t, numeric_rows)
        self.tables = nn.ParameterList(nn.Parameter(t, requires_grad=False) for t in tables)
        # the model's column selection (None: every column, no gather)
        self.register_buffer("categorical_index", categorical_index)
        self.register_buffer("numeric_index", numeric_index)
        # (n_num, members * hidden)
        self.register_buffer("numeric_weight", folded.permute(1, 0, 2).flatten(1))
        self.register_buffer("hidden_bias", bias.flatten())
        # mean over members of each member's output layer: one (members * hidden) vector and a scalar
        self.register_buffer("output_weight", last.weight.detach().reshape(members * hidden, 1) / members)
        self.register_buffer("output_bias", last.bias.detach().mean().reshape(1))

    @staticmethod
    def foldable(model: nn.Module) -> bool:
        """A `PropensityModule` of the shape this graph folds (anything else is exported unfolded)."""
        net = getattr(model, "net", None)
        linear = [layer for layer in getattr(net, "layers", []) if hasattr(layer, "weight")]
        return (
            net is not None
            and getattr(net, "numeric_embedding", "missing") is None
            and len(linear) == 2
            and linear[-1].weight.shape[-1] == 1
        )

    def forward(self, categorical: Tensor, numeric: Tensor) -> Tensor:
        if self.categorical_index is not None:
            categorical = categorical.index_select(1, self.categorical_index)
        if self.numeric_index is not None:
            numeric = numeric.index_select(1, self.numeric_index)
        hidden = numeric @ self.numeric_weight + self.hidden_bias
        for column, table in enumerate(self.tables):
            hidden = hidden + table.index_select(0, categorical[:, column])
        return torch.sigmoid((torch.relu(hidden) @ self.output_weight + self.output_bias).squeeze(-1))


@dataclass
class ExportSpec:
    """What gets exported and how its inputs are described.

    Attributes:
        graph: the module traced into the package (eval mode).
        example_inputs: inputs with a batch dimension of at least 2, used for tracing and parity.
        input_names: graph input names, in `forward` order.
        output_names: graph output names.
        preprocessing: the JSON written to `preprocessing.json`.
    """

    graph: nn.Module
    example_inputs: tuple[Tensor, ...]
    input_names: list[str]
    output_names: list[str]
    preprocessing: dict[str, Any]


def _tabular_parity_inputs(state: dict[str, Any], rows: int, seed: int) -> tuple[Tensor, Tensor]:
    """Inputs drawn from the fitted schema: vocabulary indices drawn uniformly (0 = unseen included),
    numerics spread around the training distribution (two standard deviations)."""
    generator = np.random.default_rng(seed)
    categorical = (
        np.stack(
            [generator.integers(0, len(state["vocabularies"][c]) + 1, rows) for c in state["categorical"]],
            axis=1,
        )
        if state["categorical"]
        else np.zeros((rows, 0), dtype=np.int64)
    )
    mean, scale = np.asarray(state["mean"]), np.asarray(state["scale"])
    numeric = mean + scale * generator.normal(0.0, 2.0, size=(rows, len(mean)))
    return torch.from_numpy(categorical.astype(np.int64)), torch.from_numpy(numeric.astype(np.float32))


def graph_batch_rows(model: nn.Module) -> int:
    """Rows per graph call for a tabular network: GRAPH_CALL_BYTES over twice its activation bytes per
    row, between 256 and 65,536 (the 16-member bidding scorer gets about 41,000; the cross-fitted 80-member
    periodic flagship measured about 270 kB per row in ONNX Runtime, 18 GB for 65,536 rows)."""
    net = getattr(model, "net", None)
    if not hasattr(net, "activation_floats_per_row"):
        return GRAPH_MAX_ROWS
    row_bytes = 2 * 4 * max(1, net.activation_floats_per_row())
    return int(min(GRAPH_MAX_ROWS, max(256, GRAPH_CALL_BYTES // row_bytes)))


def tabular_spec(model: nn.Module, checkpoint: dict[str, Any]) -> ExportSpec:
    """The propensity scorer with numeric scaling in the graph; vocabularies and fill in the JSON."""
    state = checkpoint["adlab_data"]["preprocessing"]
    source = (checkpoint["adlab_config"].get("data") or {}).get("source") or {}
    for name in ("out_of_fold_logits", "out_of_fold_targets"):
        # a cross-fitted ensemble's scores of its training customers are not part of the scorer
        if getattr(model, name, None) is not None:
            setattr(model, name, None)
    graph = TabularScoringGraph(model, state["mean"], state["scale"]).eval()
    example = _tabular_parity_inputs(state, 64, seed=0)
    if FoldedEnsembleGraph.foldable(model):
        folded = FoldedEnsembleGraph(model, state["mean"], state["scale"]).eval()
        with torch.inference_mode():
            gap = (folded(*example) - graph(*example)).abs().max().item()
        # the folding only reorders float arithmetic; any larger gap means it does not apply: keep the plain graph
        if gap <= PARITY_TOLERANCE / 10:
            graph = folded
        else:
            warnings.warn(
                f"the folded scoring graph differs by {gap:.2g}; exporting the unfolded graph", stacklevel=2
            )
    features = [
        {"name": name, "kind": "categorical", "vocabulary": state["vocabularies"][name]}
        for name in state["categorical"]
    ] + [
        {"name": name, "kind": "numeric", "fill": fill, "mean": mean, "scale": scale}
        for name, fill, mean, scale in zip(
            state["numeric"], state["fill"], state["mean"], state["scale"], strict=True
        )
    ]
    preprocessing = {
        "format": "adlab-preprocessing",
        "version": PREPROCESSING_VERSION,
        "kind": "tabular",
        "features": features,
        # training refused missing numerics unless an imputation was configured; serving does the same
        "allow_missing_numeric": source.get("impute") is not None,
        "id_column": source.get("id_column"),
        "target": source.get("target"),
        "inputs": {
            "categorical": "(batch, n_categorical) int64: 1 + position in the feature's vocabulary, 0 = unseen",
            "numeric": "(batch, n_numeric) float32: unscaled values, missing ones replaced by `fill`",
        },
        "in_graph": ["numeric standardisation (mean, scale)", "sigmoid"],
        # "folded": embeddings and scaling multiplied into the first layer (FoldedEnsembleGraph)
        "graph": "folded" if isinstance(graph, FoldedEnsembleGraph) else "unfolded",
        # scorers split larger batches into calls of at most this many rows, so that a large ensemble's
        # intermediate tensors stay within GRAPH_CALL_BYTES whatever the chunk size of a file
        "graph_batch_rows": graph_batch_rows(model),
        "outside_graph": [
            "category -> 1 + vocabulary position (categories are text, as in training; unseen -> 0)",
            "missing numeric -> fill (refused when allow_missing_numeric is false)",
        ],
    }
    return ExportSpec(graph, example, ["categorical", "numeric"], ["probability"], preprocessing)


class ImageScoringGraph(nn.Module):
    """An image classifier with its input scaling: uint8 images in, class probabilities out.

    Args:
        classifier: a module with `prepare(images)` (scale and normalise uint8 images, as in evaluation)
            and `forward(prepared) -> logits (batch, classes)` (an `ImageryModule`).

    Shapes: `image (batch, c, h, w) uint8`, already resized to the training image size ->
    `(batch, classes) float32` probabilities.
    """

    def __init__(self, classifier: nn.Module):
        super().__init__()
        self.classifier = classifier

    def forward(self, image: Tensor) -> Tensor:
        return torch.softmax(self.classifier(self.classifier.prepare(image)), dim=-1)


def image_spec(model: nn.Module, checkpoint: dict[str, Any]) -> ExportSpec:
    """An image classifier with scaling and normalisation in the graph; sizes and classes in the JSON."""
    if not hasattr(model, "prepare"):
        return generic_spec(model, checkpoint)
    meta = checkpoint["adlab_data"]["meta"]
    shape = (int(meta["channels"]), *(int(size) for size in meta["image_size"]))
    generator = torch.Generator().manual_seed(0)
    example = (torch.randint(0, 256, (8, *shape), dtype=torch.uint8, generator=generator),)
    preprocessing = {
        "format": "adlab-preprocessing",
        "version": PREPROCESSING_VERSION,
        "kind": "images",
        "classes": list(meta["classes"]),
        "class_keys": list(meta.get("class_keys", meta["classes"])),
        "channels": shape[0],
        "image_size": list(shape[1:]),
        "mean": meta.get("mean"),
        "std": meta.get("std"),
        "inputs": {"image": f"(batch, {shape[0]}, {shape[1]}, {shape[2]}) uint8, pixel values 0-255"},
        "in_graph": ["scaling to [0, 1] and per-channel normalisation (mean, std)", "softmax"],
        "outside_graph": [f"decoding and resizing to {shape[1]}x{shape[2]} with {shape[0]} channel(s)"],
    }
    return ExportSpec(ImageScoringGraph(model).eval(), example, ["image"], ["probabilities"], preprocessing)


def _as_tuple(example: Any) -> tuple[Tensor, ...]:
    if isinstance(example, Tensor):
        return (example,)
    if isinstance(example, (tuple, list)) and all(isinstance(item, Tensor) for item in example):
        return tuple(example)
    raise AdlabError(
        f"example_input_array must be a tensor or a tuple of tensors to export, got {type(example).__name__}"
    )


def generic_spec(model: nn.Module, checkpoint: dict[str, Any]) -> ExportSpec:
    """Any module with an `example_input_array`: its `forward` as it is, its preprocessing state as JSON."""
    example = getattr(model, "example_input_array", None)
    if example is None:
        raise AdlabError(
            f"{type(model).__name__} cannot be exported: it declares no example_input_array (the input shape to trace)"
        )
    # a batch of one lets the exporter specialise the batch dimension; two rows keep it symbolic
    example = tuple(torch.cat([x, x]) if x.shape[0] == 1 else x for x in _as_tuple(example))
    names = [
        p.name
        for p in inspect.signature(model.forward).parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ][: len(example)]
    with torch.inference_mode():
        outputs = model(*example)
    count = len(outputs) if isinstance(outputs, (tuple, list)) else 1
    preprocessing = {
        "format": "adlab-preprocessing",
        "version": PREPROCESSING_VERSION,
        "kind": (checkpoint["adlab_data"].get("meta") or {}).get("kind", "unknown"),
        "inputs": {
            name: f"{tuple(['batch', *x.shape[1:]])} {str(x.dtype).removeprefix('torch.')}"
            for name, x in zip(names, example, strict=True)
        },
        "state": checkpoint["adlab_data"].get("preprocessing") or {},
        "in_graph": [],
        "outside_graph": ["everything in `state` (applied by the caller before the graph)"],
    }
    output_names = ["output"] if count == 1 else [f"output_{i}" for i in range(count)]
    return ExportSpec(model.eval(), example, names, output_names, preprocessing)


def export_spec(model: nn.Module, checkpoint: dict[str, Any]) -> ExportSpec:
    """Pick how a family is exported: tabular scorers and image classifiers with their preprocessing
    in the graph, any other module generically."""
    meta = (checkpoint.get("adlab_data") or {}).get("meta") or {}
    if meta.get("kind") == "tabular":
        return tabular_spec(model, checkpoint)
    if meta.get("kind") == "images":
        return image_spec(model, checkpoint)
    return generic_spec(model, checkpoint)


def write_graph(spec: ExportSpec, fmt: str, path: Path, opset: int = 18) -> Path:
    """Write `spec.graph` as ONNX or TorchScript with a dynamic batch dimension."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    # tracer warnings about constants and the exporter's progress lines are expected here
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        if fmt == "onnx":
            batch = torch.export.Dim("batch", min=1)
            program = torch.onnx.export(
                spec.graph,
                spec.example_inputs,
                input_names=spec.input_names,
                output_names=spec.output_names,
                dynamic_shapes=tuple({0: batch} for _ in spec.example_inputs),
                opset_version=opset,
                dynamo=True,
                verbose=False,
            )
            program.save(str(tmp))
        else:
            # the tracer probes every attribute, and a LightningModule's `trainer` raises outside a
            # Trainer unless Lightning's own scripting flag is up (as in `LightningModule.to_torchscript`)
            with torch.no_grad(), _jit_is_scripting():
                traced = torch.jit.trace(spec.graph, spec.example_inputs, check_trace=False)
            torch.jit.save(traced, str(tmp))
    tmp.replace(path)
    return path


def parity_error(spec: ExportSpec, package_dir: Path) -> float:
    """Max |exported - eager| over the spec's example inputs, run through the package's own runtime."""
    from adlab.serving.backends import load_backend

    backend = load_backend(load_package(package_dir), threads=1)
    with torch.inference_mode():
        eager = spec.graph(*spec.example_inputs)
    eager = eager if isinstance(eager, (tuple, list)) else (eager,)
    exported = backend.run_raw([x.numpy() for x in spec.example_inputs])
    return max(float(np.max(np.abs(e.numpy() - x))) for e, x in zip(eager, exported, strict=True))


def _training_metrics(ckpt_path: Path) -> dict[str, Any]:
    # adlab-train writes <run>/checkpoints/best.ckpt and <run>/metrics.json
    metrics_path = ckpt_path.resolve().parent.parent / "metrics.json"
    return json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}


def _json(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=False) + "\n"


def export_checkpoint(
    ckpt_path: str | Path, fmt: str = "onnx", out: str | Path | None = None, opset: int = 18
) -> Path:
    """Export a checkpoint written by adlab-train into a package directory; return the directory.

    The package is checked before its metadata is written: exported and eager outputs must agree
    within `PARITY_TOLERANCE` on the spec's example inputs, or a `RuntimeError` is raised.
    """
    if fmt not in FORMATS:
        raise AdlabError(f"format={fmt!r}: expected one of {sorted(FORMATS)}")
    ckpt_path = Path(ckpt_path)
    checkpoint = load_checkpoint(ckpt_path)
    model = load_model(str(ckpt_path))
    spec = export_spec(model, checkpoint)
    out = Path(out) if out else ckpt_path.resolve().parent.parent / "export" / fmt
    model_path = write_graph(spec, fmt, out / FORMATS[fmt], opset)
    preprocessing_text = _json(spec.preprocessing)
    atomic_write_text(out / PREPROCESSING_FILE, preprocessing_text)
    # the version names what is scored (weights + preprocessing), not the exporter's byte layout,
    # so re-exporting a checkpoint keeps its version and both formats of it share one
    digest = hashlib.sha256(ckpt_path.read_bytes() + preprocessing_text.encode()).hexdigest()[:12]
    config = checkpoint["adlab_config"]
    features = [{"name": f["name"], "kind": f["kind"]} for f in spec.preprocessing.get("features", [])]
    metadata = {
        "format": "adlab-model-package",
        "version": PACKAGE_VERSION,
        "model_version": f"{config.get('experiment_name', 'model')}-{digest}",
        "model_format": fmt,
        "model_file": model_path.name,
        "family": type(model).__name__,
        "dataset": (checkpoint["adlab_data"].get("meta") or {}).get("dataset"),
        "features": features,
        "inputs": spec.input_names,
        "outputs": spec.output_names,
        "training_metrics": _training_metrics(ckpt_path),
        "source_checkpoint": str(ckpt_path.resolve()),
        "git_commit": config.get("git_commit"),
        "exported_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "opset": opset if fmt == "onnx" else None,
    }
    atomic_write_text(out / METADATA_FILE, _json(metadata))
    error = parity_error(spec, out)
    if not error <= PARITY_TOLERANCE:
        (out / METADATA_FILE).unlink()  # without metadata the package cannot be loaded by mistake
        raise RuntimeError(
            f"exported {fmt} graph disagrees with PyTorch by {error:.3g} (> {PARITY_TOLERANCE})"
        )
    metadata["parity"] = {
        "rows": int(spec.example_inputs[0].shape[0]),
        "max_abs_error": error,
        "tolerance": PARITY_TOLERANCE,
    }
    atomic_write_text(out / METADATA_FILE, _json(metadata))
    return out


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="export")
@report_user_errors
def _hydra_main(cfg: DictConfig) -> None:
    out = export_checkpoint(cfg.ckpt_path, cfg.format, cfg.get("out"), int(cfg.opset))
    metadata = json.loads((out / METADATA_FILE).read_text())
    print(f"exported {metadata['family']} ({metadata['model_version']}) to {out}")
    print(OmegaConf.to_yaml({"parity": metadata["parity"]}).strip())


def main() -> None:
    """Console entry point (`adlab-export`)."""
    register_resolvers()
    check_overrides("export", sys.argv[1:])
    _hydra_main()


if __name__ == "__main__":
    main()
