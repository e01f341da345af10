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
    fields = _parse_qs(text)
    for name, values in fields.items():
        check(name, "a form field name", identifier=True)
        identifier = name.lower() in IDENTIFIER_FIELDS
        for value in values:
            check(value, f"form field '{name[:60]}'", identifier=identifier)
    return fields


def _parse_qs(text: str) -> dict[str, list[str]]:
    """``urllib.parse.parse_qs(text, keep_blank_values=True, max_num_fields=MAX_ACS_FIELDS)``:
    parse_qsl's steps for a str with those arguments (the default ``&`` separator, no strict
    parsing), each name and value decoded by :func:`_unquote` instead of ``unquote``.
    tests/test_saml_form.py compares the two on generated forms."""
    if 1 + text.count("&") > MAX_ACS_FIELDS and text:
        raise ValueError("Max number of fields exceeded")
    fields: dict[str, list[str]] = {}
    for name_value in text.split("&") if text else ():
        if not name_value:
            continue
        # no "=": a field with an empty value (keep_blank_values), as parse_qsl has it
        name, _, value = name_value.partition("=")
        name = _unquote(name.replace("+", " "))
        value = _unquote(value.replace("+", " "))
        if name in fields:
            fields[name].append(value)
        else:
            fields[name] = [value]
    return fields


def _unquote(text: str) -> str:
    """``urllib.parse.unquote(text)``, quicker for a form-encoded base64 value.

    A SAMLResponse field is base64, whose only characters a form must escape are ``+``, ``/``
    and ``=`` (``%2B``, ``%2F``, ``%3D``, about one character in thirty). The stdlib splits the
    text with a regular expression and decodes escape by escape in a Python loop (~0.7 ms for a
    200-group response on this project's bench machine); three ``str.replace`` calls do the
    same in C. They are taken only when no other ``%`` is left: then every ``%`` of ``text``
    started one of those three escapes, which the stdlib decodes to the same ASCII character,
    and every other character is kept by both (an ASCII run is decoded as UTF-8, which leaves
    ASCII as it is). Any other escape, and lower-case hex, goes to the stdlib."""
    if "%" not in text:
        return text
    fast = text.replace("%2B", "+").replace("%2F", "/").replace("%3D", "=")
    if "%" not in fast:
        return fast
    return urllib.parse.unquote(text)


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
