"""A recommendation package behind adlab-serve (/recommend, /similar) and adlab-score (top-k per user), on a
tiny two-tower model (reading the users' gender) trained on a generated log with MovieLens' schema.

`scripts/fuzz_service.py --package DIR` fuzzes the same endpoints at scale (2,000+ requests per endpoint).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest
from starlette.testclient import TestClient

from adlab.data.sources.interactions import generate_interactions
from adlab.errors import AdlabError
from adlab.export import export_checkpoint
from adlab.serving.app import create_app
from adlab.serving.batch_interactions import HistoryColumns, score_histories
from adlab.serving.package import load_package
from adlab.serving.recommender import RecommenderScorer
from adlab.train import train
from tests.helpers import TINY, compose_config
from tests.serving.test_service_fuzz import fuzz_app

FILMS = 40


@pytest.fixture(scope="module")
def log(tmp_path_factory) -> dict[str, Path]:
    """60 generated users' ratings of 40 films (CSV), the film table with titles and the user table."""
    folder = tmp_path_factory.mktemp("recommend_log")
    ratings, items, users = generate_interactions(60, FILMS, seed=0)
    paths = {"ratings": folder / "ratings.csv", "items": folder / "items.csv", "users": folder / "users.csv"}
    ratings.to_csv(paths["ratings"], index=False)
    items.to_csv(paths["items"], index=False)
    users.to_csv(paths["users"], index=False)
    return paths


@pytest.fixture(scope="module")
def package(log, tmp_path_factory) -> Path:
    """A two-tower model trained for 2 epochs on the tiny log, exported to ONNX."""
    run = tmp_path_factory.mktemp("recommend_run")
    overrides = [
        "experiment=recommend_csv",
        f"data.source.path={log['ratings']}",
        f"data.source.items_path={log['items']}",
        "data.source.user=user_id",
        "data.source.item=item_id",
        "data.source.time=timestamp",
        "data.source.item_title=title",
        f"data.source.users_path={log['users']}",
        "data.source.user_attributes=[gender]",
        "model=recommend_two_tower",
        "data.source.max_length=8",
        "model.net.dim=16",
        "baselines=none",
        f"paths.log_dir={run}",
        *TINY,
    ]
    cfg = compose_config("train", overrides, run / "run")
    train(cfg)
    checkpoint = Path(cfg.paths.output_dir) / "checkpoints" / "best.ckpt"
    return export_checkpoint(checkpoint, "onnx", tmp_path_factory.mktemp("recommend_pkg"))


@pytest.fixture(scope="module")
def scorer(package) -> RecommenderScorer:
    return RecommenderScorer(load_package(package))


@pytest.fixture(scope="module")
def app(package):
    return create_app(package, max_body_bytes=20_000)


@pytest.fixture(scope="module")
def client(app):
    return TestClient(app)


def test_the_service_serves_a_recommendation_package_by_its_kind(client, scorer):
    health = client.get("/health").json()
    metadata = client.get("/metadata").json()
    assert health["status"] == "ok" and metadata["model_version"] == health["model_version"]
    assert (
        metadata["catalogue_items"] == FILMS and metadata["default_k"] == 10 and metadata["max_length"] == 8
    )
    assert any("popularity" in rule for rule in metadata["rules"])
    assert any("unknown id is ignored" in rule for rule in metadata["rules"])
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/recommend", "/similar", "/health", "/metadata"} <= set(paths) and "/score" not in paths
    assert client.post("/score", json={}).status_code in (404, 405)


