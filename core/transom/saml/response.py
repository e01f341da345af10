"""Response checks: python3-saml strict validation plus what it does not do (exact
Destination/Recipient/Audience, signed InResponseTo, tighter time window)."""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from onelogin.saml2.errors import OneLogin_Saml2_ValidationError
from onelogin.saml2.response import OneLogin_Saml2_Response

from transom.connector import Connector
from transom.errors import BadRequest, LoginRefused
from transom.runtime import Runtime
from transom.saml.common import BEARER, DS, SAML, refused, saml_time, text_of
from transom.saml.endpoints import SpEndpoints, sp_endpoints
from transom.saml.form import decode_saml_response
from transom.saml.library_clock import library_clock, library_clock_offset
from transom.saml.library_response import library_attributes, library_response
from transom.saml.metadata import ResolvedIdp, resolve_idp
from transom.saml.precheck import precheck_document
from transom.saml.settings import library_settings


@dataclass(frozen=True)
class VerifiedResponse:
    """What survived every check. ``payload`` is the plugin-facing SAML payload."""

    assertion_id: str
    #: InResponseTo of the signed SubjectConfirmationData (None: unsolicited)
    in_response_to: str | None
    #: replay-cache lifetime: latest NotOnOrAfter + skew
    expires_at: datetime
    payload: dict[str, Any]


def _library_hint(code: int, sp: SpEndpoints) -> str:
    """What an IdP admin should change, per python3-saml validation error code."""
    error = OneLogin_Saml2_ValidationError
    clocks = "check the clocks of the IdP and of this server"
    hints: Mapping[int, str] = {
        error.WRONG_ISSUER: "the Issuer does not match the configured idp_entity_id (or the IdP metadata)",
        error.INVALID_SIGNATURE: "the signature does not verify with the configured IdP certificates; update "
        "idp_certificates / the IdP metadata after a certificate change",
        error.NO_SIGNED_ASSERTION: "the IdP must sign the assertion (Okta: 'Assertion Signature: Signed'; Entra: "
        "signing option 'Sign SAML assertion' or 'Sign SAML response and assertion')",
        error.NO_SIGNED_MESSAGE: "this connector sets want_messages_signed: the IdP must sign the whole Response "
        "as well",
        error.NO_SIGNATURE_FOUND: "the IdP must sign the assertion",
        error.WRONG_AUDIENCE: f"the IdP's Audience / SP Entity ID must be exactly {sp.entity_id}",
        error.WRONG_DESTINATION: f"the IdP's ACS URL / Destination must be exactly {sp.acs_url}",
        error.WRONG_SUBJECTCONFIRMATION: f"the bearer SubjectConfirmationData must name {sp.acs_url} as "
        f"Recipient and must not have expired ({clocks})",
        error.STATUS_CODE_IS_NOT_SUCCESS: "the IdP reported an error instead of a login; check that the user is "
        "assigned to the application",
        error.ASSERTION_EXPIRED: f"the assertion has expired; {clocks}",
        error.ASSERTION_TOO_EARLY: f"the assertion is not valid yet; {clocks}",
        error.DEPRECATED_SIGNATURE_METHOD: "the signature algorithm is not allowed: sign with RSA-SHA256",
        error.DEPRECATED_DIGEST_METHOD: "the digest algorithm is not allowed: use SHA-256",
        error.DUPLICATED_ATTRIBUTE_NAME_FOUND: "each attribute name may appear once; send several values in one "
        "Attribute instead",
        error.WRONG_NUMBER_OF_ASSERTIONS: "the response must carry exactly one assertion",
    }
    return hints.get(code, f"the SAML response failed validation (python3-saml code {code})")


#: python3-saml's ValidationError code -> a stable name for ``reason`` (``saml.library.<name>``)
_LIBRARY_CODES = {
    value: name.lower() for name, value in vars(OneLogin_Saml2_ValidationError).items()
    if name.isupper() and isinstance(value, int)
}


def library_reason(code: int) -> str:
    """The ``reason`` of a refusal by python3-saml's own checks, e.g. ``saml.library.invalid_signature``."""
    return f"saml.library.{_LIBRARY_CODES.get(code, code)}"


