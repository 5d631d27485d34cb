"""Small file helpers: atomic writes so that a failed job leaves nothing half-written."""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

from adlab.errors import AdlabError


def _umask() -> int:
    """The process umask, read without changing it where the system says it (Linux), else set and restored."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` through a temporary file and a rename.

    The file gets the mode a plain `open` would give it (0o666 less the umask: 0644 under the usual 022),
    not the 0600 of the temporary file, so that exported packages and metrics are readable by the group.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as error:
        raise AdlabError(f"{path}: cannot write in {path.parent} ({error.strerror or error})") from None
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except OSError as error:  # a full disk, a quota: the previous file stays as it was
        Path(tmp).unlink(missing_ok=True)
        raise AdlabError(
            f"{path}: could not write ({error.strerror or error}); the previous file, if any, is intact"
        ) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write `text` (UTF-8) to `path` atomically, as `atomic_write_bytes`."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_metrics(path: str | os.PathLike, metrics: dict[str, Any]) -> Path:
    """Write a flat metrics mapping as sorted JSON (tensors become numbers; NaN becomes null)."""
    flat = {key: _plain(value) for key, value in sorted(metrics.items())}
    return atomic_write_text(path, json.dumps(flat, indent=2) + "\n")
