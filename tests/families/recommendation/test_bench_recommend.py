"""scripts/bench_recommend.py: the stored RecBole figures it reads, or refuses in one line."""

from __future__ import annotations

import json

import pytest

from tests.helpers import load_script


@pytest.fixture(scope="module")
def bench():
    return load_script("bench_recommend")


def test_stored_recbole_figures_are_read_or_refused_in_one_line(bench, tmp_path, capsys):
    stored = {
        "ndcg_at_10": {"1": 0.06, "2": 0.07},
        "hr_at_10": {"1": 0.12, "2": 0.14},
        "runs": {"1": {"fit_seconds": 10.0}, "2": {"fit_seconds": 30.0}},
    }
    good = tmp_path / "recbole.json"
    good.write_text(json.dumps(stored))
    summary = bench.stored_summary(bench.read_recbole(good))
    assert summary["ndcg_at_10"]["mean"] == pytest.approx(0.065) and summary["fit_seconds"]["mean"] == 20.0
    del stored["runs"]["2"]
    for content in (json.dumps(stored), "not json"):
        good.write_text(content)
        with pytest.raises(SystemExit) as stop:
            bench.read_recbole(good)
        assert stop.value.code == 2
        message = capsys.readouterr().err
        assert message.count("\n") == 1 and message.startswith(f"adlab: error: --recbole {good}: expected")
