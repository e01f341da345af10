"""A direct lane for the hot endpoints (login start, OIDC callback, SAML ACS, SCIM Users).

FastAPI's per-request work for a route is mostly generic: matching the path against every
route in turn, solving the dependency graph (the input policy, the runtime, the parameters),
two exit stacks and a second exception wrapper. For the endpoints every login or provisioning
call goes through, that was about a tenth of the server's CPU (docs/performance.md, "A thinner
web layer for the login endpoints"). This middleware sits where FastAPI's exception middleware
and router would be reached, inside RequestObserver and BodySizeLimit, and calls those
endpoints itself:

- the route is matched with the *registered* route's own path regex and method, and only when
  no route registered before it could answer the same request (checked when the app is built,
  and by tests/test_fastlane.py against the router);
- the input policy (``check_request_text``) runs first, exactly as the app-wide dependency did,
  then the endpoint function itself, with the same arguments FastAPI would have solved;
- errors go through Starlette's ExceptionMiddleware with the app's own handlers (everything but
  the 500 handler, which stays with the outer ServerErrorMiddleware, as in FastAPI's stack), so
  status codes, error bodies and pages, request ids and the refusal line are the same.

The routes stay registered with FastAPI: the OpenAPI schema lists them, and a request the lane
does not take (another method, a ``root_path``, OpenTelemetry tracing active for the request,
dependency overrides) is routed by FastAPI as before.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.convertors import StringConvertor
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, ExceptionHandler, Receive, Scope, Send

from transom.web.inputs import check_request_text

#: what the lane calls for a matched route: the request (path parameters in its scope)
Direct = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True)
class LaneRoute:
    method: str
    path: str
    regex: re.Pattern[str]
    call: Direct
    static: bool  # no path parameters: an exact string match is the regex's match


def lane_routes(app: FastAPI, direct: Mapping[Callable[..., Any], Direct]) -> list[LaneRoute]:
    """The lane's routes, from the app's registered routes for the endpoints in ``direct``.

    Refuses (at app creation, not per request) an endpoint that is not registered, or one that
    a route registered before it could shadow: the lane must only take requests the router
    would have given to that endpoint."""
    flat = _flatten(app.router.routes)
    found: list[tuple[int, LaneRoute]] = []
    for endpoint, call in direct.items():
        routes = [r for r in flat if isinstance(r, APIRoute) and r.endpoint is endpoint]
        if not routes:
            raise RuntimeError(f"fast lane: {endpoint.__qualname__} is not a registered route")
        for route in routes:
            if any(not isinstance(c, StringConvertor) for c in route.param_convertors.values()):
                raise RuntimeError(f"fast lane: {route.path}: only str path parameters are passed as matched")
            before = flat[:flat.index(route)]
            for method in sorted(route.methods or ()):
                if any(_overlaps(other, route, method) for other in before):
                    raise RuntimeError(f"fast lane: {method} {route.path} is shadowed by an earlier route")
                found.append((len(before), LaneRoute(method=method, path=route.path, regex=route.path_regex,
                                                     call=call, static=not route.param_convertors)))
    # the router's order: of two lane routes that both match, the one registered first wins
    return [lane for _, lane in sorted(found, key=lambda pair: pair[0])]


def _flatten(routes: list[Any]) -> list[Any]:
    flat: list[Any] = []
    for route in routes:
        inner = getattr(route, "original_router", None)  # FastAPI's included router
        if inner is not None:
            flat.extend(_flatten(inner.routes))
        else:
            flat.append(route)
    return flat


def _probe_path(route: APIRoute) -> str:
    return re.sub(r"\{[^}]+\}", "x", route.path)


def _overlaps(other: Any, route: APIRoute, method: str) -> bool:
    """Could the earlier route ``other`` take a request meant for ``route``? Probed both ways,
    with every path parameter filled in: ``other`` matching ``route``'s probe path, or
    ``route`` matching ``other``'s (a literal ``/login/special`` before ``/login/{id}``). Any
    route that is not an APIRoute (a mount, a plain route) counts when its path is a prefix."""
    probe = _probe_path(route)
    if isinstance(other, APIRoute):
        return method in (other.methods or ()) and bool(other.path_regex.match(probe) or route.path_regex.match(
            _probe_path(other)))
    regex = getattr(other, "path_regex", None)
    if regex is not None and regex.match(probe):
        return True
    path = getattr(other, "path", None)
    return isinstance(path, str) and (probe == path or probe.startswith(path.rstrip("/") + "/")
                                      or bool(route.path_regex.match(path)))


class FastLane:
    """Pure ASGI: ``routes`` are taken here, everything else goes on to ``app`` (FastAPI's
    exception middleware and router)."""

    def __init__(self, app: ASGIApp, *, fastapi: FastAPI, routes: list[LaneRoute]) -> None:
        self.app = app
        self.fastapi = fastapi
        self.static: dict[tuple[str, str], LaneRoute] = {}
        for route in routes:
            if route.static:
                self.static.setdefault((route.method, route.path), route)  # the first registered wins
        self.patterns = [r for r in routes if not r.static]
        # the app's handlers as FastAPI's stack splits them: 500/Exception stay outermost
        handlers: dict[Any, ExceptionHandler] = {
            key: value for key, value in fastapi.exception_handlers.items() if key not in (500, Exception)}
        self.handled = ExceptionMiddleware(self._endpoint, handlers=handlers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self._match(scope) if scope["type"] == "http" else None
        if route is None:
            await self.app(scope, receive, send)
            return
        scope.setdefault("router", self.fastapi.router)  # as the router does, for url_for
        scope["transom.lane"] = route
        await self.handled(scope, receive, send)

    def _match(self, scope: Scope) -> LaneRoute | None:
        if scope.get("root_path") or scope.get("fastapi.telemetry") is not None or self.fastapi.dependency_overrides:
            return None  # FastAPI's own routing: mounted, traced, or overridden (tests)
        method: str = scope["method"]
        path: str = scope["path"]
        route = self.static.get((method, path))
        if route is not None:
            scope["path_params"] = {}
            return route
        for route in self.patterns:
            if route.method == method:
                match = route.regex.match(path)
                if match is not None:
                    scope["path_params"] = match.groupdict()
                    return route
        return None

    async def _endpoint(self, scope: Scope, receive: Receive, send: Send) -> None:
        route: LaneRoute = scope["transom.lane"]
        request = Request(scope, receive, send)
        await check_request_text(request)  # the app-wide dependency: before anything else
        response = await route.call(request)
        await response(scope, receive, send)
