"""SCIM 2.0 endpoints at ``/api/scim/v2`` and ``/api/scim`` (the same routes twice; Okta and
Entra admins paste either). Everything answers ``application/scim+json``; every error is a
SCIM Error (RFC 7644 §3.12) with ``status`` as a string, including 401/404/405/413/500.

Handlers are ``async`` only to read the body; the database work runs in the thread pool,
one transaction per request (token check included), rolled back on any error.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from transom import throttle
from transom.db import unavailable_error
from transom.directory import authenticate_account_token
from transom.errors import Forbidden, NotFound, NotImplementedByHost, TransomError, Unauthorized
from transom.observe import refused
from transom.runtime import Runtime
from transom.scim import discovery, service
from transom.scim.body import check_scim_text, parse_json_object
from transom.scim.dialects import normalize
from transom.scim.errors import InvalidValue, error_body
from transom.scim.filter import parse_filter
from transom.scim.resource import etag, project, render
from transom.scim.schema import LIST_RESPONSE, SEARCH_REQUEST
from transom.scim.service import Caller
from transom.web.deps import bearer_token
from transom.web.fastlane import Direct

log = logging.getLogger("transom.scim")

MEDIA_TYPE = "application/scim+json"
MAX_RESULTS = 200
PREFIXES = ("/api/scim/v2", "/api/scim")
GROUPS_UNSUPPORTED = (
    "Transom does not support group provisioning. Disable it in the IdP app (Entra ID: "
    "Provisioning > Mappings > 'Provision Microsoft Entra ID Groups' > Enabled: No; Okta: "
    "leave 'Push Groups' off) and map IdP groups to Transom groups with group sync at login."
)
AUTH_DETAIL = "authentication required: send 'Authorization: Bearer <API token with the manage-users permission>'"


class ScimResponse(JSONResponse):
    media_type = MEDIA_TYPE


def scim_error(status: int, detail: str, code: str | None = None, *, reason: str | None = None,
               retry_after: int | None = None) -> Response:
    headers = {"WWW-Authenticate": 'Bearer realm="transom-scim"'} if status == 401 else {}
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    return ScimResponse(error_body(status=status, detail=detail, code=code, reason=reason), status_code=status,
                        headers=headers)


Work = Callable[["Context"], Response]


class Context:
    """What a handler needs: the transaction, the caller and the request's pieces."""

    def __init__(self, request: Request, db: Session, caller: Caller, body: dict[str, Any] | None) -> None:
        self.request = request
        self.db = db
        self.caller = caller
        self.body = body
        self.runtime: Runtime = request.app.state.runtime
        self.query = {k.lower(): v for k, v in request.query_params.items()}
        path = request.url.path
        prefix = PREFIXES[0] if path.lower().startswith(PREFIXES[0].lower() + "/") else PREFIXES[1]
        self.base = self.runtime.config.server.base_url.rstrip("/") + prefix

    def location(self, user_id: str) -> str:
        return f"{self.base}/Users/{user_id}"

    def normalized(self, resource_type: str, operation: str) -> dict[str, Any]:
        assert self.body is not None
        return normalize(self.runtime, account_name=self.caller.account.name, resource_type=resource_type,
                         operation=operation, body=self.body, headers=self.request.headers)


async def _handle(request: Request, work: Work, *, with_body: bool = False) -> Response:
    try:
        raw = await request.body() if with_body else b""
        return await run_in_threadpool(_in_transaction, request, work, raw if with_body else None)
    except Unauthorized as exc:
        refused(method=request.method, path=request.url.path, status=401, code=exc.code, reason=exc.message)
        return scim_error(401, AUTH_DETAIL)
    except TransomError as exc:
        return _transom_error(request, exc)
    except SQLAlchemyError as exc:
        down = unavailable_error(exc)
        if down is not None:
            return _transom_error(request, down)
        log.error("SCIM %s %s: unexpected %s", request.method, request.url.path, type(exc).__name__, exc_info=exc)
        return scim_error(500, "internal error")
    except Exception as exc:
        log.error("SCIM %s %s: unexpected %s", request.method, request.url.path, type(exc).__name__, exc_info=exc)
        return scim_error(500, "internal error")


