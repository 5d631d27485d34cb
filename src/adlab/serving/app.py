"""`adlab-serve model=PATH host=127.0.0.1 port=N`: the HTTP service of an exported package.

FastAPI on uvicorn, ONNX Runtime underneath. Every package gets `GET /health` and `GET /metadata`; its
other endpoints depend on the kind of data its `preprocessing.json` names, each kind in its own module
`serving/routes_<kind>.py` (how a kind registers its routes: serving/routes.py):

- `tabular` (propensity scorers): `POST /score`, `POST /score/batch` (serving/routes_tabular.py);
- `interactions` (recommenders): `POST /recommend`, `POST /similar` (serving/routes_interactions.py);
- `transactions` (customer value and segments): `POST /score` with customers' purchase lines
  (serving/routes_transactions.py);
- every other kind: the docstring of its serving/routes_<kind>.py.

Bad input never reaches a model unchecked and never ends in a 500: a body over `max_body_bytes` (from
the Content-Length header alone when it says so) is a 413; a body not declared as JSON is a 415;
malformed JSON or a request that does not fit the kind's schema is a 422 whose `detail` names the input.
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
from fastapi import FastAPI, Request
from fastapi.responses import Response
from omegaconf import DictConfig

from adlab.cli import check_overrides, report_user_errors
from adlab.errors import AdlabError
from adlab.harness.configs import config_dir, register_resolvers
from adlab.serving.package import ModelPackage, load_package, model_path_overrides
from adlab.serving.routes import JSON, BodySizeLimit, KindService, ServiceSettings, error, kind_routes

__all__ = ["BodySizeLimit", "bind_socket", "create_app", "main"]
log = logging.getLogger(__name__)


def _document(app: FastAPI, paths: dict[str, dict[str, Any]]) -> None:
    """Add a kind's plain routes (`paths`: OpenAPI path items) to the app's OpenAPI schema (/docs)."""
    from fastapi.openapi.utils import get_openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
            schema["paths"] |= paths
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _serve_common(app: FastAPI, service: KindService) -> None:
    """/health, /metadata, the OpenAPI of the kind's routes and the 500 handler, for every kind."""
    app.title, app.version = service.title, service.model_version
    health = json.dumps({"status": "ok", "model_version": service.model_version}).encode()
    metadata = json.dumps(service.metadata).encode()

    @app.get("/health")
    async def get_health() -> Response:
        return Response(health, media_type=JSON)

    @app.get("/metadata")
    async def get_metadata() -> Response:
        return Response(metadata, media_type=JSON)

    _document(app, service.paths)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, failure: Exception) -> Response:
        # a fault of the service, not of the request: logged with its traceback, answered without one
        log.exception("scoring failed on %s", request.url.path)
        return error(500, "internal error")


def create_app(
    model: str | Path | Any,
    max_body_bytes: int = 1 << 20,
    max_batch_rows: int = 1000,
    threads: int = 1,
) -> FastAPI:
    """The service for an exported ONNX package directory, or for a scorer built from one (an object with
    a `package` attribute, e.g. a `TabularScorer`), routed by the package's kind of data."""
    scorer = model if isinstance(getattr(model, "package", None), ModelPackage) else None
    package = scorer.package if scorer is not None else load_package(model)
    if package.model_format != "onnx":  # checked before the graph is loaded: TorchScript would run its code
        raise AdlabError(f"model={package.directory}: the service runs ONNX Runtime; export with format=onnx")
    if max_body_bytes < 1 or max_batch_rows < 1:
        raise AdlabError(
            f"max_body_bytes={max_body_bytes}, max_batch_rows={max_batch_rows}: expected positive limits"
        )
    routes = kind_routes(package)
    settings = ServiceSettings(max_body_bytes, max_batch_rows, threads)
    app = FastAPI()
    app.add_middleware(BodySizeLimit, max_bytes=max_body_bytes)
    _serve_common(app, routes.add_routes(app, package, settings, scorer))
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
