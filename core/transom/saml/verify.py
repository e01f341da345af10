"""The one SAML verify step: an ACS post in, a :class:`~transom.verified.VerifiedLogin` out."""

from __future__ import annotations

from transom import login_activity
from transom.connector import Connector
from transom.runtime import Runtime
from transom.saml.form import AcsForm
from transom.saml.replay import response_single_use
from transom.saml.response import verify_saml_response
from transom.verified import ProtocolFacts, VerifiedLogin, verified_login


def verify_saml(runtime: Runtime, connector: Connector, form: AcsForm, *, binding: str | None) -> VerifiedLogin:
    """Signature, conditions, audience, recipient and time (no transaction open while
    xmlsec runs); then the plugin's claims mapping. Raises a 4xx ``TransomError`` on any
    failure, having touched no database. The returned login carries the replay row and the
    login state named by the signed InResponseTo as single-use marks not checked yet:
    complete_login checks them (transom.saml.replay.check_response) and spends them as the
    first statements of its transaction, one database unit for the ACS (transom.singleuse);
    ``next_path`` is what that check finds (``single_use.next_path``)."""
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
    # The plugin maps the claims here, so its refusals come before anything single-use is touched.
    single_use = response_single_use(connector=connector, verified=response, binding=binding,
                                     relay_state=form.relay_state)
    return verified_login(runtime, connector, payload, facts=facts, single_use=single_use)
