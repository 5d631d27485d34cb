"""Customer churn tables of the R package modeldata (MIT, Max Kuhn / RStudio), from Debian's r-cran-modeldata.

Both live in the package's lazy-load database (`data/Rdata.rdb` + `Rdata.rdx`), read with
`adlab.data.rlazyload` (parsed by `rdata`; nothing is unpickled, R is never run):

- `telco_churn` (modeldata's `wa_churn`): IBM's Telco customer churn sample, 7043 customers x 20 columns,
  `churn` Yes/No (1869 churners); `total_charges` is missing for the 11 customers of tenure 0.
- `mlc_churn`: a telecom churn table (the "MLC++" churn data), 5000 customers x 20 columns, `churn` yes/no
  (707 churners).

Neither table has a customer identifier; `customer_id` (1..N, the R row order) is added. The prepared CSV
is pinned by its sha256 like the archive files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from adlab.data.catalog import Archive, ArchiveFile, Dataset, register
from adlab.data.rlazyload import read_lazyload_object
from adlab.errors import AdlabError

MEMBER = "usr/lib/R/site-library/modeldata/data/Rdata.{}"
ARCHIVE = Archive(
    "apt",
    "r-cran-modeldata",
    "1.1.0-1",
    "r-cran-modeldata_1.1.0-1_all.deb",
    (
        ArchiveFile(
            MEMBER.format("rdb"),
            "2ecef5e8da0f782ae4e3f65d928fe769702accffd8981cc358a3097f6736f58f",
            "Rdata.rdb",
        ),
        ArchiveFile(
            MEMBER.format("rdx"),
            "c23e1be60f2730fb526ce158a307e154c91a953169fcb8e73350c4e032e14538",
            "Rdata.rdx",
        ),
    ),
    sha256="66c2e08bb4bf695d972b1e72ea44d5af9ada3c42841793d3871017f7b896bf95",
)


def churn_table(frame: pd.DataFrame, rows: int, churners: int, what: str) -> pd.DataFrame:
    """modeldata's table as written to CSV: `customer_id` first, integer-valued columns (counts, 0/1 flags) as int64, categories as
    text, `churn` kept as its Yes/No labels; checked against the published row and churner counts."""
    if len(frame) != rows or "churn" not in frame.columns:
        raise AdlabError(f"{what}: expected {rows} rows with a 'churn' column, got {frame.shape}")
    found = int(frame["churn"].astype(str).str.lower().eq("yes").sum())
    if found != churners:
        raise AdlabError(f"{what}: {found} churners; expected {churners}")
    frame = frame.reset_index(drop=True)  # R's row names 1..N would misalign the columns
    table = pd.DataFrame({"customer_id": np.arange(1, rows + 1)})
    for column in frame.columns:
        values = frame[column]
        if isinstance(values.dtype, pd.CategoricalDtype):
            table[column] = values.astype(str)
        elif not (pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values)):
            raise AdlabError(
                f"{what}: column {column!r} holds {values.dtype} values, neither an R factor nor numbers"
            )
        elif not values.isna().any() and np.all(values.to_numpy(dtype=np.float64) % 1 == 0):
            table[column] = values.astype(np.int64)  # counts and 0/1 flags
        else:
            table[column] = values.astype(np.float64)
    return table


def _preparer(name: str, r_name: str, rows: int, churners: int, sha256: str):
    """prepare(folder, staging) writing `<name>.csv` from modeldata's `r_name`, checked against `sha256`."""

    def prepare(folder: Path, staging: Path) -> None:
        from adlab.data.fetch import sha256_of  # fetch imports the catalog, which imports this module

        frame = read_lazyload_object(folder / "Rdata.rdb", folder / "Rdata.rdx", r_name)
        output = staging / f"{name}.csv"
        churn_table(frame, rows, churners, f"{folder}/Rdata.rdb:{r_name}").to_csv(output, index=False)
        if sha256_of(output) != sha256:
            raise AdlabError(
                f"{output.name}: sha256 {sha256_of(output)} differs from the expected {sha256}; "
                "the table read out of Rdata.rdb changed"
            )

    return prepare


for _name, _r_name, _rows, _churners, _sha256, _what in (
    (
        "telco_churn",
        "wa_churn",
        7043,
        1869,
        "556df4f804d13a693cd626ca697cf97652f394de418128271f4d14f71562c4a8",
        "IBM Telco customer churn (modeldata wa_churn): 7043 customers, 1869 churners, 19 features",
    ),
    (
        "mlc_churn",
        "mlc_churn",
        5000,
        707,
        "72b99909c0900dfef0ce3cacd7e7b5fbcdbbf8b84f359b4b537c5fc78870e26d",
        "MLC telecom churn (modeldata mlc_churn): 5000 customers, 707 churners, 19 features",
    ),
):
    register(
        Dataset(
            name=_name,
            description=_what,
            archives=(ARCHIVE,),
            prepare=_preparer(_name, _r_name, _rows, _churners, _sha256),
            outputs=(f"{_name}.csv",),
        )
    )
