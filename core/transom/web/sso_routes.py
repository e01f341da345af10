"""SSO entry points: starting a login at the IdP and the OIDC callback.

Transaction discipline (docs/oidc.md): the login state is written in its own short
transaction when the login starts and consumed in its own short transaction at the callback;
the network calls (token endpoint, JWKS) run with no transaction open; only then does
``complete_sso_login`` open the one transaction that touches the user.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from transom import directory
from transom.connector import Connector
from transom.errors import BadRequest, LoginRefused, NotFound, TransomError
from transom.login import complete_sso_login
from transom.loginstate import BINDING_COOKIE, browser_binding, consume_login_state, create_login_state
from transom.models import User
from transom.oidc import authorization_url, exchange_code, new_pkce_verifier, verify_id_token
from transom.runtime import Runtime
from transom.web.account_routes import login_redirect
from transom.web.deps import RuntimeDep
from transom.web.paths import safe_next

log = logging.getLogger("transom.sso")
router = APIRouter()

CALLBACK_PATH = "/api/accounts/idp-callback"
#: callback parameters we read; anything longer than this is not from an IdP
_MAX_PARAM_CHARS = {"state": 256, "code": 4096, "error": 200, "error_description": 1000, "iss": 500}


def callback_url(runtime: Runtime) -> str:
    return runtime.config.server.base_url + CALLBACK_PATH


@router.get("/api/accounts/login/{connector_id}")
def start_login(connector_id: str, request: Request, runtime: RuntimeDep, next: str | None = None) -> Response:
    """Start SSO: store state/nonce/PKCE verifier (or the SAML request id) and send the browser
    to the IdP."""
    connector = runtime.connector(connector_id)
    next_path = safe_next(next) if next else None
    # The location is filled in once the state exists; the binding cookie goes on this response.
    response = RedirectResponse("/", status_code=303)
    binding = browser_binding(request, response, runtime)
    if connector.protocol == "saml":
        from transom.saml import start_saml_login  # written separately; imported only when used

        with runtime.db.transaction() as db:
            target = start_saml_login(runtime, db, connector=connector, next_path=next_path, binding=binding)
    else:
        target = _start_oidc(runtime, connector, next_path=next_path, binding=binding)
    response.headers["location"] = target
    response.headers["cache-control"] = "no-store"
    return response


def _start_oidc(runtime: Runtime, connector: Connector, *, next_path: str | None, binding: str) -> str:
    provider = runtime.plugins.oidc_provider(connector)
    state = secrets.token_urlsafe(32)  # 256 bits
    nonce = secrets.token_urlsafe(32)
    verifier = new_pkce_verifier()
    with runtime.db.transaction() as db:
        account = directory.connector_account(db, connector=connector)
        create_login_state(db, runtime, account=account, connector=connector, binding=binding,
                           next_path=next_path, key=state, nonce=nonce, code_verifier=verifier)
    log.info("OIDC login started connector=%s", connector.id)
    return authorization_url(provider, redirect_uri=callback_url(runtime), state=state, nonce=nonce,
                             code_verifier=verifier)


@dataclass(frozen=True)
class CallbackParams:
    state: str | None
    code: str | None
    id_token: str | None
    error: str | None
    error_description: str | None
    iss: str | None


def _param(values: Any, name: str, limit: int) -> str | None:
    value = values.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise BadRequest(f"the callback parameter {name} must be text")
    if len(value) > limit:
        raise BadRequest(f"the callback parameter {name} is too long")
    return value


def _read_params(values: Any) -> CallbackParams:
    from transom.oidc import MAX_ID_TOKEN_CHARS

    return CallbackParams(
        state=_param(values, "state", _MAX_PARAM_CHARS["state"]),
        code=_param(values, "code", _MAX_PARAM_CHARS["code"]),
        id_token=_param(values, "id_token", MAX_ID_TOKEN_CHARS),
        error=_param(values, "error", _MAX_PARAM_CHARS["error"]),
        error_description=_param(values, "error_description", _MAX_PARAM_CHARS["error_description"]),
        iss=_param(values, "iss", _MAX_PARAM_CHARS["iss"]),
    )


@router.get(CALLBACK_PATH)
def oidc_callback_get(request: Request, runtime: RuntimeDep) -> Response:
    """Authorization response in the query (``response_mode=query``, the default)."""
    return _callback(runtime, _read_params(request.query_params), request.cookies.get(BINDING_COOKIE))


@router.post(CALLBACK_PATH)
async def oidc_callback_post(request: Request, runtime: RuntimeDep) -> Response:
    """Authorization response posted by the browser (``response_mode=form_post``)."""
    try:
        form = await request.form()
    except Exception:
        raise BadRequest("the callback body is not a form") from None
    params = _read_params(form)
    binding = request.cookies.get(BINDING_COOKIE)
    return await run_in_threadpool(_callback, runtime, params, binding)


def _callback(runtime: Runtime, params: CallbackParams, binding: str | None) -> Response:
    if not params.state:
        raise LoginRefused(
            "this sign-in cannot be completed because it carries no state; start the sign-in again",
            hint="the IdP redirected to the callback without the state parameter (an IdP-initiated "
            "OIDC login is not supported: start sign-in from Transom's login page)",
        )
    # Own short transaction: the state is gone even if everything after this fails.
    with runtime.db.transaction() as db:
        row = consume_login_state(db, key=params.state, binding=binding)
        connector_id, protocol = row.connector_id, row.protocol
        nonce, verifier, next_path = row.nonce, row.code_verifier, row.next_path
    if protocol != "oidc":
        raise LoginRefused("this sign-in link has expired or was already used; start the sign-in again",
                           hint="a SAML login state was presented at the OIDC callback")
    try:
        connector = runtime.connector(connector_id)
    except NotFound:
        raise LoginRefused("this sign-in method no longer exists", hint=f"connector '{connector_id}' was removed "
                           "from the configuration while the login was in flight") from None
    if params.error:
        description = f": {params.error_description}" if params.error_description else ""
        log.info("OIDC login refused by the IdP connector=%s error=%s", connector.id, params.error)
        raise LoginRefused(
            f"the identity provider did not sign you in ({params.error}{description})",
            hint="the IdP answered the authorization request with an error; for access_denied, check that "
            "the user is assigned to the application",
        )
    try:
        payload = _verified_claims(runtime, connector, params, nonce=nonce, verifier=verifier)
    except TransomError as exc:
        log.info("OIDC login refused connector=%s reason=%s", connector.id, exc.hint or exc.message)
        raise
    result = complete_sso_login(runtime, connector=connector, payload=payload)
    with runtime.db.transaction() as db:
        user = db.scalar(select(User).where(User.account_id == result.account_id, User.id == result.user_id))
        if user is None:  # deleted between the two transactions
            raise LoginRefused("your user was removed while signing in; try again")
        return login_redirect(runtime, db, user=user, connector_id=connector.id, next_path=next_path)


def _verified_claims(
    runtime: Runtime, connector: Connector, params: CallbackParams, *, nonce: str | None, verifier: str | None
) -> dict[str, Any]:
    """Exchange the code (if any) and verify the id_token. With both a ``code`` and a
    front-channel ``id_token`` (form_post hybrid), the code wins: the token endpoint's
    id_token arrives over TLS from the IdP itself, bound to our client secret and PKCE
    verifier; the front-channel one is ignored (docs/oidc.md)."""
    provider = runtime.plugins.oidc_provider(connector)
    if params.iss is not None and params.iss not in provider.issuers:
        # RFC 9207: the authorization response names its issuer; a mismatch is an IdP mix-up.
        raise LoginRefused(
            "the sign-in answer came from a different identity provider",
            hint=f"the callback's iss parameter '{params.iss[:100]}' is not this connector's issuer",
        )
    if params.code:
        if not verifier:
            raise LoginRefused("this sign-in link has expired or was already used; start the sign-in again",
                               hint="the stored login state has no PKCE verifier")
        tokens = exchange_code(runtime.http, provider, code=params.code, code_verifier=verifier,
                               redirect_uri=callback_url(runtime))
        id_token = tokens.id_token
    elif params.id_token:
        id_token = params.id_token
    else:
        raise LoginRefused(
            "the identity provider's answer carried neither a code nor an id_token",
            hint="use the authorization code flow (response_type=code) with this redirect URI",
        )
    return verify_id_token(id_token, provider=provider, jwks=runtime.jwks, http=runtime.http, nonce=nonce,
                           clock_skew_seconds=runtime.config.server.clock_skew_seconds)
