"""`adlab-serve model=PATH host=127.0.0.1 port=N`: the HTTP scoring service.

FastAPI on uvicorn, ONNX Runtime underneath. Endpoints:

- `POST /score`: one JSON object `{feature: value}` -> `{"score": p, "model_version": v}`.
- `POST /score/batch`: `{"rows": [{...}, ...]}` -> `{"scores": [...], "model_version": v}`.
- `GET /health`, `GET /metadata` (model version, features, training metrics, limits).

Bad input never reaches the model unchecked and never ends in a 500: a body over `max_body_bytes` or a
batch over `max_batch_rows` is a 413; malformed JSON or a record that does not fit the feature schema is
a 422 whose `detail` names the feature. The per-request path parses with `json`, writes into the
scorer's preallocated row and runs a bound ONNX Runtime session on the event loop thread (scoring
takes microseconds, less than a hand-off to a worker thread would).
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import hydra
from fastapi import FastAPI, Request
from fastapi.responses import Response
from omegaconf import DictConfig

from adlab.cli import check_overrides, report_user_errors
from adlab.errors import AdlabError
from adlab.harness.configs import config_dir, register_resolvers
from adlab.serving.package import load_package, model_path_overrides
from adlab.serving.schema import SchemaError
from adlab.serving.scorer import TabularScorer

JSON = "application/json"
log = logging.getLogger(__name__)


def _json_response(status: int, payload: dict[str, Any]) -> Response:
    return Response(json.dumps(payload).encode(), status_code=status, media_type=JSON)


def _error(status: int, detail: str, column: str | None = None) -> Response:
    payload: dict[str, Any] = {"detail": detail}
    if column is not None:
        payload["feature"] = column
    return _json_response(status, payload)


class BodySizeLimit:
    """ASGI middleware: refuse bodies over `max_bytes` with 413 before the app parses anything.

    The declared Content-Length is checked first; a body sent without one (chunked) is counted as
    it arrives. The body read here is replayed to the app, so it is read once.
    """

    def __init__(self, app: Any, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes
        self.too_large = json.dumps({"detail": f"request body over {max_bytes} bytes"}).encode()

    async def _refuse(self, send: Any) -> None:
        headers = [
            (b"content-type", JSON.encode()),
            (b"content-length", str(len(self.too_large)).encode()),
            (b"connection", b"close"),
        ]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": self.too_large})

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                await self._refuse(send)
                return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._refuse(send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


def _parse(body: bytes) -> tuple[Any, Response | None]:
    if not body:
        return None, _error(422, "empty body; expected JSON")
    try:
        return json.loads(body), None
    except RecursionError:
        return None, _error(422, "body is not acceptable JSON (nested too deeply)")
    except ValueError as error:  # JSONDecodeError and UnicodeDecodeError
        return None, _error(422, f"body is not valid JSON ({error})")


def _feature_schema(scorer: TabularScorer) -> dict[str, Any]:
    """JSON Schema of one request (for /docs and clients)."""
    schema = scorer.schema
    number: dict[str, Any] = {"type": ["number", "null"] if schema.allow_missing else "number"}
    properties: dict[str, Any] = {
        name: {"type": ["string", "null"], "examples": schema.vocabularies[name][:3]}
        for name in schema.categorical
    }
    properties |= {name: number for name in schema.numeric}
    return {
        "type": "object",
        "properties": properties,
        "required": schema.names,
        "additionalProperties": False,
    }


def _document_scoring(app: FastAPI, record_schema: dict[str, Any], max_batch_rows: int) -> None:
    """Add the scoring endpoints, served as plain routes, to the app's OpenAPI schema (/docs)."""
    from fastapi.openapi.utils import get_openapi

    batch_schema = {
        "type": "object",
        "properties": {"rows": {"type": "array", "items": record_schema, "maxItems": max_batch_rows}},
        "required": ["rows"],
    }
    answers = {
        "200": {"description": "purchase probability"},
        "413": {"description": "body or batch over the limit"},
        "422": {"description": "malformed JSON or a feature that does not fit the schema"},
    }

    def operation(summary: str, schema: dict[str, Any]) -> dict[str, Any]:
        body = {"required": True, "content": {JSON: {"schema": schema}}}
        return {"post": {"summary": summary, "requestBody": body, "responses": answers}}

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
            schema["paths"]["/score"] = operation("Score one customer", record_schema)
            schema["paths"]["/score/batch"] = operation("Score a batch of customers", batch_schema)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def service_metadata(scorer: TabularScorer, max_body_bytes: int, max_batch_rows: int) -> dict[str, Any]:
    """What /metadata answers: the package's metadata with the feature schema and the service's limits."""
    schema, metadata = scorer.schema, scorer.package.metadata
    features = [
        {"name": name, "kind": "categorical", "type": "string", "categories": schema.vocabularies[name]}
        for name in schema.categorical
    ] + [
        {"name": name, "kind": "numeric", "type": "number", "nullable": schema.allow_missing}
        for name in schema.numeric
    ]
    keys = (
        "model_version",
        "family",
        "dataset",
        "model_format",
        "exported_at",
        "source_checkpoint",
        "git_commit",
        "parity",
    )
    return {
        **{key: metadata.get(key) for key in keys},
        "features": features,
        "training_metrics": metadata.get("training_metrics", {}),
        "limits": {"max_body_bytes": max_body_bytes, "max_batch_rows": max_batch_rows},
    }


