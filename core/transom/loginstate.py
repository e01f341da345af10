"""Server-side, single-use state of an SSO login in flight.

OIDC keeps ``state`` (the row key), ``nonce`` and the PKCE verifier here; SAML keeps the
AuthnRequest ID (the row key). A row is bound to the browser that started the login through
the ``transom_login`` cookie (its hash is stored), lives a few minutes, and is deleted when
consumed, so a state or request id works once (login CSRF, replayed callbacks).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import UTC, datetime, timedelta

from fastapi import Request, Response
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from transom.connector import Connector
from transom.errors import LoginRefused
from transom.models import Account, LoginState
from transom.runtime import Runtime

BINDING_COOKIE = "transom_login"
BINDING_PATH = "/api/accounts"


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def browser_binding(request: Request, response: Response, runtime: Runtime) -> str:
    """The browser's binding value: reuse the cookie if present (several tabs may log in at
    once), else set a new one. Cross-site POSTs (SAML ACS, form_post) only carry it when it
    is SameSite=None, which browsers accept only with Secure, i.e. on https."""
    value = request.cookies.get(BINDING_COOKIE)
    if not value or len(value) > 100:
        value = secrets.token_urlsafe(32)
    secure = runtime.config.server.cookies_secure
    response.set_cookie(
        BINDING_COOKIE, value, max_age=runtime.config.server.login_state_max_age_seconds,
        httponly=True, secure=secure, samesite="none" if secure else "lax", path=BINDING_PATH,
    )
    return value


def create_login_state(
    db: Session,
    runtime: Runtime,
    *,
    account: Account,
    connector: Connector,
    binding: str | None,
    next_path: str | None,
    key: str | None = None,
    nonce: str | None = None,
    code_verifier: str | None = None,
) -> LoginState:
    now = datetime.now(UTC)
    # Expired rows of this account are swept here so the table stays small without a job.
    db.execute(delete(LoginState).where(LoginState.account_id == account.id, LoginState.expires_at < now))
    row = LoginState(
        key=key or secrets.token_urlsafe(32),
        account_id=account.id,
        connector_id=connector.id,
        protocol=connector.protocol,
        nonce=nonce,
        code_verifier=code_verifier,
        next_path=next_path,
        browser_binding=_digest(binding) if binding else None,
        created_at=now,
        expires_at=now + timedelta(seconds=runtime.config.server.login_state_max_age_seconds),
    )
    db.add(row)
    db.flush()
    return row


def consume_login_state(
    db: Session, *, key: str, binding: str | None, connector_id: str | None = None
) -> LoginState:
    """Fetch and delete the state in one go; refuse unknown, reused, expired, foreign-browser
    or other-connector states with the same message (no oracle)."""
    refused = LoginRefused(
        "this sign-in link has expired or was already used; start the sign-in again",
        hint="the login state was unknown, reused, expired or started in another browser",
    )
    if not key or len(key) > 128:
        raise refused
    row = db.scalar(select(LoginState).where(LoginState.key == key))
    if row is None:
        raise refused
    # Delete first: whatever happens next, this state cannot be used again.
    deleted = db.execute(delete(LoginState).where(LoginState.key == key)).rowcount  # type: ignore[attr-defined]
    if deleted != 1:
        raise refused
    expires = row.expires_at if row.expires_at.tzinfo else row.expires_at.replace(tzinfo=UTC)
    if expires <= datetime.now(UTC):
        raise refused
    if connector_id is not None and row.connector_id != connector_id:
        raise refused
    if row.browser_binding is not None and (
        binding is None or not hmac.compare_digest(row.browser_binding, _digest(binding))
    ):
        raise refused
    return row
