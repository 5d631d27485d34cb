"""Graph runtimes behind one interface: ONNX Runtime for `model.onnx`, TorchScript for `model.pt`.

An ONNX graph is data: ONNX Runtime runs its operators and nothing the file names. A TorchScript file is
code by nature (`torch.jit.load` compiles and runs the TorchScript it holds), so a TorchScript package is
refused unless the caller opts in (`allow_torchscript=true`) for a package whose source it trusts.

A backend runs the exported graph on numpy arrays. For a tabular scorer it also owns one preallocated
single-row input pair (`one_categorical`, `one_numeric`) that the per-request path fills in place, so
that scoring one request allocates nothing on the graph side.
"""

from __future__ import annotations

import warnings
from typing import Any, Protocol

import numpy as np

from adlab.errors import AdlabError
from adlab.serving.package import ModelPackage


class Backend(Protocol):
    """What scorers need from a runtime."""

    def run_raw(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        """Run the graph on arrays in its input order; return its outputs as numpy arrays."""
        ...


class OnnxRuntimeBackend:
    """An ONNX Runtime session on the CPU.

    Args:
        package: the exported package (`model.onnx`).
        threads: intra-op threads; 1 keeps a request on one core, which is what a latency-bound
            service wants (thread hand-offs cost more than a small MLP's arithmetic).
    """

    def __init__(self, package: ModelPackage, threads: int = 1):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        self.session = ort.InferenceSession(
            str(package.model_path), options, providers=["CPUExecutionProvider"]
        )
        self.input_names = [node.name for node in self.session.get_inputs()]
        self.output_names = [node.name for node in self.session.get_outputs()]
        self._binding: Any = None

    def run_raw(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        return self.session.run(self.output_names, dict(zip(self.input_names, inputs, strict=True)))

    def score(self, categorical: np.ndarray, numeric: np.ndarray) -> np.ndarray:
        """Tabular graph: `(n, n_cat) int64`, `(n, n_num) float32` -> probabilities `(n,) float32`."""
        return self.session.run(self.output_names, {"categorical": categorical, "numeric": numeric})[0]

    def bind_one(self, categorical: np.ndarray, numeric: np.ndarray) -> None:
        """Bind preallocated single-row buffers once; `score_bound` then reads them in place."""
        import onnxruntime as ort

        self._one_output = np.zeros(1, dtype=np.float32)
        binding = self.session.io_binding()
        binding.bind_cpu_input("categorical", categorical)
        binding.bind_cpu_input("numeric", numeric)
        output = ort.OrtValue.ortvalue_from_numpy(self._one_output)
        binding.bind_ortvalue_output(self.output_names[0], output)
        self._binding, self._one_output_value = binding, output

    def score_bound(self) -> float:
        """Score the row in the bound buffers (about half the overhead of `session.run` for one row)."""
        self.session.run_with_iobinding(self._binding)
        return float(self._one_output[0])


class TorchScriptBackend:
    """A TorchScript module (`model.pt`); torch is imported only when such a package is loaded."""

    def __init__(self, package: ModelPackage, threads: int = 1):
        import torch

        self.torch = torch
        with warnings.catch_warnings():
            warnings.simplefilter(
                "ignore", FutureWarning
            )  # TorchScript is deprecated upstream, still supported
            self.module = torch.jit.load(str(package.model_path), map_location="cpu").eval()

    def run_raw(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        with self.torch.inference_mode():
            outputs = self.module(*(self.torch.from_numpy(np.ascontiguousarray(x)) for x in inputs))
        outputs = outputs if isinstance(outputs, (tuple, list)) else (outputs,)
        return [output.numpy() for output in outputs]

    def score(self, categorical: np.ndarray, numeric: np.ndarray) -> np.ndarray:
        return self.run_raw([categorical, numeric])[0]

    def bind_one(self, categorical: np.ndarray, numeric: np.ndarray) -> None:
        self._one = (self.torch.from_numpy(categorical), self.torch.from_numpy(numeric))  # share memory

    def score_bound(self) -> float:
        with self.torch.inference_mode():
            return float(self.module(*self._one)[0])


def load_backend(
    package: ModelPackage, threads: int = 1, allow_torchscript: bool = False
) -> OnnxRuntimeBackend | TorchScriptBackend:
    """The runtime for the package's graph format.

    Args:
        package: the package to run.
        threads: intra-op threads of the runtime.
        allow_torchscript: run a TorchScript package's code; without it such a package is refused with
            an `AdlabError`, since loading it executes code from the file.
    """
    if package.model_format == "onnx":
        return OnnxRuntimeBackend(package, threads)
    if package.model_format != "torchscript":
        raise AdlabError(
            f"model={package.directory}: graph format {package.model_format!r}; expected onnx or torchscript"
        )
    if not allow_torchscript:
        raise AdlabError(
            f"model={package.directory}: a TorchScript package runs code from {package.model_path.name} when "
            "loaded; use an ONNX export (adlab-export format=onnx), or pass allow_torchscript=true if you "
            "trust where this package came from"
        )
    return TorchScriptBackend(package, threads)
