"""The one OIDC verify step: callback parameters in, a
:class:`~transom.verified.VerifiedLogin` out.

Transaction discipline (docs/oidc.md): the login state is checked in a read-only unit first
(on SQLite without the writer lock); the network calls (token endpoint, JWKS, UserInfo) then
run with no transaction open, and the state is spent as the first statement of the login's
one transaction, or in a transaction of its own if anything after the check fails
(transom.singleuse).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from transom import login_activity
from transom.connector import Connector, OidcProvider
from transom.errors import BadRequest, LoginRefused, NotFound
from transom.loginstate import PendingState, check_login_state, login_state_mark
from transom.oidc.discovery import resolve, verify_with_discovery
from transom.oidc.endpoints import callback_url
from transom.oidc.idtoken import MAX_ID_TOKEN_CHARS, parse_header
from transom.oidc.token_endpoint import exchange_code
from transom.oidc.userinfo import with_userinfo
from transom.runtime import Runtime
from transom.singleuse import SingleUse
from transom.verified import ProtocolFacts, VerifiedLogin, verified_login

#: callback parameters we read; anything longer than this is not from an IdP
MAX_PARAM_CHARS = {"state": 256, "code": 4096, "error": 200, "error_description": 1000, "iss": 500}


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


def read_callback_params(values: Any) -> CallbackParams:
    """The authorization response from a query string or a posted form, length-capped."""
    return CallbackParams(
        state=_param(values, "state", MAX_PARAM_CHARS["state"]),
        code=_param(values, "code", MAX_PARAM_CHARS["code"]),
        id_token=_param(values, "id_token", MAX_ID_TOKEN_CHARS),
        error=_param(values, "error", MAX_PARAM_CHARS["error"]),
        error_description=_param(values, "error_description", MAX_PARAM_CHARS["error_description"]),
        iss=_param(values, "iss", MAX_PARAM_CHARS["iss"]),
    )


@dataclass(frozen=True)
class VerifiedTokens:
    """The id_token's verified claims, plus what a later step may need from the token
    response (the access token for UserInfo)."""

    claims: dict[str, Any]
    access_token: str | None
    key_id: str | None
    #: the provider, completed by discovery when it asks for it
    provider: OidcProvider


def verify_oidc(runtime: Runtime, params: CallbackParams, *, binding: str | None) -> VerifiedLogin:
    """State and browser binding, the IdP's error answer, ``iss`` (RFC 9207), the code
    exchange and the id_token checks; then the plugin's claims mapping. Raises a 4xx
    ``TransomError`` (``UpstreamError`` 502 when the IdP cannot be reached). The state is
    checked, not spent: the returned login carries it for complete_login to spend; when
    anything here fails after the check, it is spent before the error goes on."""
    state = _check_state(runtime, params, binding)
    single_use = SingleUse(login_state_mark(state), account_id=state.account_id)
    with single_use.spent_on_failure(runtime.db):
        return _verify_checked(runtime, params, state, single_use)


def _check_state(runtime: Runtime, params: CallbackParams, binding: str | None) -> PendingState:
    if not params.state:
        raise LoginRefused(
            "this sign-in cannot be completed because it carries no state; start the sign-in again",
            hint="the IdP redirected to the callback without the state parameter (an IdP-initiated "
            "OIDC login is not supported: start sign-in from Transom's login page)", reason="oidc.no_state",
        )
    # Read-only, no writer lock: a refusal here spends nothing (transom.singleuse).
    with runtime.db.read() as db:
        return check_login_state(db, key=params.state, binding=binding)


def _verify_checked(
    runtime: Runtime, params: CallbackParams, state: PendingState, single_use: SingleUse
) -> VerifiedLogin:
    if state.protocol != "oidc":
        raise LoginRefused("this sign-in link has expired or was already used; start the sign-in again",
                           hint="a SAML login state was presented at the OIDC callback", reason="login.state")
    try:
        connector = runtime.connector(state.connector_id)
    except NotFound:
        raise LoginRefused("this sign-in method no longer exists", hint=f"connector '{state.connector_id}' was "
                           "removed from the configuration while the login was in flight",
                           reason="oidc.connector_gone") from None
    login_activity.saw(connector=connector)
    if params.error:
        description = f": {params.error_description}" if params.error_description else ""
        # the IdP's error code is in the message, so in the one refusal line (transom.observe)
        raise LoginRefused(
            f"the identity provider did not sign you in ({params.error}{description})",
            hint="the IdP answered the authorization request with an error; for access_denied, check that "
            "the user is assigned to the application", reason="oidc.idp_error",
        )
    # A refusal is logged once, by the error handler (transom.observe.refused), with its
    # reason code, the connector and the request id: no log line of its own here.
    tokens = verify_tokens(runtime, connector, params, nonce=state.nonce, verifier=state.code_verifier)
    # Claims the id_token lacks, from UserInfo with the access token: after the token checks,
    # before the plugin maps the payload (transom.oidc.userinfo).
    payload = with_userinfo(runtime.http, tokens.provider, tokens.claims, tokens.access_token)
    login_activity.saw(payload=payload)
    facts = ProtocolFacts(protocol="oidc", issuer=payload.get("iss"), subject=payload.get("sub"),
                          key_id=tokens.key_id)
    return verified_login(runtime, connector, payload, facts=facts, next_path=state.next_path,
                          single_use=single_use)


def verify_tokens(
    runtime: Runtime, connector: Connector, params: CallbackParams, *, nonce: str | None, verifier: str | None
) -> VerifiedTokens:
    """Exchange the code (if any) and verify the id_token. With both a ``code`` and a
    front-channel ``id_token`` (form_post hybrid), the code wins: the token endpoint's
    id_token arrives over TLS from the IdP itself, bound to our client secret and PKCE
    verifier; the front-channel one is ignored (docs/oidc.md)."""
    declared = runtime.plugins.oidc_provider(connector)
    provider = resolve(runtime.http, runtime.discovery, declared)  # endpoints from discovery when asked
    if params.iss is not None and params.iss not in provider.issuers:
        # RFC 9207: the authorization response names its issuer; a mismatch is an IdP mix-up.
        raise LoginRefused(
            "the sign-in answer came from a different identity provider",
            hint=f"the callback's iss parameter '{params.iss[:100]}' is not this connector's issuer",
            reason="oidc.iss_parameter",
        )
    access_token: str | None = None
    if params.code:
        if not verifier:
            raise LoginRefused("this sign-in link has expired or was already used; start the sign-in again",
                               hint="the stored login state has no PKCE verifier", reason="login.state")
        tokens = exchange_code(runtime.http, provider, code=params.code, code_verifier=verifier,
                               redirect_uri=callback_url(runtime))
        id_token, access_token = tokens.id_token, tokens.access_token
    elif params.id_token:
        id_token = params.id_token
    else:
        raise LoginRefused(
            "the identity provider's answer carried neither a code nor an id_token",
            hint="use the authorization code flow (response_type=code) with this redirect URI", reason="oidc.no_token",
        )
    claims = verify_with_discovery(id_token, provider=declared, http=runtime.http, jwks=runtime.jwks,
                                   discovery=runtime.discovery, nonce=nonce,
                                   clock_skew_seconds=runtime.config.server.clock_skew_seconds)
    kid = parse_header(id_token).get("kid")  # verified above; the key that signed it, for the facts
    return VerifiedTokens(claims=claims, access_token=access_token, key_id=kid if isinstance(kid, str) else None,
                          provider=provider)
