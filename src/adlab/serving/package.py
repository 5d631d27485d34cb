"""Read a model package written by `adlab-export`: metadata, preprocessing description and graph file."""

from __future__ import annotations

import importlib
import json
import pkgutil
import re
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from adlab.errors import AdlabError

PACKAGE_VERSION = 1  # layout of metadata.json; bump on incompatible changes
PREPROCESSING_VERSION = 1  # layout of preprocessing.json
METADATA_FILE = "metadata.json"
PREPROCESSING_FILE = "preprocessing.json"
FORMATS = {"onnx": "model.onnx", "torchscript": "model.pt"}  # export format -> graph file name
WEIGHTS_FORMATS = {"safetensors": "model.safetensors"}  # adlab-export weights=... -> weights file name
# most rows per graph call of a tabular scorer (preprocessing.json's graph_batch_rows may ask for fewer)
GRAPH_MAX_ROWS = 65536


def model_path_overrides(argv: list[str]) -> list[str]:
    """Command lines say `model=PATH`; the config key is `model_path`, because `model` is also the name of
    a config group in adlab's configs and Hydra would read `model=PATH` as a choice of that group."""
    return [f"model_path={arg[len('model=') :]}" if arg.startswith("model=") else arg for arg in argv]


@dataclass
class ModelPackage:
    """An exported model: `directory` holds `metadata.json`, `preprocessing.json` and the graph file."""

    directory: Path
    metadata: dict[str, Any]
    preprocessing: dict[str, Any]

    @property
    def model_path(self) -> Path:
        return self.directory / self.metadata["model_file"]

    @property
    def model_format(self) -> str:
        return self.metadata["model_format"]

    @property
    def model_version(self) -> str:
        return self.metadata["model_version"]


def _read_json(path: Path, what: str) -> dict[str, Any]:
    if not path.is_file():
        raise AdlabError(
            f"{what}: {path.name} not found in {path.parent}; expected a package written by adlab-export"
        )
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise AdlabError(f"{what}: {path} is not valid JSON ({error})") from None
    if not isinstance(data, dict):
        raise AdlabError(f"{what}: {path} should hold a JSON object")
    return data


def load_package(path: str | Path, what: str = "model") -> ModelPackage:
    """Open a package directory (or the graph file inside it); `AdlabError` naming `what` when it is not one."""
    path = Path(path)
    if path.suffix == ".ckpt":
        raise AdlabError(
            f"{what}={path} is a training checkpoint; export it first: adlab-export ckpt_path={path}"
        )
    directory = path.parent if path.is_file() else path
    if not directory.is_dir():
        raise AdlabError(f"{what}={path}: no such package directory")
    metadata = _read_json(directory / METADATA_FILE, f"{what}={path}")
    preprocessing = _read_json(directory / PREPROCESSING_FILE, f"{what}={path}")
    if metadata.get("format") != "adlab-model-package" or metadata.get("version") != PACKAGE_VERSION:
        raise AdlabError(
            f"{what}={path}: package format {metadata.get('format')!r} version {metadata.get('version')!r}; "
            f"this adlab reads adlab-model-package version {PACKAGE_VERSION}"
        )
    if preprocessing.get("version") != PREPROCESSING_VERSION:
        raise AdlabError(
            f"{what}={path}: preprocessing version {preprocessing.get('version')!r}; expected {PREPROCESSING_VERSION}"
        )
    package = ModelPackage(directory, metadata, preprocessing)
    if not package.model_path.is_file():
        raise AdlabError(f"{what}={path}: graph file {package.model_path.name} is missing")
    return package


def served_kinds(prefix: str) -> list[str]:
    """The kinds of data with a module `adlab.serving.<prefix><kind>`, sorted."""
    import adlab.serving as serving

    return sorted(
        info.name[len(prefix) :]
        for info in pkgutil.iter_modules(serving.__path__)
        if info.name.startswith(prefix)
    )


def kind_module(package: ModelPackage, prefix: str, tool: str, what: str = "model") -> ModuleType:
    """The module `adlab.serving.<prefix><kind>` that handles the package's kind of data (its
    `preprocessing.json` `kind`) in `tool`; `AdlabError` naming the package when there is none."""
    kind = package.preprocessing.get("kind")
    kinds = served_kinds(prefix)
    if not isinstance(kind, str) or not re.fullmatch(r"[a-z][a-z0-9_]*", kind) or kind not in kinds:
        raise AdlabError(
            f"{what}={package.directory}: a package of {kind!r} data; {tool} takes packages of "
            f"{', '.join(map(repr, kinds))} data"
        )
    return importlib.import_module(f"adlab.serving.{prefix}{kind}")
