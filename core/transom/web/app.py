"""The FastAPI application factory."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy import text

from transom.errors import ConfigError
from transom.runtime import Runtime
from transom.scim import router as scim_router
from transom.web import account_routes, admin_api, admin_routes, console, ops_routes, saml_routes, sso_routes
from transom.web.errors import install_error_handlers
from transom.web.fastlane import FastLane, lane_routes
from transom.web.inputs import check_request_text
from transom.web.limits import BodySizeLimit
from transom.web.observe import RequestObserver
from transom.web.openapi import install_openapi

log = logging.getLogger("transom.web")


def create_app(runtime: Runtime, *, extra_routers: Sequence[APIRouter] = ()) -> FastAPI:
    """The host app. ``extra_routers`` are mounted as well: ``transom demo`` passes the
    development IdP's router here; a normal ``serve`` never does."""
    if runtime.config.server.session_secret is None:
        raise ConfigError(
            "server.session_secret: not set; use session_secret = { env = \"TRANSOM_SESSION_SECRET\" } "
            "with a random value of at least 32 characters"
        )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield

    # the input policy runs before every endpoint and its other dependencies (docs/security.md)
    # /docs is served below from local assets; ReDoc would load its script from a CDN
    app = FastAPI(title="Transom", version=_version(), lifespan=lifespan, docs_url=None, redoc_url=None,
                  dependencies=[Depends(check_request_text)])
    app.state.runtime = runtime
    install_error_handlers(app)

    @app.get("/healthz")
    def healthz() -> Any:
        try:
            with runtime.db.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception as exc:
            log.warning("health check: database unreachable: %s", type(exc).__name__)
            return JSONResponse({"status": "error", "database": "unreachable"}, status_code=503)
        return {"status": "ok", "database": "ok"}

    app.include_router(account_routes.router)
    for router in (sso_routes.router, saml_routes.router, admin_routes.router, admin_api.router, console.router,
                   scim_router.router, ops_routes.router):
        app.include_router(router)
    for router in extra_routers:
        app.include_router(router)
    @app.exception_handler(console.SignInRequired)
    async def _sign_in(_request: Request, exc: console.SignInRequired) -> Response:
        return console.sign_in_redirect(exc.next_path)

    ops_routes.install_docs(app)
    install_openapi(app)
    # innermost of ours: the hot endpoints without FastAPI's routing and dependency solving
    app.add_middleware(FastLane, fastapi=app, routes=lane_routes(app, {
        **sso_routes.DIRECT, **saml_routes.DIRECT, **scim_router.DIRECT}))
    app.add_middleware(BodySizeLimit, max_bytes=runtime.config.server.max_request_bytes)
    # added last, so outermost: the request id is set before anything else runs
    app.add_middleware(RequestObserver)
    return app


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("transom")
    except PackageNotFoundError:
        return "0"
