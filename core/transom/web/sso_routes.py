"""SSO entry points: starting a login at the IdP and the OIDC callback.

Each route is HTTP -> verify -> complete -> response: the protocol checks live in
``transom.oidc`` / ``transom.saml``, everything after them in :func:`transom.login.complete_login`
(docs/architecture.md, "The login pipeline").
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from transom import login_activity
from transom.errors import BadRequest
from transom.login import complete_login
from transom.loginstate import BINDING_COOKIE, browser_binding
from transom.oidc.endpoints import CALLBACK_PATH
from transom.oidc.start import start_oidc_login
from transom.oidc.verify import CallbackParams, read_callback_params, verify_oidc
from transom.runtime import Runtime
from transom.saml.request import start_saml_login
from transom.web.account_routes import session_redirect
from transom.web.deps import RuntimeDep, runtime_of
from transom.web.fastlane import Direct
from transom.web.paths import safe_next

router = APIRouter()


@router.get("/api/accounts/login/{connector_id}")
def start_login(connector_id: str, request: Request, runtime: RuntimeDep, next: str | None = None) -> Response:
    """Start SSO: store state/nonce/PKCE verifier (or the SAML request id) and send the browser
    to the IdP."""
    connector = runtime.connector(connector_id)
    next_path = safe_next(next) if next else None
    # The location is filled in once the state exists; the binding cookie goes on this response.
    response = RedirectResponse("/", status_code=303)
    binding = browser_binding(request, response, runtime)
    fresh = binding != request.cookies.get(BINDING_COOKIE)  # minted now: no other states to trim
    if connector.protocol == "saml":
        target = start_saml_login(runtime, connector=connector, next_path=next_path, binding=binding,
                                  fresh_binding=fresh)
    else:
        target = start_oidc_login(runtime, connector, next_path=next_path, binding=binding, fresh_binding=fresh)
    response.headers["location"] = target
    response.headers["cache-control"] = "no-store"
    return response


@router.get(CALLBACK_PATH)
def oidc_callback_get(request: Request, runtime: RuntimeDep) -> Response:
    """Authorization response in the query (``response_mode=query``, the default)."""
    return _callback(runtime, read_callback_params(request.query_params), request.cookies.get(BINDING_COOKIE))


@router.post(CALLBACK_PATH)
async def oidc_callback_post(request: Request, runtime: RuntimeDep) -> Response:
    """Authorization response posted by the browser (``response_mode=form_post``)."""
    try:
        form = await request.form()
    except Exception:
        raise BadRequest("the callback body is not a form") from None
    params = read_callback_params(form)
    binding = request.cookies.get(BINDING_COOKIE)
    return await run_in_threadpool(_callback, runtime, params, binding)


def _callback(runtime: Runtime, params: CallbackParams, binding: str | None) -> Response:
    with login_activity.attempt(runtime):  # the console's login activity records a refusal
        verified = verify_oidc(runtime, params, binding=binding)
        return session_redirect(runtime, complete_login(runtime, verified))


# -- the same endpoints through the fast lane (web/fastlane.py): what FastAPI would pass them --


async def _start_login_direct(request: Request) -> Response:
    return await run_in_threadpool(start_login, request.path_params["connector_id"], request, runtime_of(request),
                                   request.query_params.get("next"))


async def _oidc_callback_get_direct(request: Request) -> Response:
    return await run_in_threadpool(oidc_callback_get, request, runtime_of(request))


async def _oidc_callback_post_direct(request: Request) -> Response:
    return await oidc_callback_post(request, runtime_of(request))


DIRECT: dict[Callable[..., Any], Direct] = {
    start_login: _start_login_direct,
    oidc_callback_get: _oidc_callback_get_direct,
    oidc_callback_post: _oidc_callback_post_direct,
}
