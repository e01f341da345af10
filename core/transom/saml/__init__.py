"""SAML 2.0 service provider: python3-saml in strict mode plus the checks it does not do.

The library validates the XML schema, the single assertion, the signatures against the
configured IdP certificates and the issuer. Around it this package adds what
``/work/shared/reference/security-checklist.md`` §1.3 lists as the application's job:

* a size cap and strict base64 before anything is parsed; every parser/library exception
  becomes a 4xx (never a 500);
* a pre-parse with the library's hardened parser (no DTD, no entities, no network) that
  rejects signature/digest algorithms outside an allow-list, transforms other than
  enveloped-signature and exc-c14n (XSLT runs in libxmlsec *before* any key check), encrypted
  content we cannot decrypt, and references that do not point at their parent element;
* exact Destination (absent is fine), exact Recipient (required), Audience (required, exact);
* InResponseTo read from the **signed** SubjectConfirmationData and bound to the stored
  login state (single use, browser-bound); unsolicited responses only when the connector
  allows IdP-initiated login;
* a tighter time window than the library's fixed 300 s (``server.clock_skew_seconds``);
* a replay cache of assertion ids in the database.

Identity (NameID, attributes) is read only after all of that succeeded. Every URL the
library compares against is built from the configured ``server.base_url``, never from the
request's Host headers. Decisions are written down in ``docs/saml.md``.

Modules, one job each: ``endpoints`` (SP URLs), ``metadata`` (the IdP side, metadata
cache), ``certificates`` (PEM, expiry warnings), ``settings`` (python3-saml settings, SP
metadata), ``schema_cache`` (the XSD cache patch), ``xpath_cache``, ``time_parse`` and ``key_cache`` (the
compiled-XPath, SAML-time and loaded-key patches of python3-saml), ``request`` (starting a login),
``form`` (the ACS form, base64), ``precheck`` (before xmlsec), ``library_response``
(python3-saml's response object over that parse, its attributes read cheaply),
``response`` (the response checks),
``replay`` (replay cache and InResponseTo) and ``verify`` (the one verify step of the login
pipeline).
"""

# The python3-saml patches (schema_cache, xpath_cache, time_parse, key_cache) apply themselves when
# imported below: any import of transom.saml.* runs this file first, so no check runs
# without them.
from transom.saml.endpoints import ACS_PATH, METADATA_PATH, SpEndpoints, saml_connector, sp_endpoints
from transom.saml.form import MAX_ACS_BODY_BYTES, MAX_RELAY_STATE_CHARS, AcsForm, decode_saml_response, parse_acs_form
from transom.saml.key_cache import STOCK_FROM_MEMORY, install_key_cache
from transom.saml.metadata import MAX_METADATA_BYTES, ResolvedIdp, metadata_cache, resolve_idp
from transom.saml.precheck import precheck_document
from transom.saml.replay import check_response
from transom.saml.request import start_saml_login
from transom.saml.response import VerifiedResponse, verify_saml_response
from transom.saml.schema_cache import STOCK_VALIDATE_XML, install_schema_cache
from transom.saml.settings import settings_dict, sp_metadata_xml
from transom.saml.time_parse import STOCK_PARSE_SAML_TO_TIME, install_time_parse
from transom.saml.verify import verify_saml
from transom.saml.xpath_cache import STOCK_QUERY, install_xpath_cache

__all__ = [
    "ACS_PATH",
    "MAX_ACS_BODY_BYTES",
    "MAX_METADATA_BYTES",
    "MAX_RELAY_STATE_CHARS",
    "METADATA_PATH",
    "STOCK_FROM_MEMORY",
    "STOCK_PARSE_SAML_TO_TIME",
    "STOCK_QUERY",
    "STOCK_VALIDATE_XML",
    "AcsForm",
    "ResolvedIdp",
    "SpEndpoints",
    "VerifiedResponse",
    "check_response",
    "decode_saml_response",
    "install_key_cache",
    "install_schema_cache",
    "install_time_parse",
    "install_xpath_cache",
    "metadata_cache",
    "parse_acs_form",
    "precheck_document",
    "resolve_idp",
    "saml_connector",
    "settings_dict",
    "sp_endpoints",
    "sp_metadata_xml",
    "start_saml_login",
    "verify_saml",
    "verify_saml_response",
]