def _transom_error(request: Request, exc: TransomError) -> Response:
    refused(method=request.method, path=request.url.path, status=exc.status, code=exc.reason or exc.code,
            reason=exc.message, detail=exc.log_detail)
    return scim_error(exc.status, exc.message, exc.code, reason=exc.reason, retry_after=exc.retry_after)


def _in_transaction(request: Request, work: Work, raw: bytes | None) -> Response:
    runtime: Runtime = request.app.state.runtime
    # its own transaction, before anything else: a request that fails still counts
    throttle.api_request(runtime.db, runtime.config.server, credential=request.headers.get("authorization", ""))
    body = parse_json_object(raw) if raw is not None else None
    if body is not None:
        check_scim_text(body)
    with runtime.db.transaction() as db:  # on SQLite, queued on the process's writer lock
        token_name, account = authenticate_account_token(db, token=bearer_token(request), permission="manage-users")
        return work(Context(request, db, Caller(account=account, actor=f"scim:{token_name}"), body))


# -- parameters -------------------------------------------------------------------------


def _int_param(raw: str | None, name: str) -> int | None:
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise InvalidValue(f"{name} must be an integer") from None


def _list_param(raw: Any) -> list[str]:
    if raw is None:
        return []
    items = raw if isinstance(raw, list) else str(raw).split(",")
    return [str(i).strip() for i in items if str(i).strip()]


def _resource_response(ctx: Context, user: Any, *, status: int = 200) -> Response:
    resource = project(render(user, location=ctx.location(user.id)),
                       include=_list_param(ctx.query.get("attributes")),
                       exclude=_list_param(ctx.query.get("excludedattributes")))
    headers = {"ETag": etag(user)}
    if status == 201:
        headers["Location"] = ctx.location(user.id)
    return ScimResponse(resource, status_code=status, headers=headers)


def _search(ctx: Context, params: dict[str, Any]) -> Response:
    raw_filter = params.get("filter")
    flt = parse_filter(str(raw_filter)) if raw_filter not in (None, "") else None
    start = _int_param(None if params.get("startindex") is None else str(params["startindex"]), "startIndex") or 1
    start = max(start, 1)
    requested = _int_param(None if params.get("count") is None else str(params["count"]), "count")
    count = MAX_RESULTS if requested is None else min(max(requested, 0), MAX_RESULTS)
    order = str(params.get("sortorder") or "ascending").lower()
    if order not in ("ascending", "descending"):
        raise InvalidValue("sortOrder must be ascending or descending")
    sort_by = params.get("sortby")
    total, users = service.list_users(
        ctx.db, ctx.caller, flt=flt, start_index=min(start, 2**62), count=count,
        sort_by=str(sort_by) if sort_by else None, descending=order == "descending",
    )
    include, exclude = _list_param(params.get("attributes")), _list_param(params.get("excludedattributes"))
    resources = [project(render(u, location=ctx.location(u.id)), include=include, exclude=exclude) for u in users]
    return ScimResponse({
        "schemas": [LIST_RESPONSE], "totalResults": total, "startIndex": start,
        "itemsPerPage": len(resources), "Resources": resources,
    })


# -- Users ------------------------------------------------------------------------------


async def list_users(request: Request) -> Response:
    return await _handle(request, lambda ctx: _search(ctx, ctx.query))


async def search_users(request: Request) -> Response:
    def work(ctx: Context) -> Response:
        assert ctx.body is not None
        params = {k.lower(): v for k, v in ctx.body.items() if k.lower() != "schemas"}
        schemas = ctx.body.get("schemas")
        if schemas is not None and SEARCH_REQUEST not in (schemas if isinstance(schemas, list) else [schemas]):
            raise InvalidValue(f"a search request lists the schema {SEARCH_REQUEST}")
        return _search(ctx, params)

    return await _handle(request, work, with_body=True)


