"""`adlab-serve` routes of a recommendation package (data kind `interactions`): `/recommend` and `/similar`.

- `POST /recommend`: `{"items": [id, ...], "k": 10}` (a visitor's recent item ids, oldest first; `k`
  optional) -> `{"items": [{"item", "title", "score"}, ...], "unknown_items": n, "fallback": null,
  "model_version": v}`: the top-k items, best first, never one of the visitor's items. An id not in the
  catalogue is ignored and counted (`unknown_items`); a history with no known item gets the most popular
  items (`fallback: "popularity"`, scores are train interaction counts). When the package has user
  attributes (`/metadata`'s `user_attributes`, e.g. the two-tower model's age and gender), the body may carry
  the visitor's as `"user": {attribute: value}`; one not given, or a value training never saw, is coded
  unknown (the latter counted, `unknown_user_values`).
- `POST /similar`: `{"item": id, "k": 10}` -> the same answer with the k items nearest to `item` (cosine
  of the model's item vectors: "customers who liked this also liked"); an id not in the catalogue is a 404
  naming it.
- `GET /metadata` (served by `create_app`): the catalogue size, history length, default k and these rules
  (`RecommenderScorer.describe()`), training metrics, limits.

Item ids are the catalogue's, as JSON strings or integers (`7`, `7.0` and `"7"` are the same film). A body that
does not fit (not an object, another key, an id that is neither a string nor an integer, `k` not a whole
number from 1 to the catalogue's size) is a 422 whose `detail` names the input and `feature` the key.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response

from adlab.errors import AdlabError, excerpt
from adlab.serving.package import ModelPackage
from adlab.serving.recommender import Recommendation, RecommenderScorer
from adlab.serving.routes import (
    KindService,
    ServiceSettings,
    error,
    json_response,
    operation,
    package_facts,
    read_json,
)

RECOMMEND_BODY = '{"items": [item id, ...], "k": optional, "user": optional {attribute: value}}'
DEFAULT_K = 10  # items answered when a request names no k (fewer when the catalogue is smaller)
ITEM_ID = {"type": ["string", "integer"], "description": "an item id of the catalogue"}
REFUSALS = {
    "413": "body over the limit",
    "415": "a body that is not declared as JSON",
    "422": "malformed JSON, another key, an id that is not a string or integer, or k out of range",
}


class RequestError(ValueError):
    """A request body that does not fit: `detail` names the input, `key` the body's key (or None)."""

    def __init__(self, detail: str, key: str | None = None):
        super().__init__(detail)
        self.key = key


def _object(payload: Any, required: str, example: str, optional: tuple[str, ...] = ("k",)) -> dict[str, Any]:
    """The body as `{required: ..., [optional keys]}`, else `RequestError`."""
    if type(payload) is not dict or required not in payload:
        raise RequestError(f"expected a JSON object {example}", required)
    extra = sorted(set(payload) - {required, *optional})
    if extra:
        raise RequestError(
            f"key {excerpt(repr(extra[0]), 60)} is not read; expected {example}", extra[0][:60]
        )
    return payload


def whole(value: Any) -> Any:
    """A JSON number with no fraction as an int (JSON Schema's `integer` counts 7.0 as 7), else `value`."""
    return int(value) if type(value) is float and value.is_integer() else value


def item_id(value: Any, where: str, key: str) -> str:
    """An item id as the catalogue writes it (a string); `RequestError` (naming `where`, in the body's `key`)
    unless a JSON string or integer."""
    if type(value) is str:
        return value
    if type(whole(value)) is int:
        return str(whole(value))
    raise RequestError(
        f"{where}={excerpt(repr(value), 60)}: expected an item id (a string or an integer)", key
    )


def whole_k(payload: dict[str, Any], scorer: RecommenderScorer) -> int:
    """The request's `k` (default `DEFAULT_K`, at most the catalogue), else `RequestError` naming it."""
    if "k" not in payload:
        return min(DEFAULT_K, scorer.catalogue_size)
    try:
        return scorer.check_k(whole(payload["k"]))
    except AdlabError:
        shown = excerpt(repr(payload["k"]), 60)
        raise RequestError(
            f"k={shown}: expected a whole number from 1 to the catalogue's {scorer.catalogue_size} items", "k"
        ) from None


def visitor(payload: dict[str, Any], scorer: RecommenderScorer) -> dict[str, str | None] | None:
    """The request's `user` attributes as strings (None: not given), else `RequestError` naming the one that
    does not fit (an attribute the package does not have, a value that is not a string or integer)."""
    if "user" not in payload:
        return None
    user = payload["user"]
    attributes = scorer.user_attributes
    if type(user) is not dict:
        raise RequestError(f"user={excerpt(repr(user), 60)}: expected an object {{attribute: value}}", "user")
    values: dict[str, str | None] = {}
    for name, value in user.items():
        if name not in scorer.user_codes:
            raise RequestError(f"user attribute {excerpt(repr(name), 60)}: not one of {attributes}", "user")
        if value is not None and type(value) is not str and type(whole(value)) is not int:
            shown = excerpt(repr(value), 60)
            raise RequestError(f"user.{name}={shown}: expected a string, an integer or null", "user")
        values[name] = None if value is None else str(whole(value))
    return values


