"""The layout's rules, read from the source: the harness names no family, and data flows one way."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "adlab"
ENTRY_POINTS = ["train.py", "eval.py", "predict.py", "export.py", "generate.py", "compare.py"]
HARNESS = sorted(
    [PACKAGE / name for name in ENTRY_POINTS]
    + list((PACKAGE / "harness").rglob("*.py"))
    + list((PACKAGE / "data").rglob("*.py"))
)
FAMILIES = sorted((PACKAGE / "families").rglob("*.py"))
# `trainer.datamodule`, `self.trainer.datamodule` ...; not the module path `adlab.data.datamodule`
READS_DATAMODULE = re.compile(r"(?<!adlab\.data)\.datamodule\b")


def _imported_modules(path: Path) -> list[str]:
    """Every module a file imports (`import a.b`, `from a.b import c` -> `a.b` and `a.b.c`), wherever the
    import statement stands."""
    modules = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            modules += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules += [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
    return modules


def test_the_harness_files_are_found():
    assert len(HARNESS) > len(ENTRY_POINTS) and all(path.is_file() for path in HARNESS)
    assert FAMILIES


@pytest.mark.parametrize("path", HARNESS, ids=lambda path: str(path.relative_to(PACKAGE)))
def test_the_harness_and_data_import_no_family(path):
    family_imports = [
        m for m in _imported_modules(path) if m == "adlab.families" or m.startswith("adlab.families.")
    ]
    assert not family_imports, f"{path.relative_to(PACKAGE)} imports {family_imports}"


@pytest.mark.parametrize("path", FAMILIES, ids=lambda path: str(path.relative_to(PACKAGE)))
def test_families_do_not_read_the_trainers_data_module(path):
    # what a module fits on the train split is handed to it (`fit_to_train`); it never reaches for the data
    readers = [
        f"line {number}: {line.strip()}"
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if READS_DATAMODULE.search(line)
    ]
    assert not readers, f"{path.relative_to(PACKAGE)} reads `.datamodule`: {readers}"
