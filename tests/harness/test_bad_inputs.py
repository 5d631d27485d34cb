"""Every user mistake gives one clear line naming the input, and exit status 2 from the CLI."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from adlab.cli import check_overrides
from adlab.data.catalog import Archive, ArchiveFile, Dataset
from adlab.data.fetch import CATALOG, fetch
from adlab.data.sources.tabular import TabularSource
from adlab.errors import AdlabError
from adlab.harness.checkpoints import load_checkpoint
from adlab.train import train
from tests.helpers import run_module


def _table(path: Path, frame: pd.DataFrame) -> Path:
    frame.to_csv(path, index=False)
    return path


def _frame(rows: int = 60, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "age": rng.integers(18, 80, rows).astype(float),
            "visits": rng.poisson(3, rows).astype(float),
            "region": rng.choice(["north", "south", "east"], rows),
            "bought": rng.integers(0, 2, rows),
        }
    )


def _load(path: Path, **options) -> None:
    TabularSource(str(path), target=options.pop("target", "bought"), **options).load()


def test_missing_file(tmp_path):
    with pytest.raises(AdlabError, match=r"nope\.csv: file not found"):
        _load(tmp_path / "nope.csv")


def test_unparseable_file(tmp_path):
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"this is not parquet at all")
    with pytest.raises(AdlabError, match=r"broken\.parquet: could not parse as parquet"):
        _load(path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("")
    with pytest.raises(AdlabError, match=r"empty\.csv: the file is empty"):
        _load(path)
    header_only = tmp_path / "header.csv"
    header_only.write_text("age,bought\n")
    with pytest.raises(AdlabError, match=r"header\.csv: the file has a header but no rows"):
        _load(header_only)


def test_target_column_missing(tmp_path):
    path = _table(tmp_path / "t.csv", _frame())
    with pytest.raises(AdlabError, match=r"target column 'converted' not found"):
        _load(path, target="converted")


def test_target_not_binary_or_one_class(tmp_path):
    frame = _frame()
    frame["bought"] = np.arange(len(frame)) % 3
    with pytest.raises(AdlabError, match=r"target column 'bought' has 3 values .*expected a binary target"):
        _load(_table(tmp_path / "three.csv", frame))
    frame["bought"] = 1
    with pytest.raises(AdlabError, match=r"target column 'bought' has only one class"):
        _load(_table(tmp_path / "one.csv", frame))


def test_text_in_numeric_column(tmp_path):
    frame = _frame()
    frame["age"] = frame["age"].astype(object)
    frame.loc[5, "age"] = "forty"
    with pytest.raises(AdlabError, match=r"numeric column 'age' has 1 non-numeric values \(e\.g\. 'forty'\)"):
        _load(_table(tmp_path / "text.csv", frame), numeric=["age", "visits"], categorical=["region"])


def test_nan_and_inf_in_numeric_features(tmp_path):
    frame = _frame()
    frame.loc[[1, 2], "visits"] = np.nan
    frame.loc[3, "visits"] = np.inf
    path = tmp_path / "nan.parquet"
    frame.to_parquet(path)
    with pytest.raises(AdlabError, match=r"numeric column 'visits' has 3 NaN/inf values"):
        _load(path)
    # with imputation the values are filled from the training split's median
    source = TabularSource(str(path), target="bought", impute="median")
    raw = source.load()
    splits = {"train": np.arange(0, 40), "val": np.arange(40, 50), "test": np.arange(50, 60)}
    built = source.build(raw, splits)
    assert np.isfinite(built.tensors["train"]["numeric"].numpy()).all()


def test_unseen_category_goes_to_unknown_bucket(tmp_path):
    frame = _frame()
    frame.loc[55:, "region"] = "atlantis"  # only in the test rows
    source = TabularSource(str(_table(tmp_path / "u.csv", frame)), target="bought")
    raw = source.load()
    splits = {"train": np.arange(0, 40), "val": np.arange(40, 50), "test": np.arange(50, 60)}
    built = source.build(raw, splits)
    region = built.meta.categorical.index("region")
    assert (built.tensors["test"]["categorical"][5:, region] == 0).all()
    assert (built.tensors["train"]["categorical"][:, region] > 0).all()


def test_split_fractions_checked(train_config, tmp_path):
    data = tmp_path / "t.csv"
    _table(data, _frame(200))
    base = ["data=tabular", f"data.source.path={data}", "data.source.target=bought"]
    with pytest.raises(
        AdlabError, match=r"data\.split=\[0\.6, 0\.3, 0\.3\]: fractions sum to 1\.2, expected 1"
    ):
        train(train_config([*base, "data.split=[0.6,0.3,0.3]"]))
    with pytest.raises(AdlabError, match=r"every fraction must be > 0"):
        train(train_config([*base, "data.split=[0.8,0.2,0.0]"]))
    tiny = tmp_path / "tiny.csv"
    _table(tiny, _frame(4))
    with pytest.raises(AdlabError, match=r"leaves the .*split empty"):
        train(
            train_config(
                [
                    "data=tabular",
                    f"data.source.path={tiny}",
                    "data.source.target=bought",
                    "data.split=[0.98,0.01,0.01]",
                ]
            )
        )
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_unknown_config_key_is_one_line_and_status_2(capsys):
    with pytest.raises(SystemExit) as stop:
        check_overrides("train", ["model.hiden_sizes=[8]"])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "hiden_sizes" in err and err.startswith("adlab: error:")


def test_checkpoint_missing_or_not_a_checkpoint(tmp_path):
    with pytest.raises(AdlabError, match=r"missing\.ckpt: file not found"):
        load_checkpoint(tmp_path / "missing.ckpt")
    bogus = tmp_path / "bogus.ckpt"
    bogus.write_text("hello")
    with pytest.raises(AdlabError, match=r"bogus\.ckpt: not a PyTorch checkpoint"):
        load_checkpoint(bogus)
    import torch

    foreign = tmp_path / "foreign.ckpt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    with pytest.raises(AdlabError, match=r"foreign\.ckpt: not a Lightning checkpoint"):
        load_checkpoint(foreign)


def test_fetch_checksum_mismatch_writes_nothing(tmp_path, monkeypatch):
    archives = tmp_path / "archives"
    archives.mkdir()
    with zipfile.ZipFile(archives / "fakepkg-1.0-py3-none-any.whl", "w") as wheel:
        wheel.writestr("fakepkg/data/table.csv", "a,b\n1,2\n")
    wrong = Dataset(
        name="fake",
        description="test dataset",
        archives=(
            Archive(
                "pip",
                "fakepkg",
                "1.0",
                "fakepkg-1.0-*.whl",
                (ArchiveFile("fakepkg/data/table.csv", "0" * 64, "table.csv"),),
            ),
        ),
    )
    monkeypatch.setitem(CATALOG, "fake", wrong)
    with pytest.raises(AdlabError, match=r"table\.csv: sha256 [0-9a-f]{64} differs from the expected 0{64}"):
        fetch("fake", tmp_path / "data", archive_dir=archives)
    assert not (tmp_path / "data" / "fake" / "table.csv").exists()
    with pytest.raises(AdlabError, match=r"unknown dataset 'nope'"):
        fetch("nope", tmp_path / "data")


def test_cli_prints_one_line_and_exits_2(tmp_path):
    """The real console script: a missing data file is one line on stderr, status 2, no metrics.json."""
    run_dir = tmp_path / "run"
    result = run_module(
        "adlab.train",
        "data=tabular",
        f"data.source.path={tmp_path / 'absent.csv'}",
        "data.source.target=bought",
        f"hydra.run.dir={run_dir}",
        "extras.print_config=false",
        timeout=300,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[-1] == f"adlab: error: data.source.path={tmp_path / 'absent.csv'}: file not found"
    assert "Traceback" not in result.stderr
    assert not (run_dir / "metrics.json").exists()
    assert not (run_dir / "checkpoints").exists()
