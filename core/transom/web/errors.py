"""Turning errors into answers: JSON for API clients, the SCIM Error schema under
``/api/scim``, a page for browsers. Never a stack trace; unexpected exceptions are logged
with their type and answered with a generic 500. A database outage is a 503 with
``Retry-After`` and one log line (the refusal line, transom.observe), not a traceback."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException

from transom.db import unavailable_error
from transom.errors import TransomError, Unauthorized
from transom.observe import current_request_id, refused
from transom.scim.errors import error_body
from transom.web.templates import templates

log = logging.getLogger("transom.web")

SCIM_PREFIX = "/api/scim"
SCIM_MEDIA_TYPE = "application/scim+json"


def wants_html(request: Request) -> bool:
    if request.url.path.startswith(("/api/scim", "/api/admin", "/api/me")):
        return False
    accept = request.headers.get("accept", "")
    return "text/html" in accept and "application/json" not in accept


def error_response(request: Request, *, status: int, code: str, message: str, hint: str | None,
                   reason: str | None = None, retry_after: int | None = None) -> Response:
    headers: dict[str, str] = {}
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    request_id = current_request_id()
    if request_id:
        headers["X-Request-ID"] = request_id
    if request.url.path.startswith(SCIM_PREFIX):
        if status == 401:
            headers["WWW-Authenticate"] = 'Bearer realm="transom-scim"'
        return JSONResponse(error_body(status=status, detail=message, code=code, reason=reason),
                            status_code=status, headers=headers, media_type=SCIM_MEDIA_TYPE)
    if wants_html(request):
        return templates.TemplateResponse(
            request,
            "error.html",
            # code and UTC time let an IdP admin find the matching log line
            {"status": status, "message": message, "hint": hint, "code": reason or code, "request_id": request_id,
             "when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")},
            status_code=status,
            headers=headers,
        )
    body: dict[str, object] = {"error": code, "detail": message}
    if reason:
        body["reason"] = reason
    if hint:
        body["hint"] = hint
    return JSONResponse(body, status_code=status, headers=headers)


def transom_error_response(request: Request, exc: TransomError) -> Response:
    return error_response(request, status=exc.status, code=exc.code, message=exc.message, hint=exc.hint,
                          reason=exc.reason, retry_after=exc.retry_after)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(TransomError)
    async def _transom(request: Request, exc: TransomError) -> Response:
        refused(method=request.method, path=request.url.path, status=exc.status, code=exc.reason or exc.code,
                reason=f"{exc.message} | hint: {exc.hint}" if exc.hint else exc.message, detail=exc.log_detail)
        return transom_error_response(request, exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        refused(method=request.method, path=request.url.path, status=400, code="bad_request",
                reason=f"invalid request: {where}: {first.get('msg', '')}")
        return error_response(
            request, status=400, code="bad_request", message=f"invalid request: {where}: {first.get('msg', '')}",
            hint=None,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code != 404:  # unknown URLs are the access line's business
            refused(method=request.method, path=request.url.path, status=exc.status_code, code="http_error",
                    reason=str(exc.detail))
        return error_response(request, status=exc.status_code, code="http_error", message=str(exc.detail), hint=None)

    @app.exception_handler(SQLAlchemyError)
    async def _database(request: Request, exc: SQLAlchemyError) -> Response:
        down = unavailable_error(exc)
        if down is None:
            return await _unexpected(request, exc)
        return await _transom(request, down)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.error("unexpected %s on %s %s", type(exc).__name__, request.method, request.url.path, exc_info=exc)
        return error_response(request, status=500, code="internal", message="internal error", hint=None)


__all__ = ["Unauthorized", "error_response", "install_error_handlers", "transom_error_response", "wants_html"]
