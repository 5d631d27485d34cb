"""The churn presets (propensity_telco, propensity_mlc) on tiny tables of the real schemas."""

from __future__ import annotations

import numpy as np
import pandas as pd

from adlab.harness.build import build_datamodule
from adlab.train import train
from tests.helpers import TINY, compose_config


def _telco(rows: int, generator: np.random.Generator) -> pd.DataFrame:
    """modeldata's wa_churn columns as `adlab-data fetch telco_churn` writes them; churn rises with a
    month-to-month contract and falls with tenure."""
    tenure = generator.integers(0, 72, rows)
    contract = generator.choice(["Month-to-month", "One year", "Two year"], rows)
    monthly = generator.uniform(18, 119, rows).round(2)
    risk = 1.5 * (contract == "Month-to-month") - tenure / 24 + (monthly - 65) / 40
    churn = generator.random(rows) < 1 / (1 + np.exp(-risk))
    services = {
        name: generator.choice(["No", "Yes", "No internet service"], rows)
        for name in ("online_security", "online_backup", "device_protection", "tech_support")
    }
    return pd.DataFrame(
        {
            "customer_id": np.arange(1, rows + 1),
            "churn": np.where(churn, "Yes", "No"),
            "female": generator.integers(0, 2, rows),
            "senior_citizen": generator.integers(0, 2, rows),
            "tenure": tenure,
            "internet_service": generator.choice(["DSL", "Fiber optic", "No"], rows),
            **services,
            "contract": contract,
            "payment_method": generator.choice(["Electronic check", "Mailed check"], rows),
            "monthly_charges": monthly,
            # missing for customers of tenure 0, as in the real table
            "total_charges": np.where(tenure == 0, np.nan, (monthly * tenure).round(2)),
        }
    )


def test_telco_preset_learns_churn_with_yes_as_the_positive_class(tmp_path):
    generator = np.random.default_rng(3)
    table = _telco(400, generator)
    (tmp_path / "telco_churn").mkdir()
    table.to_csv(tmp_path / "telco_churn" / "telco_churn.csv", index=False)
    overrides = ["experiment=propensity_telco", f"paths.data_dir={tmp_path}", f"paths.log_dir={tmp_path}"]
    cfg = compose_config(
        "train", [*overrides, "trainer.max_epochs=10", "data.batch_size=32", *TINY[1:]], tmp_path / "run"
    )
    datamodule = build_datamodule(cfg)
    assert "customer_id" not in datamodule.meta.numeric and "contract" in datamodule.meta.categorical
    train_rows = datamodule.splits["train"]
    assert datamodule.meta.positive_rate == (table["churn"].iloc[train_rows] == "Yes").mean()
    metrics = train(cfg)
    assert metrics["test/auroc"] > 0.65 and "baseline/logreg/test/auroc" in metrics


def test_mlc_preset_reads_a_lower_case_yes_no_target(tmp_path):
    generator = np.random.default_rng(4)
    rows = 200
    calls = generator.integers(0, 9, rows)
    table = pd.DataFrame(
        {
            "customer_id": np.arange(1, rows + 1),
            "state": generator.choice(["KS", "OH", "NJ"], rows),
            "area_code": generator.choice(["area_code_408", "area_code_415"], rows),
            "international_plan": generator.choice(["no", "yes"], rows),
            "total_day_minutes": generator.uniform(0, 350, rows).round(1),
            "number_customer_service_calls": calls,
            "churn": np.where(calls >= 4, "yes", "no"),
        }
    )
    (tmp_path / "mlc_churn").mkdir()
    table.to_csv(tmp_path / "mlc_churn" / "mlc_churn.csv", index=False)
    cfg = compose_config(
        "train", ["experiment=propensity_mlc", f"paths.data_dir={tmp_path}"], tmp_path / "run"
    )
    datamodule = build_datamodule(cfg)
    for stage, rows_of_stage in datamodule.splits.items():
        expected = (table["churn"].iloc[rows_of_stage] == "yes").to_numpy(dtype=np.float32)
        assert np.array_equal(datamodule.tensors[stage]["target"].numpy(), expected), stage
    assert sorted(datamodule.meta.categorical) == ["area_code", "international_plan", "state"]
    assert len(datamodule.splits["train"]) == 120 and len(datamodule.splits["test"]) == 40
