"""What `adlab-export` needs from a family, and the family-free parts of exporting.

A family decides what its package holds by giving its LightningModule one hook:

    def export_spec(self, stored: StoredRun) -> ExportSpec: ...

`stored` is the checkpoint the module was rebuilt from (config, data meta, fitted preprocessing). The
spec names the graph to trace (preprocessing that graph runtimes do well goes inside it), example inputs
for tracing and the parity check, and the `preprocessing.json` that describes what the caller does
before the graph. A family's spec lives in `families/<name>/export.py`. A module without the hook is
exported by `generic_spec`: its `forward` from its `example_input_array`, its preprocessing copied as it is.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch.core.module import _jit_is_scripting
from torch import Tensor, nn

from adlab.errors import AdlabError
from adlab.harness.checkpoints import StoredRun
from adlab.serving.backends import load_backend
from adlab.serving.package import PREPROCESSING_VERSION, load_package

# max |exported - eager| / max(1, |eager|) on any output, checked before a package is written: absolute
# for outputs within ±1 (probabilities), relative beyond (a spend in dollars carries float32's relative error)
PARITY_TOLERANCE = 1e-5


@dataclass
class ExportSpec:
    """What gets exported and how its inputs are described.

    Attributes:
        graph: the module traced into the package (eval mode).
        example_inputs: inputs with a batch dimension of at least 2, used for tracing and parity.
        input_names: graph input names, in `forward` order.
        output_names: graph output names.
        preprocessing: the JSON written to `preprocessing.json` (start it with `preprocessing_header`).
    """

    graph: nn.Module
    example_inputs: tuple[Tensor, ...]
    input_names: list[str]
    output_names: list[str]
    preprocessing: dict[str, Any]


def preprocessing_header(kind: str) -> dict[str, Any]:
    """The keys every `preprocessing.json` starts with (format, layout version, kind of data)."""
    return {"format": "adlab-preprocessing", "version": PREPROCESSING_VERSION, "kind": kind}


def _as_tuple(example: Any) -> tuple[Tensor, ...]:
    if isinstance(example, Tensor):
        return (example,)
    if isinstance(example, (tuple, list)) and all(isinstance(item, Tensor) for item in example):
        return tuple(example)
    raise AdlabError(
        f"example_input_array must be a tensor or a tuple of tensors to export, got {type(example).__name__}"
    )


def generic_spec(model: nn.Module, stored: StoredRun) -> ExportSpec:
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
        **preprocessing_header(stored.meta.kind),
        "inputs": {
            name: f"{tuple(['batch', *x.shape[1:]])} {str(x.dtype).removeprefix('torch.')}"
            for name, x in zip(names, example, strict=True)
        },
        "state": stored.preprocessing,
        "in_graph": [],
        "outside_graph": ["everything in `state` (applied by the caller before the graph)"],
    }
    output_names = ["output"] if count == 1 else [f"output_{i}" for i in range(count)]
    return ExportSpec(model.eval(), example, names, output_names, preprocessing)


def export_spec(model: nn.Module, stored: StoredRun) -> ExportSpec:
    """What to export of `model` (rebuilt from `stored`): its own `export_spec(stored)` hook when its
    family defines one, else `generic_spec`."""
    hook = getattr(model, "export_spec", None)
    return hook(stored) if callable(hook) else generic_spec(model, stored)


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
    """Max |exported - eager| / max(1, |eager|) over the spec's example inputs, run through the package's
    own runtime."""
    # the graph was written by this process a moment ago: running its TorchScript is running our own code
    backend = load_backend(load_package(package_dir), threads=1, allow_torchscript=True)
    with torch.inference_mode():
        eager = spec.graph(*spec.example_inputs)
    eager = eager if isinstance(eager, (tuple, list)) else (eager,)
    exported = backend.run_raw([x.numpy() for x in spec.example_inputs])
    return max(
        float(np.max(np.abs(e.numpy() - x) / np.maximum(1.0, np.abs(e.numpy()))))
        for e, x in zip(eager, exported, strict=True)
    )