async def create_user(request: Request) -> Response:
    def work(ctx: Context) -> Response:
        user = service.create_user(ctx.db, ctx.caller, ctx.normalized("User", "create"))
        return _resource_response(ctx, user, status=201)

    return await _handle(request, work, with_body=True)


async def get_user(request: Request) -> Response:
    user_id = request.path_params["user_id"]

    def work(ctx: Context) -> Response:
        user = service.get_user(ctx.db, ctx.caller, user_id)
        if_none = request.headers.get("if-none-match")
        if if_none and etag(user) in {t.strip() for t in if_none.split(",")}:
            return Response(status_code=304, headers={"ETag": etag(user)})
        return _resource_response(ctx, user)

    return await _handle(request, work)


async def replace_user(request: Request) -> Response:
    user_id = request.path_params["user_id"]

    def work(ctx: Context) -> Response:
        user = service.get_user(ctx.db, ctx.caller, user_id)
        service.check_if_match(user, request.headers.get("if-match"))
        service.replace_user(ctx.db, ctx.caller, user, ctx.normalized("User", "replace"))
        ctx.db.flush()
        return _resource_response(ctx, user)

    return await _handle(request, work, with_body=True)


async def patch_user(request: Request) -> Response:
    user_id = request.path_params["user_id"]

    def work(ctx: Context) -> Response:
        user = service.get_user(ctx.db, ctx.caller, user_id)
        service.check_if_match(user, request.headers.get("if-match"))
        service.patch_user(ctx.db, ctx.caller, user, ctx.normalized("User", "patch"))
        ctx.db.flush()
        return _resource_response(ctx, user)

    return await _handle(request, work, with_body=True)


async def delete_user(request: Request) -> Response:
    user_id = request.path_params["user_id"]

    def work(ctx: Context) -> Response:
        user = service.get_user(ctx.db, ctx.caller, user_id)
        service.check_if_match(user, request.headers.get("if-match"))
        service.delete_user(ctx.db, ctx.caller, user)
        return Response(status_code=204)

    return await _handle(request, work)


#: the endpoints web/fastlane.py calls directly (they take the request and nothing else): the
#: Users endpoints an IdP's provisioning cycle calls (list with a filter, create, read,
#: replace, patch, delete, search)
DIRECT: dict[Callable[..., Any], Direct] = {
    endpoint: endpoint for endpoint in (list_users, search_users, create_user, get_user, replace_user, patch_user,
                                        delete_user)}


# -- Groups (not provisioned) -----------------------------------------------------------


async def list_groups(request: Request) -> Response:
    def work(ctx: Context) -> Response:
        start = max(_int_param(ctx.query.get("startindex"), "startIndex") or 1, 1)
        if ctx.query.get("filter"):
            parse_filter(ctx.query["filter"])  # a malformed filter is still a 400
        return ScimResponse({"schemas": [LIST_RESPONSE], "totalResults": 0, "startIndex": start,
                             "itemsPerPage": 0, "Resources": []})

    return await _handle(request, work)


async def get_group(request: Request) -> Response:
    group_id = request.path_params["group_id"]

    def work(_ctx: Context) -> Response:
        raise NotFound(f"Group {group_id[:64]} not found (Transom does not provision groups)")

    return await _handle(request, work)


async def group_write(request: Request) -> Response:
    def work(_ctx: Context) -> Response:
        raise NotImplementedByHost(GROUPS_UNSUPPORTED)

    return await _handle(request, work)


async def root_search(request: Request) -> Response:
    """``POST /.search`` over every resource type: Users is the only one served."""
    return await search_users(request)


# -- discovery --------------------------------------------------------------------------


