"""The one SAML verify step: an ACS post in, a :class:`~transom.verified.VerifiedLogin` out."""

from __future__ import annotations

from dataclasses import replace

from transom import login_activity
from transom.connector import Connector
from transom.runtime import Runtime
from transom.saml.form import AcsForm
from transom.saml.replay import check_response
from transom.saml.response import verify_saml_response
from transom.verified import ProtocolFacts, VerifiedLogin, verified_login


def verify_saml(runtime: Runtime, connector: Connector, form: AcsForm, *, binding: str | None) -> VerifiedLogin:
    """Signature, conditions, audience, recipient and time (no transaction open while
    xmlsec runs); then the plugin's claims mapping, whose refusals come before anything
    single-use is even checked; then, read-only (no writer lock), the replay cache and the
    login state named by the signed InResponseTo. Raises a 4xx ``TransomError`` on any
    failure, having written nothing. The returned login carries the replay row and the login
    state as single-use marks: complete_login spends them first in its transaction
    (transom.singleuse)."""
    login_activity.saw(connector=connector)
    response = verify_saml_response(runtime, connector, form.saml_response)
    payload = response.payload
    login_activity.saw(payload=payload)
    facts = ProtocolFacts(
        protocol="saml",
        issuer=payload.get("issuer"),
        subject=payload.get("name_id"),
        session_index=payload.get("session_index"),
        name_id_format=payload.get("name_id_format"),
        assertion_id=response.assertion_id,
    )
    login = verified_login(runtime, connector, payload, facts=facts)
    with runtime.db.read() as db:
        checked = check_response(db, connector=connector, verified=response, binding=binding,
                                 relay_state=form.relay_state)
    return replace(login, next_path=checked.next_path, single_use=checked.single_use)