def create_app(
    model: str | Path | TabularScorer,
    max_body_bytes: int = 1 << 20,
    max_batch_rows: int = 1000,
    threads: int = 1,
) -> FastAPI:
    """The scoring service for an exported ONNX package (or a scorer built from one)."""
    package = model.package if isinstance(model, TabularScorer) else load_package(model)
    if package.model_format != "onnx":  # checked before the graph is loaded: TorchScript would run its code
        raise AdlabError(f"model={package.directory}: the service runs ONNX Runtime; export with format=onnx")
    scorer = model if isinstance(model, TabularScorer) else TabularScorer(package, threads)
    if max_body_bytes < 1 or max_batch_rows < 1:
        raise AdlabError(
            f"max_body_bytes={max_body_bytes}, max_batch_rows={max_batch_rows}: expected positive limits"
        )
    version = scorer.model_version
    app = FastAPI(title="adlab propensity scoring", version=version)
    app.add_middleware(BodySizeLimit, max_bytes=max_body_bytes)
    health = json.dumps({"status": "ok", "model_version": version}).encode()
    metadata = json.dumps(service_metadata(scorer, max_body_bytes, max_batch_rows)).encode()
    score_tail = f',"model_version":{json.dumps(version)}}}'.encode()

    @app.get("/health")
    async def get_health() -> Response:
        return Response(health, media_type=JSON)

    @app.get("/metadata")
    async def get_metadata() -> Response:
        return Response(metadata, media_type=JSON)

    async def score(request: Request) -> Response:
        record, error = _parse(await request.body())
        if error is not None:
            return error
        try:
            probability = scorer.score_record(record)
        except SchemaError as invalid:
            return _error(422, str(invalid), invalid.column)
        return Response(b'{"score":' + repr(probability).encode() + score_tail, media_type=JSON)

    async def score_batch(request: Request) -> Response:
        payload, error = _parse(await request.body())
        if error is not None:
            return error
        if type(payload) is not dict or set(payload) != {"rows"}:
            return _error(422, 'expected a JSON object {"rows": [{feature: value}, ...]}')
        rows = payload["rows"]
        if type(rows) is list and len(rows) > max_batch_rows:
            return _error(413, f"{len(rows)} rows in one request; at most {max_batch_rows}")
        try:
            scores = scorer.score_records(rows)
        except SchemaError as invalid:
            return _error(422, str(invalid), invalid.column)
        return Response(b'{"scores":' + json.dumps(scores.tolist()).encode() + score_tail, media_type=JSON)

    # plain Starlette routes: FastAPI's dependency solving and request wrapping cost more than
    # scoring a request; their request bodies are documented in the OpenAPI schema below instead
    app.add_route("/score", score, methods=["POST"])
    app.add_route("/score/batch", score_batch, methods=["POST"])
    _document_scoring(app, _feature_schema(scorer), max_batch_rows)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, error: Exception) -> Response:
        # a fault of the service, not of the request: logged with its traceback, answered without one
        log.exception("scoring failed on %s", request.url.path)
        return _error(500, "internal error")

    return app


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="serve")
@report_user_errors
def _hydra_main(cfg: DictConfig) -> None:
    import uvicorn

    app = create_app(cfg.model_path, int(cfg.max_body_bytes), int(cfg.max_batch_rows), int(cfg.threads))
    print(f"serving {app.version} on http://{cfg.host}:{cfg.port}", flush=True)
    uvicorn.run(app, host=cfg.host, port=int(cfg.port), log_level=cfg.log_level, access_log=False)


def main() -> None:
    """Console entry point (`adlab-serve`)."""
    register_resolvers()
    sys.argv = [sys.argv[0], *model_path_overrides(sys.argv[1:])]
    check_overrides("serve", sys.argv[1:])
    _hydra_main()


if __name__ == "__main__":
    main()
