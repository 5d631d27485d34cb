"""scripts/bench_peers.py: propensity_csv's rows checked against the peers', plain or cross-fitted, and a
cross-fitted run's val figures read from its out-of-fold scores of the peers' val rows."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from tests.helpers import load_script


@pytest.fixture(scope="module")
def bench():
    return load_script("bench_peers")


# customers 0..7: rows listed out of order, as a stratified split lists them
LABELS = np.array([0, 0, 1, 0, 1, 1, 1, 0])
ROWS = {"train": np.array([5, 0, 3, 7]), "val": np.array([4, 1, 6]), "test": np.array([2])}
POOL = np.array([0, 1, 3, 4, 5, 6, 7])


def _split(bench):
    frames = {stage: pd.DataFrame({"x": rows}) for stage, rows in ROWS.items()}
    return bench.Split(frames, {stage: LABELS[rows] for stage, rows in ROWS.items()}, ROWS, [], ["x"])


def test_pooled_rows_tells_plain_from_cross_fitted_and_refuses_other_rows(bench, tmp_path):
    split = _split(bench)
    assert bench.pooled_rows(split, ROWS, tmp_path) is None
    pooled = bench.pooled_rows(split, {"train": POOL, "val": POOL, "test": ROWS["test"]}, tmp_path)
    assert pooled.tolist() == POOL.tolist()
    for saved in (
        {**ROWS, "test": np.array([3])},
        {**ROWS, "val": np.array([4, 1])},
        {"train": POOL, "val": POOL[:-1], "test": ROWS["test"]},
    ):
        with pytest.raises(RuntimeError, match="split differs from the peers' split"):
            bench.pooled_rows(split, saved, tmp_path)


def test_out_of_fold_figures_score_the_val_rows_in_their_order(bench, tmp_path):
    split, checkpoint = _split(bench), tmp_path / "best.ckpt"
    # each pool row's logit is its customer number: val customers 4 and 6 buy, 1 does not -> AUROC 1
    # (read in sorted order, 1 and 6 would be the buyers -> 0.5)
    state = {
        "out_of_fold_logits": torch.tensor(POOL, dtype=torch.float32),
        "out_of_fold_targets": torch.tensor(LABELS[POOL], dtype=torch.float32),
    }
    torch.save({"state_dict": state, "adlab_config": {}}, checkpoint)
    assert bench.out_of_fold_figures(split, POOL, checkpoint)["auroc"] == pytest.approx(1.0)
    state["out_of_fold_targets"] = 1 - state["out_of_fold_targets"]
    torch.save({"state_dict": state, "adlab_config": {}}, checkpoint)
    with pytest.raises(RuntimeError, match="out-of-fold targets differ"):
        bench.out_of_fold_figures(split, POOL, checkpoint)


def test_holdout_table_tests_on_the_val_rows_of_a_table_cut_to_train_and_val(bench, tmp_path):
    pd.DataFrame({"customer_id": np.arange(8), "x": np.arange(8) * 1.5, "bought": LABELS}).to_csv(
        tmp_path / "t.csv", index=False
    )
    table = bench.holdout_table(bench.Table("t.csv", "bought"), _split(bench), tmp_path, tmp_path / "cut")
    assert table.split_column == "split" and table.target == "bought"
    cut = pd.read_parquet(table.path)
    assert cut["customer_id"].tolist() == POOL.tolist() and cut["x"].tolist() == (POOL * 1.5).tolist()
    assert cut["split"].tolist() == ["train", "test", "train", "test", "train", "test", "train"]


def _output(split="test", seeds=(1, 2)):
    figures = {"auroc": 0.8, "average_precision": 0.5, "top20_capture": 0.6, "fit_seconds": 40.0}
    runs = [
        {
            "dataset": "mlc_churn",
            "seed": seed,
            "model": model,
            "figures": {**figures, "auroc": 0.5 + seed / 8},
        }
        for seed in seeds
        for model in ("propensity_csv", "catboost")
    ]
    return {"split": split, "seeds": list(seeds), "runs": runs}


def test_adlab_runs_are_read_per_dataset_and_seed_a_later_file_winning(bench, tmp_path):
    earlier, later = tmp_path / "earlier.json", tmp_path / "later.json"
    earlier.write_text(json.dumps(_output()))
    later.write_text(json.dumps(_output(seeds=(2,))))
    row = {"average_precision": 0.5, "top20_capture": 0.6, "fit_seconds": 40.0}
    figures, sources = bench.read_adlab_runs([earlier], "test", ["mlc_churn"], [2])
    assert sources == [{"path": str(earlier), "overrides": []}]
    assert figures == {
        ("mlc_churn", 1): {"auroc": 0.625, **row},
        ("mlc_churn", 2): {"auroc": 0.75, **row},
    }
    data = json.loads(later.read_text())
    data["runs"][0]["figures"]["auroc"] = 0.9
    later.write_text(json.dumps(data))
    stored, _ = bench.read_adlab_runs([earlier, later], "test", ["mlc_churn"], [1, 2])
    assert stored[("mlc_churn", 1)]["auroc"] == 0.625 and stored[("mlc_churn", 2)]["auroc"] == 0.9


@pytest.mark.parametrize(
    ("content", "split", "seeds", "named"),
    [
        ("not json", "test", [1], "JSONDecodeError"),
        (json.dumps(_output(split="val")), "test", [1], "its split is 'val'"),
        (json.dumps(_output()), "test", [1, 3], "no propensity_csv run for mlc_churn seed 3"),
        (json.dumps({"split": "test"}), "test", [1], "KeyError"),
    ],
)
def test_a_bad_adlab_runs_file_ends_in_one_line_naming_it(
    bench, tmp_path, capsys, content, split, seeds, named
):
    path = tmp_path / "earlier.json"
    path.write_text(content)
    with pytest.raises(SystemExit) as ended:
        bench.read_adlab_runs([path], split, ["mlc_churn"], seeds)
    assert ended.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(path) in err and named in err


def test_overrides_with_adlab_runs_are_refused_before_any_work(bench, tmp_path, capsys, monkeypatch):
    path = tmp_path / "earlier.json"
    path.write_text(json.dumps(_output()))
    argv = ["bench_peers.py", "fit=plain", "--adlab-runs", str(path), "--data-dir", str(tmp_path / "none")]
    monkeypatch.setattr("sys.argv", argv)
    with pytest.raises(SystemExit) as ended:
        bench.main()
    assert ended.value.code == 2
    (err,) = capsys.readouterr().err.strip().splitlines()
    assert err.startswith("adlab: error: overrides fit=plain with --adlab-runs: expected one or the other")