def json_route(answer: Callable[[Any], Response]) -> Callable[[Request], Awaitable[Response]]:
    """A POST handler: the JSON body (415/422 when it is none) to `answer`, whose `RequestError` is a 422."""

    async def route(request: Request) -> Response:
        payload, refused = await read_json(request)
        if refused is not None:
            return refused
        try:
            return answer(payload)
        except RequestError as invalid:
            return error(422, str(invalid), invalid.key)

    return route


def recommendation_schemas(scorer: RecommenderScorer) -> dict[str, dict[str, Any]]:
    """JSON Schemas of the /recommend and /similar bodies and of their 200 answer."""
    k = {"type": "integer", "minimum": 1, "maximum": scorer.catalogue_size, "default": DEFAULT_K}
    attributes = {
        "type": "object",
        "properties": {
            name: {"type": ["string", "integer", "null"], "examples": list(codes)[:3]}
            for name, codes in scorer.user_codes.items()
        },
        "additionalProperties": False,
        "description": "the visitor's attributes; one not given or never seen in training is coded unknown",
    }
    recommend = {
        "type": "object",
        "properties": {
            "items": {"type": "array", "items": ITEM_ID},
            "k": k,
            **({"user": attributes} if scorer.user_attributes else {}),
        },
        "required": ["items"],
        "additionalProperties": False,
    }
    similar = {
        "type": "object",
        "properties": {"item": {**ITEM_ID, "examples": scorer.item_ids[:3]}, "k": k},
        "required": ["item"],
        "additionalProperties": False,
    }
    ranked = {
        "type": "object",
        "properties": {"item": {"type": "string"}, "title": {"type": "string"}, "score": {"type": "number"}},
        "required": ["item", "title", "score"],
        "additionalProperties": False,
    }
    answer = {
        "type": "object",
        "properties": {
            "items": {"type": "array", "items": ranked, "maxItems": scorer.catalogue_size},
            "unknown_items": {"type": "integer", "minimum": 0},
            "unknown_user_values": {"type": "integer", "minimum": 0},
            "fallback": {"enum": [None, "popularity"]},
            "model_version": {"type": "string"},
        },
        "required": ["items", "unknown_items", "fallback", "model_version"],
        "additionalProperties": False,
    }
    return {"recommend": recommend, "similar": similar, "answer": answer}


def recommendation_paths(scorer: RecommenderScorer) -> dict[str, dict[str, Any]]:
    """OpenAPI path items of /recommend and /similar."""
    schemas = recommendation_schemas(scorer)
    recommended = "the top-k items, best first, the visitor's own items excluded; unknown ids counted"
    nearest = "the k items nearest to the item, best first"
    return {
        "/recommend": operation(
            "Recommend items to a visitor from their recent items",
            schemas["recommend"],
            schemas["answer"],
            recommended,
            REFUSALS,
        ),
        "/similar": operation(
            "Items similar to an item",
            schemas["similar"],
            schemas["answer"],
            nearest,
            {**REFUSALS, "404": "an item id that is not in the catalogue"},
        ),
    }


def service_metadata(scorer: RecommenderScorer, settings: ServiceSettings) -> dict[str, Any]:
    """What /metadata answers: the package's metadata, the recommendation rules and the service's limits."""
    return {
        **package_facts(scorer.package),
        **scorer.describe(),
        "default_k": min(DEFAULT_K, scorer.catalogue_size),
        "endpoints": {
            "/recommend": '{"items": [item id, ...] oldest first, "k": optional, "user": optional '
            "{attribute: value}} -> top-k items",
            "/similar": '{"item": item id, "k": optional} -> its k nearest items; 404 when not in the catalogue',
        },
        "training_metrics": scorer.package.metadata.get("training_metrics", {}),
        "limits": {"max_body_bytes": settings.max_body_bytes},
    }


def add_routes(
    app: FastAPI, package: ModelPackage, settings: ServiceSettings, scorer: RecommenderScorer | None = None
) -> KindService:
    """Add /recommend and /similar for a recommendation package (see serving/routes.py)."""
    scorer = scorer if scorer is not None else RecommenderScorer(package, settings.threads)
    version = package.model_version

    def answer(recommendation: Recommendation) -> Response:
        return json_response(200, {**recommendation.to_dict(), "model_version": version})

    def recommend(payload: Any) -> Response:
        body = _object(payload, "items", RECOMMEND_BODY, ("k", "user") if scorer.user_attributes else ("k",))
        items = body["items"]
        if type(items) is not list:
            raise RequestError(f"items={excerpt(repr(items), 60)}: expected a list of item ids", "items")
        history = [item_id(value, f"items[{position}]", "items") for position, value in enumerate(items)]
        return answer(scorer.recommend(history, whole_k(body, scorer), visitor(body, scorer)))

    def similar(payload: Any) -> Response:
        body = _object(payload, "item", '{"item": item id, "k": optional}')
        item, k = item_id(body["item"], "item", "item"), whole_k(body, scorer)
        if item not in scorer.index:
            shown = excerpt(repr(item), 60)
            return error(404, f"item={shown}: not in the catalogue of {scorer.catalogue_size} items", "item")
        return answer(scorer.similar(item, k))

    # plain Starlette routes, documented in the OpenAPI schema (as the tabular kind's)
    app.add_route("/recommend", json_route(recommend), methods=["POST"])
    app.add_route("/similar", json_route(similar), methods=["POST"])
    return KindService(
        title="adlab recommendations",
        model_version=version,
        metadata=service_metadata(scorer, settings),
        paths=recommendation_paths(scorer),
    )
