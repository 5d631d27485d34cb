"""`adlab-serve model=PATH host=127.0.0.1 port=N`: the HTTP scoring service.

FastAPI on uvicorn, ONNX Runtime underneath. Endpoints:

- `POST /score`: one JSON object `{feature: value}` -> `{"score": p, "model_version": v}`.
- `POST /score/batch`: `{"rows": [{...}, ...]}` -> `{"scores": [...], "model_version": v}`.
- `GET /health`, `GET /metadata` (model version, the features a request carries, training metrics, limits).

A record carries exactly the columns the model reads (`/metadata`'s `features`), plus optionally the
training data's row id (echoed as `id` / `ids`) and its target (ignored, named in `ignored`). Values the
training split never had (an unseen category, a number outside the train range) are scored and named in
the answer's `warnings`.

Bad input never reaches the model unchecked and never ends in a 500: a body over `max_body_bytes` (from
the Content-Length header alone when it says so) or a batch over `max_batch_rows` is a 413; a body not
declared as JSON is a 415; malformed JSON or a record that does not fit the feature schema is a 422 whose
`detail` names the feature. The per-request path parses with `json`, writes into the
scorer's preallocated row and runs a bound ONNX Runtime session on the event loop thread (scoring
takes microseconds, less than a hand-off to a worker thread would).
"""

from __future__ import annotations

import errno
import json
import logging
import socket
import sys
from pathlib import Path
from typing import Any

import hydra
import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import Response
from omegaconf import DictConfig

from adlab.cli import check_overrides, report_user_errors
from adlab.errors import AdlabError
from adlab.harness.configs import config_dir, register_resolvers
from adlab.serving.package import load_package, model_path_overrides
from adlab.serving.schema import MAX_MAGNITUDE, SchemaError
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


def _json_media_type(request: Request) -> bool:
    """Whether the request says its body is JSON (`application/json`, `application/<x>+json`)."""
    value = request.headers.get("content-type", "")
    media = value.split(";", 1)[0].strip().lower()
    return media == JSON or (media.startswith("application/") and media.endswith("+json"))


def _unsupported_media(request: Request) -> Response:
    shown = request.headers.get("content-type") or "none"
    return _error(415, f"Content-Type {shown!r}; expected {JSON} (a JSON body)")


def _feature_schema(scorer: TabularScorer) -> dict[str, Any]:
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


ERROR_SCHEMA = {
    "type": "object",
    "properties": {"detail": {"type": "string"}, "feature": {"type": "string"}},
    "required": ["detail"],
}
WARNINGS_SCHEMA = {"type": "array", "items": {"type": "string"}}


def _answer_schema(one: bool) -> dict[str, Any]:
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


def _document_scoring(app: FastAPI, record_schema: dict[str, Any], max_batch_rows: int) -> None:
    """Add the scoring endpoints, served as plain routes, to the app's OpenAPI schema (/docs)."""
    from fastapi.openapi.utils import get_openapi

    batch_schema = {
        "type": "object",
        "properties": {"rows": {"type": "array", "items": record_schema, "maxItems": max_batch_rows}},
        "required": ["rows"],
        "additionalProperties": False,
    }

    def error(description: str) -> dict[str, Any]:
        return {"description": description, "content": {JSON: {"schema": ERROR_SCHEMA}}}

    def operation(summary: str, schema: dict[str, Any], one: bool) -> dict[str, Any]:
        body = {"required": True, "content": {JSON: {"schema": schema}}}
        answers = {
            "200": {
                "description": "purchase probability; `warnings` names values training never saw",
                "content": {JSON: {"schema": _answer_schema(one)}},
            },
            "413": error("body or batch over the limit"),
            "415": error("a body that is not declared as JSON"),
            "422": error("malformed JSON or a feature that does not fit the schema"),
        }
        return {"post": {"summary": summary, "requestBody": body, "responses": answers}}

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
            schema["paths"]["/score"] = operation("Score one customer", record_schema, True)
            schema["paths"]["/score/batch"] = operation("Score a batch of customers", batch_schema, False)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


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
        # what a request carries: exactly the features the model reads, plus the optional row id (echoed)
        # and target (ignored); the training columns the model does not read are refused
        "features": features,
        "id_column": schema.id_column if schema.id_column in schema.optional else None,
        "target": schema.target if schema.target in schema.optional else None,
        "unread_features": schema.unread,
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

    schema = scorer.schema
    id_column = schema.id_column if schema.id_column in schema.optional else None
    target = schema.target if schema.target in schema.optional else None

    async def score(request: Request) -> Response:
        if not _json_media_type(request):
            return _unsupported_media(request)
        record, error = _parse(await request.body())
        if error is not None:
            return error
        try:
            probability = scorer.score_record(record)
        except SchemaError as invalid:
            return _error(422, str(invalid), invalid.column)
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
        return _json_response(200, answer)

    async def score_batch(request: Request) -> Response:
        if not _json_media_type(request):
            return _unsupported_media(request)
        payload, error = _parse(await request.body())
        if error is not None:
            return error
        if type(payload) is not dict or set(payload) != {"rows"}:
            return _error(422, 'expected a JSON object {"rows": [{feature: value}, ...]}')
        rows = payload["rows"]
        if type(rows) is list and len(rows) > max_batch_rows:
            return _error(413, f"{len(rows)} rows in one request; at most {max_batch_rows}")
        try:
            scores, warnings = scorer.score_records_with_warnings(rows)
        except SchemaError as invalid:
            return _error(422, str(invalid), invalid.column)
        answer: dict[str, Any] = {"scores": scores.tolist(), "model_version": version}
        if id_column and any(id_column in row for row in rows):
            answer["ids"] = [row.get(id_column) for row in rows]
        if target and any(target in row for row in rows):
            answer["ignored"] = [target]
        if warnings:
            answer["warnings"] = warnings
        return _json_response(200, answer)

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
    # bound before saying so: a port in use is one line, not "serving on ..." then a traceback
    listening = bind_socket(str(cfg.host), int(cfg.port))
    print(f"serving {app.version} on http://{cfg.host}:{cfg.port}", flush=True)
    config = uvicorn.Config(app, log_level=cfg.log_level, access_log=False)
    uvicorn.Server(config).run(sockets=[listening])


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on `host:port`; `AdlabError` naming them when the port is taken or the
    address is not this machine's."""
    if not 0 <= port <= 65535:
        raise AdlabError(f"port={port}: expected a port number from 0 to 65535")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise AdlabError(f"host={host}: not a known address ({error.strerror})") from None
    family, kind, protocol, _, address = infos[0]
    listening = socket.socket(family, kind, protocol)
    listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listening.bind(address)
        listening.listen(2048)
    except OSError as error:
        listening.close()
        reason = "already in use" if error.errno == errno.EADDRINUSE else error.strerror
        raise AdlabError(
            f"port={port}: cannot listen on {host}:{port} ({reason}); choose another port=N"
        ) from None
    listening.set_inheritable(True)
    return listening


def main() -> None:
    """Console entry point (`adlab-serve`)."""
    register_resolvers()
    sys.argv = [sys.argv[0], *model_path_overrides(sys.argv[1:])]
    check_overrides("serve", sys.argv[1:])
    _hydra_main()


if __name__ == "__main__":
    main()
