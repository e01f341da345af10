"""Operator endpoints: ``/metrics``, the offline API docs (``/docs``) and the connector
self-check of the admin API (docs/operations.md)."""

from __future__ import annotations

import hmac
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from transom import metrics
from transom.errors import NotFound, Unauthorized
from transom.models import Account
from transom.probe import probe_connector
from transom.web.deps import AdminAuth, DbSession, RuntimeDep, bearer_token

router = APIRouter()
DOCS_ASSETS = "/docs/assets"


@router.get("/metrics", include_in_schema=False)
async def metrics_endpoint(request: Request, runtime: RuntimeDep) -> Response:
    server = runtime.config.server
    if not server.metrics_enabled:
        raise NotFound("metrics are off (server.metrics_enabled = false)")
    if server.metrics_token is not None:
        sent = bearer_token(request) if request.headers.get("authorization") else ""
        if not hmac.compare_digest(sent.encode(), server.metrics_token.get_secret_value().encode()):
            raise Unauthorized("send Authorization: Bearer <server.metrics_token>")
    # merging the workers' files reads the disk: keep it off the event loop
    body = await run_in_threadpool(metrics.render)
    return Response(body, media_type=metrics.CONTENT_TYPE)


@router.get("/api/admin/connectors/{connector_id}/check", tags=["admin"],
            summary="Probe a connector's IdP (discovery, keys, metadata, certificates, clock)")
def connector_check(connector_id: str, runtime: RuntimeDep, admin: AdminAuth, db: DbSession) -> dict[str, Any]:
    """The same check as ``transom check-config --probe``, for one connector of the caller's
    account. Answers 200 whether or not the IdP is healthy: read ``ok`` and ``checks``."""
    account_name = db.scalar(select(Account.name).where(Account.id == admin.account_id))
    connector = runtime.config.connectors.get(connector_id)
    if connector is None or connector.account != account_name:  # another account's connector does not exist
        raise NotFound(f"no connector '{connector_id}' in this account")
    probe = probe_connector(runtime.plugins, runtime.http, connector,
                            clock_skew_seconds=runtime.config.server.clock_skew_seconds)
    return probe.as_json()


def install_docs(app: FastAPI) -> None:
    """Swagger UI 5 (it reads OpenAPI 3.1, which FastAPI writes) from the swagger-ui-py
    package's static files, served by Transom: no CDN."""
    from importlib.resources import files

    assets = Path(str(files("swagger_ui") / "static"))
    app.mount(DOCS_ASSETS, StaticFiles(directory=assets), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json", title="Transom API",
            swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_ASSETS}/favicon-32x32.png",
        )
