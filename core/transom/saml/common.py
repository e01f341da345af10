"""XML names and small helpers shared by the SAML modules."""

from __future__ import annotations

from typing import Any

from onelogin.saml2.constants import OneLogin_Saml2_Constants
from onelogin.saml2.utils import OneLogin_Saml2_Utils

from transom.errors import LoginRefused

NS = {
    "samlp": OneLogin_Saml2_Constants.NS_SAMLP,
    "saml": OneLogin_Saml2_Constants.NS_SAML,
    "ds": OneLogin_Saml2_Constants.NS_DS,
}
DS = f"{{{OneLogin_Saml2_Constants.NS_DS}}}"
SAML = f"{{{OneLogin_Saml2_Constants.NS_SAML}}}"
SAMLP = f"{{{OneLogin_Saml2_Constants.NS_SAMLP}}}"
XENC = "{http://www.w3.org/2001/04/xmlenc#}"
BEARER = OneLogin_Saml2_Constants.CM_BEARER
TRANSIENT = OneLogin_Saml2_Constants.NAMEID_TRANSIENT


def refused(message: str, hint: str, reason: str, log_detail: str | None = None) -> LoginRefused:
    """A refusal naming its rule (``reason``, docs/security.md "Login refusals");
    ``log_detail`` goes to the refusal's log line only (which layer of the rule refused)."""
    return LoginRefused(message, hint=hint, reason=reason, log_detail=log_detail)


def text_of(element: Any) -> str:
    """Full text of an element (comments never truncate a value: CVE-2017-11427)."""
    return "".join(element.itertext()).strip()


def saml_time(value: str | None) -> int | None:
    if value is None:
        return None
    parsed: int = OneLogin_Saml2_Utils.parse_SAML_to_time(value)
    return parsed
