"""R lazy-load databases (Rdata.rdb + .rdx) read without R, and modeldata's churn tables prepared from them."""

from __future__ import annotations

import gzip
import hashlib
import lzma
import struct
import zipfile
import zlib
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from rdata.conversion import convert_python_to_r_data
from rdata.unparser import unparse_data

from adlab.data.catalog import CATALOG, Archive, ArchiveFile, Dataset
from adlab.data.datasets.modeldata import churn_table
from adlab.data.fetch import fetch, sha256_of
from adlab.data.rlazyload import XZ_FILTERS, read_lazyload_object
from adlab.errors import AdlabError


def sha256_of_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _serialize(value) -> bytes:
    """An R serialization (XDR, uncompressed) of a Python value, as R writes each lazy-load entry."""
    return unparse_data(convert_python_to_r_data(value))


def _entry(serialized: bytes, kind: str | None) -> bytes:
    """One .rdb entry: big-endian length, then (for compressed=2/3 databases) a type byte, then the body."""
    bodies = {
        "Z": lambda data: lzma.compress(data, format=lzma.FORMAT_RAW, filters=XZ_FILTERS),
        "1": zlib.compress,
        "0": bytes,
        None: zlib.compress,
    }
    head = struct.pack(">I", len(serialized)) + (kind.encode() if kind else b"")
    return head + bodies[kind](serialized)


def _database(tmp_path, objects: dict[str, tuple[object, str | None]], compressed: int):
    """Write Rdata.rdb and a gzip-compressed Rdata.rdx indexing `objects` (name -> (value, type byte))."""
    blob, variables = b"", {}
    for name, (value, kind) in objects.items():
        entry = _entry(_serialize(value), kind)
        variables[name] = np.array([len(blob), len(entry)], dtype=np.int32)
        blob += entry
    index = {"variables": variables, "references": {}, "compressed": np.array([compressed], dtype=np.int32)}
    (tmp_path / "Rdata.rdb").write_bytes(blob)
    (tmp_path / "Rdata.rdx").write_bytes(gzip.compress(_serialize(index)))
    return tmp_path / "Rdata.rdb", tmp_path / "Rdata.rdx"


TELCO = pd.DataFrame(
    {
        "churn": pd.Categorical(["No", "Yes", "No", "Yes"]),
        "female": [1.0, 0.0, 0.0, 1.0],
        "tenure": [1.0, 34.0, 0.0, 12.0],
        "contract": pd.Categorical(["Month-to-month", "One year", "Two year", "Month-to-month"]),
        "monthly_charges": [29.85, 56.95, 20.2, 70.7],
        "total_charges": [29.85, 1889.5, np.nan, 848.4],
    }
)


def test_xz_zlib_and_stored_entries_read_back(tmp_path):
    counts = pd.DataFrame({"calls": [1.0, 2.0, 3.0]})
    rdb, rdx = _database(tmp_path, {"telco": (TELCO, "Z"), "counts": (counts, "1"), "raw": (counts, "0")}, 3)
    frame = read_lazyload_object(rdb, rdx, "telco")
    assert frame["churn"].astype(str).tolist() == ["No", "Yes", "No", "Yes"]
    np.testing.assert_allclose(frame["total_charges"].to_numpy(), TELCO["total_charges"].to_numpy())
    for name in ("counts", "raw"):
        assert read_lazyload_object(rdb, rdx, name)["calls"].tolist() == [1.0, 2.0, 3.0]


def test_zlib_database_without_type_bytes(tmp_path):
    rdb, rdx = _database(tmp_path, {"telco": (TELCO, None)}, 1)
    assert read_lazyload_object(rdb, rdx, "telco")["contract"].astype(str).tolist()[1] == "One year"


def test_damaged_databases_are_one_line_errors(tmp_path):
    rdb, rdx = _database(tmp_path, {"telco": (TELCO, "Z")}, 3)
    with pytest.raises(AdlabError, match=r"no object 'wa_churn'; it holds \['telco'\]"):
        read_lazyload_object(rdb, rdx, "wa_churn")
    blob = bytearray(rdb.read_bytes())
    blob[3] ^= 1  # the length header no longer matches the body
    rdb.write_bytes(bytes(blob))
    with pytest.raises(AdlabError, match="the entry's header says"):
        read_lazyload_object(rdb, rdx, "telco")
    rdb.write_bytes(bytes(blob[:-10]))
    with pytest.raises(AdlabError, match="10 bytes short"):
        read_lazyload_object(rdb, rdx, "telco")
    rdb.write_bytes(bytes(blob[:4]) + b"Q" + bytes(blob[5:]))
    with pytest.raises(AdlabError, match="unknown compression type 'Q'"):
        read_lazyload_object(rdb, rdx, "telco")
    rdx.write_bytes(b"not an index")
    with pytest.raises(AdlabError, match="not a readable R serialization"):
        read_lazyload_object(rdb, rdx, "telco")
    for variables in (["telco"], {"telco": [1]}):  # a list where names go; an offset without a length
        rdx.write_bytes(
            gzip.compress(_serialize({"variables": variables, "references": {}, "compressed": 3}))
        )
        with pytest.raises(AdlabError, match="expected an R lazy-load index"):
            read_lazyload_object(rdb, rdx, "telco")


