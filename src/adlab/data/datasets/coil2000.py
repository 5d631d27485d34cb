"""CoIL 2000 (insurance customers who buy a caravan policy), from r-cran-kernlab and ISLP."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from adlab.data.catalog import Archive, ArchiveFile, Dataset, register
from adlab.errors import AdlabError

COIL_NOMINAL = ("MOSTYPE", "MOSHOOFD")
COIL_TRAIN_ROWS = 5822
# the 85 features in the official UCI order and naming (the data dictionary's; ticdata.rda's AAUT is PVRAAUT)
COLUMNS = (
    "MOSTYPE",
    "MAANTHUI",
    "MGEMOMV",
    "MGEMLEEF",
    "MOSHOOFD",
    "MGODRK",
    "MGODPR",
    "MGODOV",
    "MGODGE",
    "MRELGE",
    "MRELSA",
    "MRELOV",
    "MFALLEEN",
    "MFGEKIND",
    "MFWEKIND",
    "MOPLHOOG",
    "MOPLMIDD",
    "MOPLLAAG",
    "MBERHOOG",
    "MBERZELF",
    "MBERBOER",
    "MBERMIDD",
    "MBERARBG",
    "MBERARBO",
    "MSKA",
    "MSKB1",
    "MSKB2",
    "MSKC",
    "MSKD",
    "MHHUUR",
    "MHKOOP",
    "MAUT1",
    "MAUT2",
    "MAUT0",
    "MZFONDS",
    "MZPART",
    "MINKM30",
    "MINK3045",
    "MINK4575",
    "MINK7512",
    "MINK123M",
    "MINKGEM",
    "MKOOPKLA",
    "PWAPART",
    "PWABEDR",
    "PWALAND",
    "PPERSAUT",
    "PBESAUT",
    "PMOTSCO",
    "PVRAAUT",
    "PAANHANG",
    "PTRACTOR",
    "PWERKT",
    "PBROM",
    "PLEVEN",
    "PPERSONG",
    "PGEZONG",
    "PWAOREG",
    "PBRAND",
    "PZEILPL",
    "PPLEZIER",
    "PFIETS",
    "PINBOED",
    "PBYSTAND",
    "AWAPART",
    "AWABEDR",
    "AWALAND",
    "APERSAUT",
    "ABESAUT",
    "AMOTSCO",
    "AVRAAUT",
    "AAANHANG",
    "ATRACTOR",
    "AWERKT",
    "ABROM",
    "ALEVEN",
    "APERSONG",
    "AGEZONG",
    "AWAOREG",
    "ABRAND",
    "AZEILPL",
    "APLEZIER",
    "AFIETS",
    "AINBOED",
    "ABYSTAND",
)


def _coil_codes(labels: pd.DataFrame, caravan: pd.DataFrame) -> pd.DataFrame:
    """Numeric codes of CoIL's label-coded columns, the official UCI coding.

    ticdata.rda stores 62 ordinal columns as R factors whose levels follow the data dictionary's order;
    ISLP's Caravan.csv holds the codes of the 5822 training rows. For each column the code is the level
    position plus a constant, which Caravan.csv pins down (and every training row is checked against);
    levels seen only in the test rows get their codes the same way. Customer subtype and main type are
    nominal and keep their labels (subtype codes 5 and 32 share the label "Mixed seniors").
    """
    columns = {}
    for position, (label_name, code_name) in enumerate(
        zip(labels.columns[:-1], caravan.columns[:-1], strict=True)
    ):
        values = labels[label_name]
        if code_name in COIL_NOMINAL:
            columns[code_name] = values.astype(str)
        elif isinstance(values.dtype, pd.CategoricalDtype):
            level = values.cat.codes.to_numpy()
            offsets = np.unique(caravan[code_name].to_numpy() - level[:COIL_TRAIN_ROWS])
            if len(offsets) != 1:
                raise AdlabError(f"CoIL column {code_name} (#{position}): labels do not map to one code each")
            columns[code_name] = (level + offsets[0]).astype(np.float64)
        else:
            columns[code_name] = values.to_numpy(dtype=np.float64)
    return pd.DataFrame(columns)


UCI = "https://archive.ics.uci.edu/ml/machine-learning-databases/tic-mld/"
UCI_FILES = ("ticdata2000.txt", "ticeval2000.txt", "tictgts2000.txt")
TEST_ROWS, TRAIN_BUYERS, TEST_BUYERS = 4000, 348, 238


def _table_from_uci(folder: Path) -> pd.DataFrame:
    """The official UCI files (numeric codes throughout). Nominal columns keep their codes as text."""
    names = [*COLUMNS, "CARAVAN"]
    train = pd.read_csv(folder / "ticdata2000.txt", sep="\t", header=None, names=names)
    test = pd.read_csv(folder / "ticeval2000.txt", sep="\t", header=None, names=names[:-1])
    test["CARAVAN"] = pd.read_csv(folder / "tictgts2000.txt", header=None)[0].to_numpy()
    table = pd.concat([train, test], ignore_index=True)
    for column in names[:-1]:
        table[column] = (
            table[column].astype(str) if column in COIL_NOMINAL else table[column].astype(np.float64)
        )
    return table


def _check_counts(table: pd.DataFrame, folder: Path) -> None:
    """The published sizes: 5822 training customers (348 buyers) and 4000 test customers (238 buyers)."""
    train, test = table.iloc[:COIL_TRAIN_ROWS], table.iloc[COIL_TRAIN_ROWS:]
    found = (len(train), int(train["CARAVAN"].sum()), len(test), int(test["CARAVAN"].sum()))
    if found != (COIL_TRAIN_ROWS, TRAIN_BUYERS, TEST_ROWS, TEST_BUYERS):
        raise AdlabError(
            f"{folder}: CoIL files give train/buyers/test/buyers {found}; expected 5822/348/4000/238"
        )


def prepare_coil2000(folder: Path, staging: Path) -> None:
    """Write `coil2000.parquet`: customer_id, split (train/test), 85 features with official names, CARAVAN 0/1.

    From the registry files (ticdata.rda + Caravan.csv) when present, else from the official UCI files
    (`adlab-data fetch coil2000 --source official`); both are checked against the published counts.
    """
    if all((folder / name).is_file() for name in UCI_FILES) and not (folder / "ticdata.rda").is_file():
        table = _table_from_uci(folder)
        _check_counts(table, folder)
        table.insert(0, "customer_id", np.arange(1, len(table) + 1))
        table.insert(1, "split", np.where(np.arange(len(table)) < COIL_TRAIN_ROWS, "train", "test"))
        table.to_parquet(staging / "coil2000.parquet", index=False)
        return
    import rdata

    labels = rdata.read_rda(str(folder / "ticdata.rda"))["ticdata"]
    caravan = pd.read_csv(folder / "Caravan.csv")
    if len(labels) != 9822 or len(caravan) != COIL_TRAIN_ROWS:
        raise AdlabError(
            f"{folder}: expected 9822 CoIL rows and 5822 Caravan rows, got {len(labels)}/{len(caravan)}"
        )
    table = _coil_codes(labels, caravan)
    table.insert(0, "customer_id", np.arange(1, len(table) + 1))
    table.insert(1, "split", np.where(np.arange(len(table)) < COIL_TRAIN_ROWS, "train", "test"))
    table["CARAVAN"] = (labels["CARAVAN"].astype(str) == "insurance").to_numpy(dtype=np.int64)
    check = caravan["Purchase"].eq("Yes").to_numpy(dtype=np.int64)
    if not np.array_equal(check, table["CARAVAN"].to_numpy()[:COIL_TRAIN_ROWS]):
        raise AdlabError(f"{folder}: ticdata.rda and Caravan.csv disagree on the training labels")
    _check_counts(table.iloc[:, 2:], folder)
    table.to_parquet(staging / "coil2000.parquet", index=False)


register(
    Dataset(
        name="coil2000",
        description="CoIL 2000 insurance customers: 5822 train (348 buyers) + official 4000 test (238 buyers)",
        archives=(
            Archive(
                "apt",
                "r-cran-kernlab",
                None,
                "r-cran-kernlab_*.deb",
                (
                    ArchiveFile(
                        "usr/lib/R/site-library/kernlab/data/ticdata.rda",
                        "7e548579e9f6db507b1146e635b22472d196b83250c3d8c88e3815626015d546",
                        "ticdata.rda",
                    ),
                ),
            ),
            Archive(
                "pip",
                "islp",
                "0.6.0",
                "islp-0.6.0-*.whl",
                (
                    ArchiveFile(
                        "ISLP/data/Caravan.csv",
                        "e89d49b6fb8fe02d76bb5bb80d8e0dab473bf9f6a72515e30c259f6d7da42269",
                        "Caravan.csv",
                    ),
                ),
            ),
        ),
        prepare=prepare_coil2000,
        outputs=("coil2000.parquet",),
        official={name: UCI + name for name in UCI_FILES},
    )
)
