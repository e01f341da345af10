"""Starting an OIDC login: state, nonce and PKCE verifier stored as a single-use login state,
then the authorization URL to send the browser to."""

from __future__ import annotations

import logging
import secrets

from transom import directory
from transom.connector import Connector
from transom.loginstate import create_login_state
from transom.oidc.authorize import authorization_url, new_pkce_verifier
from transom.oidc.discovery import resolve
from transom.oidc.endpoints import callback_url
from transom.runtime import Runtime

log = logging.getLogger("transom.sso")


def start_oidc_login(runtime: Runtime, connector: Connector, *, next_path: str | None, binding: str,
                     fresh_binding: bool = False) -> str:
    """The state row is written in its own short transaction; returns the IdP URL."""
    # a discovery provider gets its endpoints from the (cached) discovery document
    provider = resolve(runtime.http, runtime.discovery, runtime.plugins.oidc_provider(connector))
    state = secrets.token_urlsafe(32)  # 256 bits
    nonce = secrets.token_urlsafe(32)
    verifier = new_pkce_verifier()
    with runtime.db.core_transaction() as db:  # Core statements only: no ORM session
        account_id = directory.connector_account_id(db, connector=connector)
        create_login_state(db, runtime, account_id=account_id, connector=connector, binding=binding,
                           next_path=next_path, key=state, nonce=nonce, code_verifier=verifier,
                           fresh_binding=fresh_binding)
    log.info("OIDC login started connector=%s", connector.id)
    return authorization_url(provider, redirect_uri=callback_url(runtime), state=state, nonce=nonce,
                             code_verifier=verifier)
