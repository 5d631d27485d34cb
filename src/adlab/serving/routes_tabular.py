"""`adlab-serve` routes of a tabular package (propensity scorers): `POST /score` and `POST /score/batch`.

- `POST /score`: one JSON object `{feature: value}` -> `{"score": p, "model_version": v}`.
- `POST /score/batch`: `{"rows": [{...}, ...]}` -> `{"scores": [...], "model_version": v}`.
- `GET /metadata` (served by `create_app`): model version, the features a request carries, training
  metrics, limits.

A record carries exactly the columns the model reads (`/metadata`'s `features`), plus optionally the
training data's row id (echoed as `id` / `ids`) and its target (ignored, named in `ignored`). Values the
training split never had (an unseen category, a number outside the train range) are scored and named in
the answer's `warnings`. A batch over `max_batch_rows` is a 413; a record that does not fit the feature
schema is a 422 whose `detail` names the feature. The per-request path parses with `json`, writes into the
scorer's preallocated row and runs a bound ONNX Runtime session on the event loop thread (scoring takes
microseconds, less than a hand-off to a worker thread would).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import Response

from adlab.serving.package import ModelPackage
from adlab.serving.routes import (
    JSON,
    KindService,
    ServiceSettings,
    error,
    json_response,
    operation,
    package_facts,
    read_json,
)
from adlab.serving.schema import MAX_MAGNITUDE, SchemaError
from adlab.serving.scorer import TabularScorer

WARNINGS_SCHEMA = {"type": "array", "items": {"type": "string"}}
REFUSALS = {
    "413": "body or batch over the limit",
    "415": "a body that is not declared as JSON",
    "422": "malformed JSON or a feature that does not fit the schema",
}


def feature_schema(scorer: TabularScorer) -> dict[str, Any]:
    """JSON Schema of one request (for /docs and clients): the columns the model reads, the optional row id
    (echoed) and target (ignored)."""
    schema = scorer.schema
    number: dict[str, Any] = {
        "type": ["number", "null"] if schema.allow_missing else "number",
        "minimum": -MAX_MAGNITUDE,
        "maximum": MAX_MAGNITUDE,
    }
    categories = set(schema.categorical)
    properties: dict[str, Any] = {
        name: {"type": ["string", "null"], "examples": schema.vocabularies[name][:3]}
        if name in categories
        else number
        for name in schema.required
    }
    if schema.id_column in schema.optional:
        properties[schema.id_column] = {"type": ["string", "integer", "number", "null"]}
    if schema.target in schema.optional:
        properties[schema.target] = {"description": "the training target: ignored (named in the answer)"}
    return {
        "type": "object",
        "properties": properties,
        "required": schema.required,
        "additionalProperties": False,
    }


def answer_schema(one: bool) -> dict[str, Any]:
    """JSON Schema of a 200 answer of /score (`one`) or /score/batch."""
    probability = {"type": "number", "minimum": 0, "maximum": 1}
    properties: dict[str, Any] = {"model_version": {"type": "string"}, "warnings": WARNINGS_SCHEMA}
    properties["ignored"] = {"type": "array", "items": {"type": "string"}}
    if one:
        properties |= {"score": probability, "id": {"type": ["string", "integer", "number", "null"]}}
        required = ["score", "model_version"]
    else:
        properties |= {
            "scores": {"type": "array", "items": probability},
            "ids": {"type": "array", "items": {"type": ["string", "integer", "number", "null"]}},
        }
        required = ["scores", "model_version"]
    return {"type": "object", "properties": properties, "required": required, "additionalProperties": False}


def scoring_paths(record_schema: dict[str, Any], max_batch_rows: int) -> dict[str, dict[str, Any]]:
    """OpenAPI path items of /score and /score/batch."""
    batch_schema = {
        "type": "object",
        "properties": {"rows": {"type": "array", "items": record_schema, "maxItems": max_batch_rows}},
        "required": ["rows"],
        "additionalProperties": False,
    }
    described = "purchase probability; `warnings` names values training never saw"
    return {
        "/score": operation("Score one customer", record_schema, answer_schema(True), described, REFUSALS),
        "/score/batch": operation(
            "Score a batch of customers", batch_schema, answer_schema(False), described, REFUSALS
        ),
    }


def service_metadata(scorer: TabularScorer, max_body_bytes: int, max_batch_rows: int) -> dict[str, Any]:
    """What /metadata answers: the package's metadata with the feature schema and the service's limits."""
    schema, metadata = scorer.schema, scorer.package.metadata
    required = set(schema.required)
    features = [
        {"name": name, "kind": "categorical", "type": "string", "categories": schema.vocabularies[name]}
        for name in schema.categorical
        if name in required
    ] + [
        {
            "name": name,
            "kind": "numeric",
            "type": "number",
            "nullable": schema.allow_missing,
            # the train split's range: values outside it are scored, with a warning in the answer
            "training_range": [
                None if not np.isfinite(schema.minimum[position]) else float(schema.minimum[position]),
                None if not np.isfinite(schema.maximum[position]) else float(schema.maximum[position]),
            ],
        }
        for position, name in enumerate(schema.numeric)
        if name in required
    ]
    return {
        **package_facts(scorer.package),
        # what a request carries: exactly the features the model reads, plus the optional row id (echoed)
        # and target (ignored); the training columns the model does not read are refused
        "features": features,
        "id_column": schema.id_column if schema.id_column in schema.optional else None,
        "target": schema.target if schema.target in schema.optional else None,
        "unread_features": schema.unread,
        "training_metrics": metadata.get("training_metrics", {}),
        "limits": {"max_body_bytes": max_body_bytes, "max_batch_rows": max_batch_rows},
    }


def add_routes(
    app: FastAPI, package: ModelPackage, settings: ServiceSettings, scorer: TabularScorer | None = None
) -> KindService:
    """Add /score and /score/batch for a tabular package (see the module docstring of serving/routes.py)."""
    scorer = scorer if scorer is not None else TabularScorer(package, settings.threads)
    version = scorer.model_version
    schema = scorer.schema
    id_column = schema.id_column if schema.id_column in schema.optional else None
    target = schema.target if schema.target in schema.optional else None
    score_tail = f',"model_version":{json.dumps(version)}}}'.encode()
    max_batch_rows = settings.max_batch_rows

    async def score(request: Request) -> Response:
        record, refused = await read_json(request)
        if refused is not None:
            return refused
        try:
            probability = scorer.score_record(record)
        except SchemaError as invalid:
            return error(422, str(invalid), invalid.column)
        warnings = scorer.last_record_warnings(record)
        if not warnings and len(record) == len(schema.required):  # the usual request: nothing to add
            return Response(b'{"score":' + repr(probability).encode() + score_tail, media_type=JSON)
        answer: dict[str, Any] = {"score": probability, "model_version": version}
        if id_column in record:
            answer["id"] = record[id_column]
        if target in record:
            answer["ignored"] = [target]
        if warnings:
            answer["warnings"] = warnings
        return json_response(200, answer)

    async def score_batch(request: Request) -> Response:
        payload, refused = await read_json(request)
        if refused is not None:
            return refused
        if type(payload) is not dict or set(payload) != {"rows"}:
            return error(422, 'expected a JSON object {"rows": [{feature: value}, ...]}')
        rows = payload["rows"]
        if type(rows) is list and len(rows) > max_batch_rows:
            return error(413, f"{len(rows)} rows in one request; at most {max_batch_rows}")
        try:
            scores, warnings = scorer.score_records_with_warnings(rows)
        except SchemaError as invalid:
            return error(422, str(invalid), invalid.column)
        answer: dict[str, Any] = {"scores": scores.tolist(), "model_version": version}
        if id_column and any(id_column in row for row in rows):
            answer["ids"] = [row.get(id_column) for row in rows]
        if target and any(target in row for row in rows):
            answer["ignored"] = [target]
        if warnings:
            answer["warnings"] = warnings
        return json_response(200, answer)

    # plain Starlette routes: FastAPI's dependency solving and request wrapping cost more than
    # scoring a request; their request bodies are documented in the OpenAPI schema instead
    app.add_route("/score", score, methods=["POST"])
    app.add_route("/score/batch", score_batch, methods=["POST"])
    return KindService(
        title="adlab propensity scoring",
        model_version=version,
        metadata=service_metadata(scorer, settings.max_body_bytes, max_batch_rows),
        paths=scoring_paths(feature_schema(scorer), max_batch_rows),
    )
