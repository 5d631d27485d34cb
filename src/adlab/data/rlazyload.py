"""Read one object out of an R package's lazy-load database (`data/Rdata.rdb` + its `Rdata.rdx` index).

R installs a package's datasets as a lazy-load database: the `.rdx` index is a compressed R serialization
of a list `variables` (object name -> `[offset, length]` in the `.rdb`), `references` and `compressed`
(TRUE/1: zlib, 2: bzip2, 3: xz). Each `.rdb` entry is a 4-byte big-endian length of the serialization,
then, for `compressed` 2 or 3, one type byte (`Z` xz, `2` bzip2, `1` zlib, `0` stored), then the
compressed bytes (xz as a raw LZMA2 stream). The serialization is parsed with `rdata`; nothing is run and
nothing is unpickled.
"""

from __future__ import annotations

import bz2
import lzma
import struct
import warnings
import zlib
from pathlib import Path
from typing import Any

import rdata

from adlab.errors import AdlabError, excerpt

# R's xz settings for lazy-load entries (serialize.c): a raw LZMA2 stream, preset 9e
XZ_FILTERS = [{"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME}]
HEADER_BYTES = 4
# tibbles (class tbl_df, tbl, data.frame) are data frames
TIBBLES = {
    **rdata.conversion.DEFAULT_CLASS_MAP,
    "tbl_df": rdata.conversion.dataframe_constructor,
    "tbl": rdata.conversion.dataframe_constructor,
}


def _parse(serialized: bytes, what: str) -> Any:
    """An R serialization (possibly gzip/bzip2/xz-compressed as a whole file) converted to Python objects."""
    try:
        with warnings.catch_warnings():
            # a bare serialization has no file magic; rdata says it assumed RDS, which is what it is
            warnings.filterwarnings("ignore", message="Unknown file type")
            return rdata.conversion.convert(rdata.parser.parse_data(serialized), TIBBLES)
    except Exception as error:  # rdata fails in many ways on damaged bytes (ValueError, KeyError ...)
        raise AdlabError(f"{what}: not a readable R serialization ({excerpt(error)})") from None


def read_index(rdx: Path) -> tuple[dict[str, tuple[int, int]], int]:
    """The `.rdx` index: object name -> (offset, length) in the `.rdb`, and its compression code (1, 2, 3)."""
    index = _parse(Path(rdx).read_bytes(), str(rdx))
    if not isinstance(index, dict) or "variables" not in index or "compressed" not in index:
        raise AdlabError(
            f"{rdx}: expected an R lazy-load index (a list of variables, references, compressed)"
        )
    try:
        variables = {str(name): (int(place[0]), int(place[1])) for name, place in index["variables"].items()}
        compressed = index["compressed"]
        code = int(compressed[0] if hasattr(compressed, "__len__") else compressed)
    except (AttributeError, IndexError, KeyError, TypeError, ValueError) as error:
        raise AdlabError(
            f"{rdx}: expected an R lazy-load index (variables -> offset and length, a compression code), "
            f"got {excerpt(error)}"
        ) from None
    return variables, code


def _decompress(entry: bytes, code: int, what: str) -> bytes:
    """One `.rdb` entry's serialization: the length header checked, the body decompressed."""
    if len(entry) < HEADER_BYTES + 1:
        raise AdlabError(f"{what}: a {len(entry)}-byte entry; expected a length header and a body")
    (length,) = struct.unpack(">I", entry[:HEADER_BYTES])
    body = entry[HEADER_BYTES:]
    kind = "1"
    if code in (2, 3):
        kind, body = chr(body[0]), body[1:]
    decoders = {
        "Z": lambda data: lzma.decompress(data, format=lzma.FORMAT_RAW, filters=XZ_FILTERS),
        "2": bz2.decompress,
        "1": zlib.decompress,
        "0": bytes,
    }
    if kind not in decoders:
        raise AdlabError(f"{what}: unknown compression type {kind!r}; expected one of {sorted(decoders)}")
    try:
        serialized = decoders[kind](body)
    except (lzma.LZMAError, OSError, ValueError, zlib.error) as error:
        raise AdlabError(f"{what}: could not decompress the entry ({excerpt(error)})") from None
    if len(serialized) != length:
        raise AdlabError(f"{what}: {len(serialized)} bytes decompressed; the entry's header says {length}")
    return serialized


def read_lazyload_object(rdb: Path, rdx: Path, name: str) -> Any:
    """The object `name` of a lazy-load database, converted by `rdata` (a data.frame -> `pandas.DataFrame`).

    Raises `AdlabError` when the index lacks `name` or the entry is damaged.
    """
    variables, code = read_index(rdx)
    if name not in variables:
        raise AdlabError(f"{rdx}: no object '{name}'; it holds {sorted(variables)[:20]}")
    offset, length = variables[name]
    with open(rdb, "rb") as stream:
        stream.seek(offset)
        entry = stream.read(length)
    what = f"{rdb}:{name}"
    if len(entry) != length:
        raise AdlabError(f"{what}: the file ends {length - len(entry)} bytes short of the entry")
    return _parse(_decompress(entry, code, what), what)