def verify_saml_response(runtime: Runtime, connector: Connector, saml_response: str) -> VerifiedResponse:
    """Everything that needs no database: decode, pre-check, python3-saml strict validation,
    then the exact URL, audience, InResponseTo-presence and time checks. Raises a 4xx
    ``TransomError`` for every way a response can be bad."""
    idp = resolve_idp(runtime, connector)
    settings = library_settings(runtime, connector, idp)
    sp = sp_endpoints(runtime, connector.id)
    xml = decode_saml_response(saml_response)
    root = precheck_document(xml)
    # The library's checks and ours after it map their failures the same way: a validation
    # error is a refusal with a hint, anything else the parser raises is a 400. None of them
    # is logged here: the error handler writes the one refusal line (transom.observe).
    try:
        # the library gets the bytes and the tree precheck_document decoded and parsed, not
        # the base64 text to decode and parse again (library_response says why that is the same)
        response = library_response(settings, xml, root)
        with library_clock(library_clock_offset(root, int(time.time()))):
            response.is_valid(_request_data(sp.acs_url), request_id=None, raise_exceptions=True)
        return _after_library(runtime, connector, idp, sp, root, response)
    except (LoginRefused, BadRequest):
        raise
    except OneLogin_Saml2_ValidationError as exc:
        raise LoginRefused(
            "the identity provider's response was not accepted",
            hint=_library_hint(exc.code, sp),
            reason=library_reason(exc.code),
        ) from None
    except Exception as exc:
        # the exception's class only: its text may quote the posted document
        raise BadRequest("the SAML response could not be processed", reason="saml.unreadable",
                         log_detail=f"error={type(exc).__name__}") from None


def _request_data(acs_url: str) -> dict[str, Any]:
    """python3-saml's view of "the current request", built from configuration only."""
    parts = urllib.parse.urlsplit(acs_url)
    return {
        "https": "on" if parts.scheme == "https" else "off",
        "http_host": parts.netloc,
        "script_name": parts.path,
        "get_data": {},
        "post_data": {},
    }