def _discovery(build: Callable[[Context], Any]) -> Callable[[Request], Any]:
    async def endpoint(request: Request) -> Response:
        def work(ctx: Context) -> Response:
            if "filter" in ctx.query:
                raise Forbidden("filtering is not supported on discovery endpoints")
            return ScimResponse(build(ctx))

        return await _handle(request, work)

    return endpoint


def _by_id(lookup: Callable[[Context, str], Any], param: str) -> Callable[[Request], Any]:
    async def endpoint(request: Request) -> Response:
        key = request.path_params[param]
        return await _handle(request, lambda ctx: ScimResponse(lookup(ctx, key)))

    return endpoint


# -- routing ----------------------------------------------------------------------------

router = APIRouter(include_in_schema=False)

_ROUTES: list[tuple[str, Callable[[Request], Any], list[str]]] = [
    ("/ServiceProviderConfig", _discovery(lambda ctx: discovery.service_provider_config(ctx.base)), ["GET"]),
    ("/ResourceTypes", _discovery(lambda ctx: discovery.resource_types(ctx.base)), ["GET"]),
    ("/ResourceTypes/{type_id}", _by_id(lambda ctx, key: discovery.resource_type(ctx.base, key), "type_id"), ["GET"]),
    ("/Schemas", _discovery(lambda ctx: discovery.schemas(ctx.base)), ["GET"]),
    ("/Schemas/{schema_id}", _by_id(lambda ctx, key: discovery.schema(ctx.base, key), "schema_id"), ["GET"]),
    ("/Users/.search", search_users, ["POST"]),
    ("/Users", list_users, ["GET"]),
    ("/Users", create_user, ["POST"]),
    ("/Users/{user_id}", get_user, ["GET"]),
    ("/Users/{user_id}", replace_user, ["PUT"]),
    ("/Users/{user_id}", patch_user, ["PATCH"]),
    ("/Users/{user_id}", delete_user, ["DELETE"]),
    ("/Groups", list_groups, ["GET"]),
    ("/Groups", group_write, ["POST"]),
    ("/Groups/.search", group_write, ["POST"]),
    ("/Groups/{group_id}", get_group, ["GET"]),
    ("/Groups/{group_id}", group_write, ["PUT", "PATCH", "DELETE"]),
    ("/.search", root_search, ["POST"]),
]

for _prefix in PREFIXES:
    for _path, _endpoint, _methods in _ROUTES:
        # Microsoft's test collection uses lower-case endpoints (/users); accept both spellings
        for _variant in dict.fromkeys((_path, _path.lower() if "{" not in _path else _path)):
            router.add_api_route(_prefix + _variant, _endpoint, methods=_methods)
    router.add_api_route(_prefix + "/users/{user_id}", get_user, methods=["GET"])
    router.add_api_route(_prefix + "/users/{user_id}", patch_user, methods=["PATCH"])
    router.add_api_route(_prefix + "/users/{user_id}", replace_user, methods=["PUT"])
    router.add_api_route(_prefix + "/users/{user_id}", delete_user, methods=["DELETE"])

_KNOWN = [re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", re.escape(p).replace(r"\{", "{").replace(r"\}", "}")) + "/?$",
                     re.IGNORECASE) for p, _, _ in _ROUTES]


async def fallback(request: Request) -> Response:
    """Unknown SCIM URLs answer a SCIM 404, known URLs with the wrong method a SCIM 405."""
    rest = request.url.path
    for prefix in PREFIXES:
        if rest.lower().startswith(prefix.lower()):
            rest = rest[len(prefix):]
            break
    if any(p.match(rest) for p in _KNOWN):
        return scim_error(405, f"{request.method} is not allowed on this endpoint")
    return scim_error(404, "no such SCIM endpoint")


router.add_api_route("/api/scim/{rest:path}", fallback,
                     methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"])
router.add_api_route("/api/scim", fallback, methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