def test_recommend_excludes_the_history_counts_unknown_ids_and_falls_back_to_popularity(client, scorer):
    history = [scorer.item_ids[2], int(scorer.item_ids[5]), "no-such-film", scorer.item_ids[9]]
    answer = client.post("/recommend", json={"items": history, "k": 5}).json()
    expected = scorer.recommend([str(item) for item in history], 5)
    assert [row["item"] for row in answer["items"]] == expected.items and len(expected.items) == 5
    assert not {str(item) for item in history} & {row["item"] for row in answer["items"]}
    assert answer["items"][0]["title"] == expected.titles[0] and answer["items"][0]["title"].startswith(
        "Film "
    )
    scores = [row["score"] for row in answer["items"]]
    assert scores == sorted(scores, reverse=True) and scores == pytest.approx(expected.scores)
    assert answer["unknown_items"] == 1 and answer["fallback"] is None
    default = client.post("/recommend", json={"items": history[:1]}).json()
    assert len(default["items"]) == 10
    # JSON Schema's integers: 7.0 is 7
    whole = client.post("/recommend", json={"items": [float(item) for item in history[:2]], "k": 5.0}).json()
    assert whole["items"] == client.post("/recommend", json={"items": history[:2], "k": 5}).json()["items"]
    for empty in ([], ["no-such-film", "nor-this-one"]):
        fallback = client.post("/recommend", json={"items": empty, "k": 3}).json()
        popular = [scorer.item_ids[i] for i in scorer._popular[:3]]
        assert fallback["fallback"] == "popularity" and [r["item"] for r in fallback["items"]] == popular
        assert fallback["unknown_items"] == len(empty)
    everything = client.post("/recommend", json={"items": scorer.item_ids[:-2], "k": FILMS}).json()
    assert sorted(row["item"] for row in everything["items"]) == sorted(scorer.item_ids[-2:])


def test_similar_answers_an_items_neighbours_and_404s_an_unknown_item(client, scorer):
    item = scorer.item_ids[7]
    answer = client.post("/similar", json={"item": item, "k": 4}).json()
    assert [row["item"] for row in answer["items"]] == scorer.similar(item, 4).items
    assert item not in {row["item"] for row in answer["items"]} and answer["fallback"] is None
    assert (
        client.post("/similar", json={"item": int(item)}).json()["items"]
        == client.post("/similar", json={"item": item}).json()["items"]
    )
    missing = client.post("/similar", json={"item": "no-such-film"})
    assert missing.status_code == 404 and missing.json()["detail"].startswith("item='no-such-film': not in")


def test_recommend_reads_the_visitors_attributes_when_the_package_has_them(client, scorer):
    genders = client.get("/metadata").json()["user_attributes"]["gender"]
    assert scorer.user_attributes == ["gender"] and len(genders) == 2
    history = scorer.item_ids[:3]
    answers = [
        client.post("/recommend", json={"items": history, "k": 5, "user": {"gender": gender}}).json()
        for gender in genders
    ]
    assert answers[0]["unknown_user_values"] == 0 and answers[0]["items"] != answers[1]["items"]
    assert answers[0]["items"] == scorer.recommend(history, 5, {"gender": genders[0]}).to_dict()["items"]
    unseen = client.post("/recommend", json={"items": history, "k": 5, "user": {"gender": "X"}}).json()
    plain = client.post("/recommend", json={"items": history, "k": 5}).json()
    assert unseen["unknown_user_values"] == 1 and unseen["items"] == plain["items"]
    assert "unknown_user_values" not in plain


@pytest.mark.parametrize(
    ("path", "body", "feature", "message"),
    [
        ("/recommend", {"items": ["1"], "k": 0}, "k", "k=0: expected a whole number from 1 to"),
        ("/recommend", {"items": ["1"], "k": FILMS + 1}, "k", f"k={FILMS + 1}: expected"),
        ("/recommend", {"items": ["1"], "k": 2.5}, "k", "k=2.5: expected"),
        ("/recommend", {"items": ["1"], "k": True}, "k", "k=True: expected"),
        ("/recommend", {"items": ["1"], "k": "3"}, "k", "k='3': expected"),
        ("/recommend", {"items": "1"}, "items", "items='1': expected a list of item ids"),
        ("/recommend", {"items": ["1", None]}, "items", "items[1]=None: expected an item id"),
        ("/recommend", {"items": [1.5]}, "items", "items[0]=1.5: expected an item id"),
        ("/recommend", {"item": ["1"]}, "items", 'expected a JSON object {"items"'),
        ("/recommend", {"items": [], "visitor": 3}, "visitor", "key 'visitor' is not read"),
        ("/recommend", [["1"]], "items", "expected a JSON object"),
        (
            "/recommend",
            {"items": [], "user": {"age": 30}},
            "user",
            "user attribute 'age': not one of ['gender']",
        ),
        ("/recommend", {"items": [], "user": {"gender": 1.5}}, "user", "user.gender=1.5: expected a string"),
        ("/recommend", {"items": [], "user": "F"}, "user", "user='F': expected an object"),
        ("/similar", {"item": ["1"]}, "item", "item=['1']: expected an item id"),
        ("/similar", {"item": "1", "k": -1}, "k", "k=-1: expected"),
        ("/similar", {}, "item", 'expected a JSON object {"item"'),
    ],
)
def test_a_request_that_does_not_fit_is_a_422_naming_its_input(client, path, body, feature, message):
    response = client.post(path, json=body)
    assert response.status_code == 422, response.text
    assert response.json()["feature"] == feature and response.json()["detail"].startswith(message)