def test_churn_table_keeps_rows_aligned_and_checks_counts():
    frame = TELCO.set_axis([1, 2, 3, 4])  # R's row names start at 1
    table = churn_table(frame, rows=4, churners=2, what="wa_churn")
    assert table.columns[0] == "customer_id" and table["customer_id"].tolist() == [1, 2, 3, 4]
    assert table["churn"].tolist() == ["No", "Yes", "No", "Yes"]
    assert table["tenure"].dtype == np.int64 and table["female"].tolist() == [1, 0, 0, 1]
    assert table["monthly_charges"].dtype == np.float64 and np.isnan(table["total_charges"].iloc[2])
    with pytest.raises(AdlabError, match="1 churners; expected 2"):
        churn_table(frame.assign(churn=pd.Categorical(["No", "Yes", "No", "No"])), 4, 2, "wa_churn")
    with pytest.raises(AdlabError, match="expected 5 rows"):
        churn_table(frame, 5, 2, "wa_churn")
    text = frame.assign(contract=["Month-to-month", "One year", "Two year", "One year"])  # not a factor
    with pytest.raises(AdlabError, match="column 'contract' holds .* neither an R factor"):
        churn_table(text, 4, 2, "wa_churn")


def test_prepare_refuses_a_table_other_than_the_pinned_one(tmp_path):
    """A database that is not Debian's: the published counts, then the CSV's sha256 pin, refuse it."""
    folder, staging = tmp_path / "data", tmp_path / "staging"
    folder.mkdir(), staging.mkdir()
    rows, churners = 7043, 1869
    generator = np.random.default_rng(0)
    telco = pd.DataFrame(
        {
            "churn": pd.Categorical(np.where(np.arange(rows) < churners, "Yes", "No")),
            "tenure": generator.integers(0, 72, rows).astype(np.float64),
            "monthly_charges": generator.uniform(18, 119, rows).round(2),
        }
    )
    _database(folder, {"wa_churn": (telco.iloc[:100], "Z")}, 3)
    with pytest.raises(AdlabError, match="expected 7043 rows"):
        CATALOG["telco_churn"].prepare(folder, staging)
    _database(folder, {"wa_churn": (telco, "Z")}, 3)
    with pytest.raises(AdlabError, match=r"telco_churn\.csv: sha256 [0-9a-f]{64} differs from the expected"):
        CATALOG["telco_churn"].prepare(folder, staging)
    assert CATALOG["telco_churn"].archives[0].sha256 is not None


def test_an_archive_with_another_sha256_is_refused_before_any_file_is_read(tmp_path, monkeypatch):
    archives = tmp_path / "archives"
    archives.mkdir()
    with zipfile.ZipFile(archives / "fakepkg-1.0-py3-none-any.whl", "w") as wheel:
        wheel.writestr("fakepkg/table.csv", "a,b\n1,2\n")
    member = ArchiveFile("fakepkg/table.csv", sha256_of_bytes(b"a,b\n1,2\n"), "table.csv")
    pinned = Archive("pip", "fakepkg", "1.0", "fakepkg-1.0-*.whl", (member,), sha256="0" * 64)
    monkeypatch.setitem(CATALOG, "fake", Dataset("fake", "test dataset", (pinned,)))
    with pytest.raises(AdlabError, match=r"fakepkg-1\.0-py3-none-any\.whl: sha256 [0-9a-f]{64} differs"):
        fetch("fake", tmp_path / "data", archive_dir=archives)
    assert not (tmp_path / "data" / "fake" / "table.csv").exists()
    actual = sha256_of(archives / "fakepkg-1.0-py3-none-any.whl")
    monkeypatch.setitem(CATALOG, "fake", Dataset("fake", "test dataset", (replace(pinned, sha256=actual),)))
    assert (fetch("fake", tmp_path / "data", archive_dir=archives) / "table.csv").read_text() == "a,b\n1,2\n"
