"""What every kind of package shares in `adlab-serve`: the kind registry, JSON bodies, errors, the OpenAPI.

`create_app` (serving/app.py) serves a package by the kind of data its `preprocessing.json` names
(`"kind": "tabular"`, `"interactions"`, ...). A kind registers its routes by being a module
`adlab.serving.routes_<kind>` that defines

    def add_routes(app: FastAPI, package: ModelPackage, settings: ServiceSettings,
                   scorer: Any | None = None) -> KindService: ...

`add_routes` builds its scorer from `package` (or takes the one the caller passed as `scorer`), adds its
endpoints to `app` (plain Starlette routes: `app.add_route(path, handler, methods=["POST"])`) and returns a
`KindService`: the service's title, the model version, what `GET /metadata` answers, and the OpenAPI path
items of its endpoints (they are plain routes, so FastAPI cannot document their bodies itself). Nothing
else is edited to add a kind: `create_app` imports the module by name, and serves `/health`,
`/metadata`, the body size limit (413), the OpenAPI schema and the 500 handler for every kind.

A handler reads its body with `read_json(request)` (415 for a body not declared as JSON, 422 for one that
is not JSON) and answers with `json_response` / `error`; a request that does not fit is a 4xx whose
`detail` is one line naming what was wrong, never a 500. `operation(...)` writes a documented POST.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from fastapi import Request
from fastapi.responses import Response

from adlab.serving.package import ModelPackage, kind_module

JSON = "application/json"
KIND_MODULE_PREFIX = "routes_"  # serving/routes_<kind>.py


@dataclass(frozen=True)
class ServiceSettings:
    """The service's limits, the same for every kind.

    Attributes:
        max_body_bytes: largest request body (413 above it).
        max_batch_rows: most records in one batch request (413 above it).
        threads: graph runtime threads per scorer (1: a request stays on one core).
    """

    max_body_bytes: int = 1 << 20
    max_batch_rows: int = 1000
    threads: int = 1

    @property
    def limits(self) -> dict[str, int]:
        """The limits as `/metadata` states them."""
        return {"max_body_bytes": self.max_body_bytes, "max_batch_rows": self.max_batch_rows}


@dataclass
class KindService:
    """What a kind's `add_routes` returns.

    Attributes:
        title: the service's title (OpenAPI, /docs).
        model_version: the package's model version (answered by /health).
        metadata: what `GET /metadata` answers (JSON-serialisable).
        paths: OpenAPI path items of the kind's plain routes, `{"/path": {"post": {...}}}`.
    """

    title: str
    model_version: str
    metadata: dict[str, Any]
    paths: dict[str, dict[str, Any]] = field(default_factory=dict)


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


def kind_routes(package: ModelPackage, what: str = "model") -> ModuleType:
    """The routes module of the package's kind; `AdlabError` naming the package when no module serves it."""
    return kind_module(package, KIND_MODULE_PREFIX, "adlab-serve", what)


def package_facts(package: ModelPackage) -> dict[str, Any]:
    """The package metadata every kind's /metadata repeats (version, family, data set, provenance)."""
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
    return {key: package.metadata.get(key) for key in keys}


def json_response(status: int, payload: dict[str, Any]) -> Response:
    """A JSON answer."""
    return Response(json.dumps(payload).encode(), status_code=status, media_type=JSON)


def error(status: int, detail: str, column: str | None = None) -> Response:
    """A 4xx/5xx answer `{"detail": ..., ["feature": column]}`."""
    payload: dict[str, Any] = {"detail": detail}
    if column is not None:
        payload["feature"] = column
    return json_response(status, payload)


def parse_json(body: bytes) -> tuple[Any, Response | None]:
    """The body as JSON, or a 422 answer saying why it is not."""
    if not body:
        return None, error(422, "empty body; expected JSON")
    try:
        return json.loads(body), None
    except RecursionError:
        return None, error(422, "body is not acceptable JSON (nested too deeply)")
    except ValueError as invalid:  # JSONDecodeError and UnicodeDecodeError
        return None, error(422, f"body is not valid JSON ({invalid})")


def json_media_type(request: Request) -> bool:
    """Whether the request says its body is JSON (`application/json`, `application/<x>+json`)."""
    value = request.headers.get("content-type", "")
    media = value.split(";", 1)[0].strip().lower()
    return media == JSON or (media.startswith("application/") and media.endswith("+json"))


def unsupported_media(request: Request) -> Response:
    """The 415 answer to a body not declared as JSON."""
    shown = request.headers.get("content-type") or "none"
    return error(415, f"Content-Type {shown!r}; expected {JSON} (a JSON body)")


async def read_json(request: Request) -> tuple[Any, Response | None]:
    """The request's JSON body, or the 415/422 answer to send instead."""
    if not json_media_type(request):
        return None, unsupported_media(request)
    return parse_json(await request.body())


ERROR_SCHEMA = {
    "type": "object",
    "properties": {"detail": {"type": "string"}, "feature": {"type": "string"}},
    "required": ["detail"],
}


def error_doc(description: str) -> dict[str, Any]:
    """An OpenAPI response of an error answer."""
    return {"description": description, "content": {JSON: {"schema": ERROR_SCHEMA}}}


def operation(
    summary: str, body: dict[str, Any], answer: dict[str, Any], described: str, refusals: dict[str, str]
) -> dict[str, Any]:
    """The OpenAPI path item of a JSON POST: its body schema, its 200 answer (`described`) and the
    error statuses it may answer (`refusals`: status -> when)."""
    answers = {"200": {"description": described, "content": {JSON: {"schema": answer}}}}
    answers |= {status: error_doc(when) for status, when in refusals.items()}
    request_body = {"required": True, "content": {JSON: {"schema": body}}}
    return {"post": {"summary": summary, "requestBody": request_body, "responses": answers}}