def test_media_type_malformed_json_and_size_are_refused(client):
    for path in ("/recommend", "/similar"):
        text = client.post(path, content=b'{"items": []}', headers={"content-type": "text/plain"})
        assert text.status_code == 415 and "expected application/json" in text.json()["detail"]
        broken = client.post(path, content=b"{items", headers={"content-type": "application/json"})
        assert broken.status_code == 422 and "not valid JSON" in broken.json()["detail"]
        oversized = client.post(path, json={"items": ["1"] * 10_000})
        assert oversized.status_code == 413
    assert client.get("/health").status_code == 200


def test_schemathesis_finds_no_server_error_and_no_schema_violation(app):
    """A few dozen generated bodies per endpoint and mode: every answer documented and fitting its schema,
    valid bodies accepted (200, or 404 for an item not in the catalogue), invalid ones refused with a 4xx."""
    statuses, failures = fuzz_app(app, 25)
    assert failures == []
    assert not any(status >= 500 for status in statuses)
    # /similar's generated ids are mostly not among the 40 films: 404s
    assert statuses[200] >= 25 and statuses[404] >= 10 and statuses[422] >= 40


def _histories(scorer: RecommenderScorer, path: Path) -> pd.DataFrame:
    """Three users: two films (time out of file order), a film plus an unknown id, only unknown ids."""
    frame = pd.DataFrame(
        {
            "visitor": ["b", "b", "a", "a", "c", "c"],
            "film": [scorer.item_ids[3], scorer.item_ids[4], scorer.item_ids[8], "gone", "gone", "lost"],
            "when": ["1998-01-02", "1998-01-01", "1998-01-05", "1998-01-06", "1998-02-01", "1998-02-02"],
        }
    )
    frame.to_csv(path, index=False) if path.suffix == ".csv" else frame.to_parquet(path)
    return frame


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_adlab_score_writes_top_k_per_user_and_counts_unknown_items(scorer, tmp_path, suffix):
    source = tmp_path / f"histories{suffix}"
    frame = _histories(scorer, source)
    output = tmp_path / f"top{suffix}"
    report = score_histories(scorer, source, output, 3, HistoryColumns("visitor", "film", "when"))
    top = (
        pd.read_csv(output, dtype={"user": str, "item": str}) if suffix == ".csv" else pd.read_parquet(output)
    )
    assert list(top.columns) == ["user", "rank", "item", "title", "score"] and len(top) == 9
    assert top["user"].tolist() == ["b"] * 3 + ["a"] * 3 + ["c"] * 3 and top["rank"].tolist() == [1, 2, 3] * 3
    # b's history is oldest first by time: film 4, then film 3
    assert (
        top[top["user"] == "b"]["item"].tolist()
        == scorer.recommend([scorer.item_ids[4], scorer.item_ids[3]], 3).items
    )
    assert not set(frame["film"]) & set(top[top["user"] != "c"]["item"])
    assert report.users == 3 and report.unknown_rows == 3 and report.unknown_items == ["gone", "lost"]
    assert (
        report.fallback_users == 1
        and "3 rows name 2 item ids not in the catalogue" in report.unknown_summary()
    )


