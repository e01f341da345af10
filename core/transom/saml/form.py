"""The ACS form (HTTP-POST binding): size caps, strict form parsing and strict base64."""

from __future__ import annotations

import base64
import binascii
import urllib.parse
from dataclasses import dataclass

from transom.errors import BadRequest, PayloadTooLarge
from transom.textpolicy import IDENTIFIER_FIELDS, check

#: the whole ACS form body (base64 SAMLResponse + RelayState). A 200-group Entra response is
#: ~40 KB encoded; the cap stops deflate/entity games and CPU burn before any decoding.
MAX_ACS_BODY_BYTES = 192 * 1024
MAX_RELAY_STATE_CHARS = 512


_BASE64_BLANKS = b" \t\r\n\f\v"
#: at most this many fields (SAMLResponse, RelayState and a few an IdP may add)
MAX_ACS_FIELDS = 8


@dataclass(frozen=True)
class AcsForm:
    saml_response: str
    relay_state: str | None


def parse_acs_form(body: bytes, content_type: str) -> AcsForm:
    """The HTTP-POST binding body, parsed by hand after the size cap (no multipart, no
    surprises). Raises ``PayloadTooLarge``/``BadRequest``."""
    if len(body) > MAX_ACS_BODY_BYTES:
        raise PayloadTooLarge(f"SAML response over {MAX_ACS_BODY_BYTES} bytes")
    if not content_type.lower().startswith("application/x-www-form-urlencoded"):
        raise BadRequest("post the SAML response as an HTML form (HTTP-POST binding)", reason="saml.form")
    try:
        fields = parse_form(body.decode("ascii"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadRequest("the SAML response form is malformed", reason="saml.form") from exc
    responses = fields.get("SAMLResponse", [])
    if len(responses) != 1 or not responses[0].strip():
        raise BadRequest(
            "no SAML response was received",
            hint="the IdP must POST a form field SAMLResponse to this URL (HTTP-POST binding)",
            reason="saml.form",
        )
    relay = fields.get("RelayState", [])
    relay_state = relay[0] if len(relay) == 1 and len(relay[0]) <= MAX_RELAY_STATE_CHARS else None
    return AcsForm(saml_response=responses[0], relay_state=relay_state)


def parse_form(text: str) -> dict[str, list[str]]:
    """The form's fields as ``urllib.parse.parse_qs`` reads them (at most MAX_ACS_FIELDS), with
    the input policy (transom.textpolicy) applied to every field name and value. The ACS is
    exempt from the app-wide form check (transom.web.inputs): this one parse and check replaces
    a second, generic parse of a body of up to ~40 KB (python-multipart's, ~0.4 ms for a
    200-group response)."""
    fields = urllib.parse.parse_qs(text, keep_blank_values=True, max_num_fields=MAX_ACS_FIELDS)
    for name, values in fields.items():
        check(name, "a form field name", identifier=True)
        identifier = name.lower() in IDENTIFIER_FIELDS
        for value in values:
            check(value, f"form field '{name[:60]}'", identifier=identifier)
    return fields


def decode_saml_response(value: str) -> bytes:
    """Strict base64 (line breaks and blanks tolerated: some IdPs wrap lines). Returns the
    XML: the verify step hands python3-saml these bytes, not the text to decode again
    (saml/library_response.py)."""
    raw = value.encode("ascii", errors="replace").translate(None, _BASE64_BLANKS)
    try:
        xml = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadRequest("the SAML response is not valid base64", reason="saml.base64") from exc
    if not xml:
        raise BadRequest("the SAML response is empty", reason="saml.base64")
    return xml
