"""Starting a SAML login: the HTTP-Redirect AuthnRequest and its single-use login state."""

from __future__ import annotations

import logging
import urllib.parse

from onelogin.saml2.authn_request import OneLogin_Saml2_Authn_Request

from transom import directory
from transom.connector import Connector
from transom.errors import NotFound
from transom.loginstate import create_login_state
from transom.runtime import Runtime
from transom.saml.metadata import resolve_idp
from transom.saml.settings import library_settings
from transom.web.paths import safe_next

log = logging.getLogger("transom.saml")


def start_saml_login(
    runtime: Runtime, *, connector: Connector, next_path: str | None, binding: str | None,
    fresh_binding: bool = False,
) -> str:
    """Build an HTTP-Redirect AuthnRequest, remember its ID as a single-use login state (in
    its own short transaction, on a Core connection: Core statements only) and return the IdP
    URL to redirect the browser to. No RelayState is sent: ``next`` lives in the login state,
    so nothing in the round trip is worth tampering with."""
    if connector.protocol != "saml":
        raise NotFound(f"connector '{connector.id}' does not use SAML")
    idp = resolve_idp(runtime, connector)
    request = OneLogin_Saml2_Authn_Request(
        library_settings(runtime, connector, idp), set_nameid_policy=idp.name_id_format is not None
    )
    query = urllib.parse.urlencode({"SAMLRequest": request.get_request(deflate=True)})
    # built before the transaction: the writer lock is held for the two statements only
    with runtime.db.core_transaction() as db:
        account_id = directory.connector_account_id(db, connector=connector)
        create_login_state(
            db, runtime, account_id=account_id, connector=connector, binding=binding,
            next_path=safe_next(next_path) if next_path else None, key=request.get_id(),
            fresh_binding=fresh_binding,
        )
    separator = "&" if "?" in idp.sso_url else "?"
    log.info("SAML login started connector=%s", connector.id)
    return f"{idp.sso_url}{separator}{query}"
