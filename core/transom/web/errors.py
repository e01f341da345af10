"""Turning errors into answers: JSON for API clients, a page for browsers. Never a stack
trace; unexpected exceptions are logged with their type and answered with a generic 500."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from transom.errors import TransomError, Unauthorized
from transom.web.templates import templates

log = logging.getLogger("transom.web")


def wants_html(request: Request) -> bool:
    if request.url.path.startswith(("/api/scim", "/api/admin", "/api/me")):
        return False
    accept = request.headers.get("accept", "")
    return "text/html" in accept and "application/json" not in accept


def error_response(request: Request, *, status: int, code: str, message: str, hint: str | None) -> Response:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    if wants_html(request):
        return templates.TemplateResponse(
            request,
            "error.html",
            # code and UTC time let an IdP admin find the matching log line
            {"status": status, "message": message, "hint": hint, "code": code,
             "when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")},
            status_code=status,
            headers=headers,
        )
    body: dict[str, object] = {"error": code, "detail": message}
    if hint:
        body["hint"] = hint
    return JSONResponse(body, status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(TransomError)
    async def _transom(request: Request, exc: TransomError) -> Response:
        if exc.status >= 500:
            log.warning("%s %s -> %s %s", request.method, request.url.path, exc.status, exc.message)
        return error_response(request, status=exc.status, code=exc.code, message=exc.message, hint=exc.hint)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return error_response(
            request, status=400, code="bad_request", message=f"invalid request: {where}: {first.get('msg', '')}",
            hint=None,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        return error_response(request, status=exc.status_code, code="http_error", message=str(exc.detail), hint=None)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.error("unexpected %s on %s %s", type(exc).__name__, request.method, request.url.path, exc_info=exc)
        return error_response(request, status=500, code="internal", message="internal error", hint=None)


__all__ = ["Unauthorized", "error_response", "install_error_handlers", "wants_html"]