def test_adlab_score_reads_the_users_attributes_from_a_users_table(scorer, tmp_path):
    source = tmp_path / "histories.csv"
    frame = _histories(scorer, source)
    female, male = list(scorer.user_codes["gender"])
    users = tmp_path / "users.csv"
    pd.DataFrame({"visitor": ["a", "b"], "gender": [female, "unheard-of"]}).to_csv(users, index=False)
    columns = HistoryColumns("visitor", "film", "when")
    report = score_histories(scorer, source, tmp_path / "top.csv", 3, columns, users)
    assert (
        report.users_without_attributes == 1 and report.unknown_user_values == 1
    )  # c is not in it; b's value
    top = pd.read_csv(tmp_path / "top.csv", dtype={"user": str, "item": str})
    history = frame[frame["visitor"] == "a"]["film"].tolist()
    assert top[top["user"] == "a"]["item"].tolist() == scorer.recommend(history, 3, {"gender": female}).items
    pd.DataFrame({"visitor": ["a"], "age": [30]}).to_csv(users, index=False)
    with pytest.raises(AdlabError, match=r"histories.users_path=.*: no column \['gender'\]"):
        score_histories(scorer, source, tmp_path / "top.csv", 3, columns, users)
    pd.DataFrame({"visitor": ["a", "a"], "gender": [female, male]}).to_csv(users, index=False)
    with pytest.raises(AdlabError, match="user 'a' has more than one row"):
        score_histories(scorer, source, tmp_path / "top.csv", 3, columns, users)


def test_adlab_score_mistakes_are_one_line_naming_the_input(scorer, tmp_path, monkeypatch, capsys, package):
    source = tmp_path / "histories.csv"
    _histories(scorer, source)
    columns = HistoryColumns("visitor", "film", "when")
    cases = [
        (dict(columns=HistoryColumns("user_id", "film", "when")), "no user 'user_id' column; the file has"),
        (dict(columns=HistoryColumns("visitor", "film", "timestamp")), "no time 'timestamp' column"),
        (
            dict(columns=HistoryColumns("visitor", "film", "visitor")),
            "time column 'visitor' has values that are not times",
        ),
        (dict(columns=columns, k=0), "k=0: expected a whole number"),
        (dict(columns=columns, k=FILMS + 1), f"k={FILMS + 1}: expected"),
    ]
    for options, message in cases:
        with pytest.raises(AdlabError, match=message):
            score_histories(scorer, source, tmp_path / "top.csv", **{"k": 3, **options})
    assert not list(tmp_path.glob("*top*"))
    nul = tmp_path / "nul.parquet"  # "b\x00" would become "b" in a numpy text array: refused, not merged
    _histories(scorer, tmp_path / "h.parquet").replace({"visitor": {"a": "b\x00"}}).to_parquet(nul)
    with pytest.raises(AdlabError, match="input column 'visitor' has 2 ids with a NUL character"):
        score_histories(scorer, nul, tmp_path / "top.csv", 3, columns)
    file_order = score_histories(
        scorer, source, tmp_path / "top.parquet", 2, HistoryColumns("visitor", "film", None)
    )
    assert file_order.users == 3

    from adlab.serving.batch import main

    def run(*args: str):
        monkeypatch.setattr(sys, "argv", ["adlab-score", f"model={package}", f"input={source}", *args])
        try:
            main()
        except SystemExit as stop:
            return stop.code, capsys.readouterr()
        return 0, capsys.readouterr()

    job = f"hydra.run.dir={tmp_path / 'job'}"
    output = tmp_path / "cli.csv"
    code, out = run(
        f"output={output}", "histories.user=visitor", "histories.item=film", "histories.time=when", "k=4", job
    )
    assert code == 0 and len(pd.read_csv(output)) == 12
    assert "recommended 4 items to each of 3 users" in out.out
    assert (
        out.err.strip()
        .splitlines()[-1]
        .endswith("3 rows name 2 item ids not in the catalogue ('gone', 'lost'); ignored")
    )
    code, out = run(f"output={output}", "histories.user=visitor", "histories.item=film", "k=4", job)
    assert code == 2 and out.err.strip().splitlines()[-1].startswith(
        f"adlab: error: input={source}: no time 'timestamp'"
    )
    code, out = run(f"output={output}", "keep=[film]", job)
    assert code == 2 and "keep=['film']: a tabular option" in out.err.strip().splitlines()[-1]