def _after_library(
    runtime: Runtime, connector: Connector, idp: ResolvedIdp, sp: SpEndpoints, root: Any,
    response: OneLogin_Saml2_Response,
) -> VerifiedResponse:
    skew = runtime.config.server.clock_skew_seconds
    now = int(time.time())  # the real clock, whatever the library was given (library_clock)
    document = response.document

    destination = document.get("Destination")
    if destination is not None and destination != sp.acs_url:
        raise refused("the response was sent to another address",
                       f"the IdP's ACS URL / Destination must be exactly {sp.acs_url}", "saml.destination")

    # The library has checked the single assertion and its signature; _query_assertion
    # returns the element the verified signature references.
    assertions = response._query_assertion("")
    if len(assertions) != 1:
        raise refused("the identity provider's response was not accepted",
                       "the response must carry exactly one signed assertion", "saml.assertion_count")
    assertion = assertions[0]
    signature = assertion.find(f"{DS}Signature")
    if signature is None or assertion.get("ID") is None:
        raise refused("the identity provider's response was not accepted", "the IdP must sign the assertion",
                       "saml.assertion_unsigned")

    conditions = assertion.findall(f"{SAML}Conditions")
    if len(conditions) != 1:
        raise refused("the identity provider's response was not accepted",
                       "the assertion must carry one Conditions element", "saml.conditions")
    restrictions = conditions[0].findall(f"{SAML}AudienceRestriction")
    if not restrictions or any(
        sp.entity_id not in [text_of(a) for a in r.findall(f"{SAML}Audience")] for r in restrictions
    ):
        raise refused("the response was meant for another application",
                       f"the IdP's Audience / SP Entity ID must be exactly {sp.entity_id}", "saml.audience")

    not_before = saml_time(conditions[0].get("NotBefore"))
    not_after = saml_time(conditions[0].get("NotOnOrAfter"))
    clocks = f"check the clocks of the IdP and of this server (allowed skew: {skew} s)"
    if not_before is not None and not_before > now + skew:
        raise refused("the identity provider's response is not valid yet", clocks, "saml.not_yet_valid")
    if not_after is not None and now >= not_after + skew:
        raise refused("the identity provider's response has expired; sign in again", clocks, "saml.expired")
    issued = saml_time(assertion.get("IssueInstant"))
    if issued is not None and issued > now + skew:
        raise refused("the identity provider's response is not valid yet", clocks, "saml.issue_instant")
    for statement in assertion.findall(f"{SAML}AuthnStatement"):
        session_after = saml_time(statement.get("SessionNotOnOrAfter"))
        if session_after is not None and now >= session_after + skew:
            raise refused("the identity provider's session has ended; sign in again", clocks,
                           "saml.session_expired")

    confirmations = [
        sc for sc in assertion.findall(f"{SAML}Subject/{SAML}SubjectConfirmation") if sc.get("Method") == BEARER
    ]
    if not confirmations:
        raise refused("the identity provider's response was not accepted",
                       "the assertion must carry a bearer SubjectConfirmation", "saml.bearer_missing")
    in_response_to_values: set[str | None] = set()
    scd_expiry: list[int] = []
    for confirmation in confirmations:
        data = confirmation.find(f"{SAML}SubjectConfirmationData")
        if data is None:
            raise refused("the identity provider's response was not accepted",
                           "the bearer SubjectConfirmation must carry SubjectConfirmationData", "saml.scd_missing")
        if data.get("Recipient") != sp.acs_url:
            raise refused("the response was sent to another address",
                           f"the Recipient of the assertion must be exactly {sp.acs_url}", "saml.recipient")
        scd_after = saml_time(data.get("NotOnOrAfter"))
        if scd_after is None:
            raise refused("the identity provider's response was not accepted",
                           "the SubjectConfirmationData must carry NotOnOrAfter", "saml.scd_not_on_or_after_missing")
        if now >= scd_after + skew:
            raise refused("the identity provider's response has expired; sign in again", clocks, "saml.scd_expired")
        scd_before = saml_time(data.get("NotBefore"))
        if scd_before is not None and scd_before > now + skew:
            raise refused("the identity provider's response is not valid yet", clocks, "saml.scd_not_yet_valid")
        scd_expiry.append(scd_after)
        in_response_to_values.add(data.get("InResponseTo"))
    if len(in_response_to_values) != 1:
        raise refused("the identity provider's response was not accepted",
                       "all subject confirmations must answer the same request", "saml.in_response_to_mixed")
    in_response_to = in_response_to_values.pop()
    outer = document.get("InResponseTo")
    if in_response_to is None and outer is not None:
        raise refused("the identity provider's response was not accepted",
                       "the signed assertion must carry InResponseTo in its SubjectConfirmationData",
                       "saml.in_response_to_unsigned")
    if outer is not None and outer != in_response_to:
        raise refused("this sign-in link has expired or was already used; start the sign-in again",
                       "the Response and its assertion answer different requests", "saml.in_response_to_mismatch")
    if in_response_to is None and not idp.allow_idp_initiated:
        raise refused(
            "sign-in must start at this application",
            f"connector '{connector.id}' does not accept IdP-initiated logins; start from the app's "
            "login page, or set allow_idp_initiated = true",
            "saml.unsolicited",
        )

    issuer_element = assertion.find(f"{SAML}Issuer")
    issuer = text_of(issuer_element) if issuer_element is not None else idp.entity_id
    # get_nameid() and get_nameid_format() each compute (and check) get_nameid_data()
    name_id_data = response.get_nameid_data()
    name_id = name_id_data.get("Value")
    name_id_format = name_id_data.get("Format")
    attributes = _plain_attributes(library_attributes(response))
    session_index = response.get_session_index()
    assertion_id = assertion.get("ID")
    latest = max([*scd_expiry, *( [not_after] if not_after is not None else [])])
    return VerifiedResponse(
        assertion_id=str(assertion_id),
        in_response_to=in_response_to,
        expires_at=datetime.fromtimestamp(latest + skew, tz=UTC),
        payload={
            "name_id": name_id,
            "name_id_format": name_id_format,
            "issuer": issuer,
            "attributes": attributes,
            "session_index": session_index,
        },
    )


def _plain_attributes(raw: Mapping[str, Sequence[Any]]) -> dict[str, list[str]]:
    """Attribute name to every string value; nested NameID values become their text."""
    result: dict[str, list[str]] = {}
    for name, values in raw.items():
        plain: list[str] = []
        for value in values:
            if isinstance(value, str):
                plain.append(value)
            elif isinstance(value, Mapping) and isinstance(value.get("NameID"), Mapping):
                text = value["NameID"].get("value")
                if isinstance(text, str) and text.strip():
                    plain.append(text.strip())
        result[name] = plain
    return result
