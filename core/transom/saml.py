"""SAML 2.0 service provider: python3-saml in strict mode plus the checks it does not do.

The library validates the XML schema, the single assertion, the signatures against the
configured IdP certificates and the issuer. Around it this module adds what
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
"""

from __future__ import annotations

import base64
import binascii
import functools
import logging
import threading
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from os.path import dirname, join
from pathlib import Path
from typing import Any

from cryptography import x509
from lxml import etree
from onelogin.saml2 import xml_utils as _onelogin_xml_utils
from onelogin.saml2.authn_request import OneLogin_Saml2_Authn_Request
from onelogin.saml2.constants import OneLogin_Saml2_Constants
from onelogin.saml2.errors import OneLogin_Saml2_ValidationError
from onelogin.saml2.idp_metadata_parser import OneLogin_Saml2_IdPMetadataParser
from onelogin.saml2.response import OneLogin_Saml2_Response
from onelogin.saml2.settings import OneLogin_Saml2_Settings
from onelogin.saml2.utils import OneLogin_Saml2_Utils
from onelogin.saml2.xml_utils import OneLogin_Saml2_XML
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from transom import directory
from transom.connector import Connector, SamlIdp
from transom.errors import (
    BadRequest,
    ConfigError,
    LoginRefused,
    NotFound,
    PayloadTooLarge,
    UpstreamError,
)
from transom.loginstate import consume_login_state, create_login_state
from transom.models import SamlAssertionSeen
from transom.runtime import Runtime
from transom.web.paths import safe_next

log = logging.getLogger("transom.saml")

ACS_PATH = "/api/accounts/saml/{connector_id}/acs"
METADATA_PATH = "/api/accounts/saml/{connector_id}/metadata"

#: the whole ACS form body (base64 SAMLResponse + RelayState). A 200-group Entra response is
#: ~40 KB encoded; the cap stops deflate/entity games and CPU burn before any decoding.
MAX_ACS_BODY_BYTES = 192 * 1024
MAX_RELAY_STATE_CHARS = 512
MAX_METADATA_BYTES = 1024 * 1024
#: per-process cache lifetime of IdP metadata fetched from a URL (rollover shows up within it)
METADATA_TTL_SECONDS = 3600
#: after a failed refresh, keep serving the last good metadata for at most this long
METADATA_STALE_SECONDS = 24 * 3600

NS = {
    "samlp": OneLogin_Saml2_Constants.NS_SAMLP,
    "saml": OneLogin_Saml2_Constants.NS_SAML,
    "ds": OneLogin_Saml2_Constants.NS_DS,
}
_DS = f"{{{OneLogin_Saml2_Constants.NS_DS}}}"
_SAML = f"{{{OneLogin_Saml2_Constants.NS_SAML}}}"
_SAMLP = f"{{{OneLogin_Saml2_Constants.NS_SAMLP}}}"
_XENC = "{http://www.w3.org/2001/04/xmlenc#}"

ALLOWED_SIGNATURE_METHODS = frozenset({
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384",
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512",
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256",
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384",
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha512",
})
ALLOWED_DIGEST_METHODS = frozenset({
    "http://www.w3.org/2001/04/xmlenc#sha256",
    "http://www.w3.org/2001/04/xmldsig-more#sha384",
    "http://www.w3.org/2001/04/xmlenc#sha512",
})
EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
ENVELOPED = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
ALLOWED_TRANSFORMS = frozenset({ENVELOPED, EXC_C14N})
ALLOWED_CANONICALIZATIONS = frozenset({EXC_C14N})
#: ds elements that make libxmlsec dereference more than the one enveloped reference
_FORBIDDEN_DS_ELEMENTS = ("Manifest", "RetrievalMethod", "XPath", "XSLT")

_LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})
_BASE64_BLANKS = b" \t\r\n\f\v"
BEARER = OneLogin_Saml2_Constants.CM_BEARER
TRANSIENT = OneLogin_Saml2_Constants.NAMEID_TRANSIENT


# -- the schema-cache patch (performance-notes §2) ------------------------------------------

#: python3-saml's own validator, kept for the equivalence test and the benchmark
STOCK_VALIDATE_XML = OneLogin_Saml2_XML.validate_xml
_schema_local = threading.local()
_patch_lock = threading.Lock()
_patched = False


def _cached_schema(name: str) -> etree.XMLSchema:
    cache: dict[str, etree.XMLSchema] | None = getattr(_schema_local, "schemas", None)
    if cache is None:
        cache = {}
        _schema_local.schemas = cache
    if name not in cache:
        path = join(dirname(_onelogin_xml_utils.__file__), "schemas", name)
        cache[name] = etree.XMLSchema(etree.parse(path))
    return cache[name]


def _validate_xml_cached(xml: Any, schema: str, debug: bool = False) -> Any:
    """Same contract as ``OneLogin_Saml2_XML.validate_xml`` (the element, or
    ``"unloaded_xml"`` / ``"invalid_xml"``) with one compiled schema per thread instead of
    re-reading the XSD set on every call (~65 % of validation time)."""
    try:
        document = OneLogin_Saml2_XML.to_etree(xml)
    except Exception:
        return "unloaded_xml"
    return document if _cached_schema(schema).validate(document) else "invalid_xml"


def install_schema_cache() -> None:
    """Apply the schema-cache patch once per process. Strict schema validation stays on:
    only where the compiled schema lives changes. Re-check on python3-saml upgrades."""
    global _patched
    with _patch_lock:
        if _patched:
            return
        OneLogin_Saml2_XML.validate_xml = staticmethod(_validate_xml_cached)
        _patched = True


install_schema_cache()


# -- where things live ----------------------------------------------------------------------


@dataclass(frozen=True)
class SpEndpoints:
    entity_id: str
    acs_url: str
    metadata_url: str


def sp_endpoints(runtime: Runtime, connector_id: str) -> SpEndpoints:
    """Per-connector SP entity ID (= the metadata URL) and ACS URL, from ``base_url`` only."""
    base = runtime.config.server.base_url
    metadata_url = base + METADATA_PATH.format(connector_id=connector_id)
    return SpEndpoints(
        entity_id=metadata_url,
        acs_url=base + ACS_PATH.format(connector_id=connector_id),
        metadata_url=metadata_url,
    )


def saml_connector(runtime: Runtime, connector_id: str) -> Connector:
    connector = runtime.connector(connector_id)
    if connector.protocol != "saml":
        raise NotFound(f"connector '{connector_id}' does not use SAML")
    return connector


@dataclass(frozen=True)
class ResolvedIdp:
    """The plugin's :class:`SamlIdp` with metadata merged in: everything validation needs."""

    entity_id: str
    sso_url: str
    certificates: tuple[str, ...]
    allow_idp_initiated: bool
    want_messages_signed: bool
    name_id_format: str | None


class _MetadataCache:
    """IdP metadata per source, per process: URL fetches are capped in size and time and
    refreshed after ``METADATA_TTL_SECONDS``; a failed refresh keeps the last good copy
    for a while so an IdP hiccup does not stop logins."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[float, dict[str, Any]]] = {}

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def get(self, runtime: Runtime, idp: SamlIdp, connector: Connector) -> dict[str, Any]:
        if idp.metadata_file:
            path = Path(idp.metadata_file)
            try:
                key = f"file:{path.resolve()}:{path.stat().st_mtime_ns}"
            except OSError as exc:
                raise ConfigError(
                    f"connector '{connector.id}': cannot read idp_metadata_file {path}: {exc.strerror}"
                ) from exc
            with self._lock:
                hit = self._entries.get(key)
            if hit is not None:
                return hit[1]
            parsed = _parse_metadata(_read_file_capped(path, connector), idp, connector)
            with self._lock:
                self._entries[key] = (time.monotonic(), parsed)
            return parsed
        assert idp.metadata_url is not None
        key = f"url:{idp.metadata_url}"
        now = time.monotonic()
        with self._lock:
            hit = self._entries.get(key)
        if hit is not None and now - hit[0] < METADATA_TTL_SECONDS:
            return hit[1]
        try:
            parsed = _parse_metadata(_fetch_metadata(runtime, idp.metadata_url, connector), idp, connector)
        except (UpstreamError, ConfigError):
            if hit is not None and now - hit[0] < METADATA_STALE_SECONDS:
                log.warning("connector=%s: IdP metadata refresh failed; using the cached copy", connector.id)
                return hit[1]
            raise
        with self._lock:
            self._entries[key] = (now, parsed)
        return parsed


metadata_cache = _MetadataCache()


def _read_file_capped(path: Path, connector: Connector) -> bytes:
    try:
        with path.open("rb") as f:
            data = f.read(MAX_METADATA_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"connector '{connector.id}': cannot read {path}: {exc.strerror}") from exc
    if len(data) > MAX_METADATA_BYTES:
        raise ConfigError(f"connector '{connector.id}': {path} is over {MAX_METADATA_BYTES} bytes")
    return data


def _fetch_metadata(runtime: Runtime, url: str, connector: Connector) -> bytes:
    # Metadata carries the keys we trust: fetch it over https (loopback excepted for demos
    # and tests), never over plain http on a network.
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "https" and not (parts.scheme == "http" and parts.hostname in _LOOPBACK):
        raise ConfigError(f"connector '{connector.id}': idp_metadata_url must be an https URL")
    unreachable = UpstreamError(
        "the identity provider's metadata could not be loaded; try again later",
        hint=f"connector '{connector.id}': check idp_metadata_url (it must answer 200 with XML "
        f"under {MAX_METADATA_BYTES // 1024} KiB)",
    )
    try:
        with runtime.http.stream("GET", url, headers={"accept": "application/samlmetadata+xml, application/xml"}) as r:
            if r.status_code != 200:
                log.warning("connector=%s: IdP metadata answered HTTP %s", connector.id, r.status_code)
                raise unreachable
            chunks: list[bytes] = []
            size = 0
            for chunk in r.iter_bytes():
                size += len(chunk)
                if size > MAX_METADATA_BYTES:
                    raise unreachable
                chunks.append(chunk)
    except UpstreamError:
        raise
    except Exception as exc:
        log.warning("connector=%s: IdP metadata fetch failed: %s", connector.id, type(exc).__name__)
        raise unreachable from exc
    return b"".join(chunks)


def _parse_metadata(xml: bytes, idp: SamlIdp, connector: Connector) -> dict[str, Any]:
    try:
        parsed = OneLogin_Saml2_IdPMetadataParser.parse(xml, entity_id=idp.entity_id)
    except Exception as exc:
        raise ConfigError(
            f"connector '{connector.id}': the IdP metadata is not valid SAML metadata ({type(exc).__name__})"
        ) from exc
    data: dict[str, Any] = parsed.get("idp", {})
    return data


def resolve_idp(runtime: Runtime, connector: Connector) -> ResolvedIdp:
    """Ask the plugin where the IdP lives and merge what its metadata holds. Explicit
    settings win for the entity ID and SSO URL; certificates are the union (rollover)."""
    idp = runtime.plugins.saml_idp(connector)
    entity_id = idp.entity_id
    sso_url = idp.sso_url
    certificates = [c for c in idp.certificates if c.strip()]
    if idp.metadata_file or idp.metadata_url:
        meta = metadata_cache.get(runtime, idp, connector)
        entity_id = entity_id or meta.get("entityId")
        sso_url = sso_url or meta.get("singleSignOnService", {}).get("url")
        if meta.get("x509cert"):
            certificates.append(meta["x509cert"])
        certificates.extend(meta.get("x509certMulti", {}).get("signing", []))
    where = f"connector '{connector.id}'"
    if not entity_id:
        raise ConfigError(f"{where}: no IdP entity ID (set idp_entity_id or a metadata source)")
    if not sso_url:
        raise ConfigError(f"{where}: no IdP SSO URL with the HTTP-Redirect binding (set idp_sso_url)")
    if not certificates:
        # Never fall back to fingerprints or to the certificate inside the response.
        raise ConfigError(f"{where}: no IdP signing certificate (set idp_certificates or a metadata source)")
    unique = tuple(dict.fromkeys(_format_cert(c) for c in certificates))
    _warn_expired_certificates(connector, unique)
    return ResolvedIdp(
        entity_id=entity_id,
        sso_url=sso_url,
        certificates=unique,
        allow_idp_initiated=idp.allow_idp_initiated,
        want_messages_signed=idp.want_messages_signed,
        name_id_format=idp.name_id_format,
    )


_warned_expired: set[tuple[str, str]] = set()


@functools.lru_cache(maxsize=256)
def _not_valid_after(certificate: str) -> datetime | None:
    try:
        return x509.load_pem_x509_certificate(certificate.encode("ascii")).not_valid_after_utc
    except Exception:
        return None


def _warn_expired_certificates(connector: Connector, certificates: Sequence[str]) -> None:
    """An expired IdP certificate still verifies (the key is pinned, not the validity): say
    so loudly, once per process, so the operator rolls it over (docs/saml.md)."""
    now = datetime.now(UTC)
    for certificate in certificates:
        expires = _not_valid_after(certificate)
        if expires is None or expires > now:
            continue
        key = (connector.id, certificate[-80:])
        if key not in _warned_expired:
            _warned_expired.add(key)
            log.warning("connector=%s: an IdP signing certificate expired on %s; add the IdP's new "
                        "certificate (idp_certificates or metadata)", connector.id, expires.date().isoformat())


@functools.lru_cache(maxsize=256)
def _format_cert(certificate: str) -> str:
    """PEM normalisation is textwrap-heavy (~0.5 ms); certificates rarely change."""
    formatted: str = OneLogin_Saml2_Utils.format_cert(certificate)
    return formatted


def settings_dict(sp: SpEndpoints, idp: ResolvedIdp | None, *, name_id_format: str | None) -> dict[str, Any]:
    """The python3-saml settings of one connector: strict, the safe ``security`` block of the
    checklist §1.2, keys pinned from config (never ``certFingerprint``)."""
    settings: dict[str, Any] = {
        "strict": True,
        "debug": False,
        "sp": {
            "entityId": sp.entity_id,
            "assertionConsumerService": {"url": sp.acs_url, "binding": OneLogin_Saml2_Constants.BINDING_HTTP_POST},
            "NameIDFormat": name_id_format or OneLogin_Saml2_Constants.NAMEID_UNSPECIFIED,
        },
        "idp": {},
        "security": {
            "wantAssertionsSigned": True,
            "wantMessagesSigned": bool(idp and idp.want_messages_signed),
            "rejectDeprecatedAlgorithm": True,
            "signatureAlgorithm": OneLogin_Saml2_Constants.RSA_SHA256,
            "digestAlgorithm": OneLogin_Saml2_Constants.SHA256,
            "wantNameId": True,
            "wantAssertionsEncrypted": False,
            "wantNameIdEncrypted": False,
            "allowRepeatAttributeName": False,
            # Okta sends no attributes unless the admin adds statements; plugins refuse
            # when something they need is missing.
            "wantAttributeStatement": False,
            # No SP key pair: requests are unsigned (docs/saml.md).
            "authnRequestsSigned": False,
            "logoutRequestSigned": False,
            "logoutResponseSigned": False,
            # Ask for no particular authentication method: MFA or passwordless must not fail.
            "requestedAuthnContext": False,
            "failOnAuthnContextMismatch": False,
            # Only affects the check of our own configured URLs (e.g. http://transom:8000).
            "allowSingleLabelDomains": True,
            "wantXMLValidation": True,
        },
    }
    if idp is not None:
        settings["idp"] = {
            "entityId": idp.entity_id,
            "singleSignOnService": {"url": idp.sso_url, "binding": OneLogin_Saml2_Constants.BINDING_HTTP_REDIRECT},
            "x509certMulti": {"signing": list(idp.certificates)},
        }
    return settings


def _settings(runtime: Runtime, connector: Connector, idp: ResolvedIdp) -> OneLogin_Saml2_Settings:
    sp = sp_endpoints(runtime, connector.id)
    try:
        return _built_settings(sp, idp)
    except Exception as exc:
        raise ConfigError(f"connector '{connector.id}': invalid SAML settings: {exc}") from exc


@functools.lru_cache(maxsize=256)
def _built_settings(sp: SpEndpoints, idp: ResolvedIdp) -> OneLogin_Saml2_Settings:
    """Settings objects are only read while validating, so one per (SP, IdP) pair is shared;
    a certificate or metadata change yields a new ``ResolvedIdp`` and so a new entry."""
    return OneLogin_Saml2_Settings(settings_dict(sp, idp, name_id_format=idp.name_id_format))


def sp_metadata_xml(runtime: Runtime, connector: Connector) -> str:
    """The SP metadata of one connector. Needs no IdP data, so it works before the IdP side
    is configured (admins paste this URL into the IdP first)."""
    idp = runtime.plugins.saml_idp(connector)
    sp = sp_endpoints(runtime, connector.id)
    settings = OneLogin_Saml2_Settings(
        settings_dict(sp, None, name_id_format=idp.name_id_format), sp_validation_only=True
    )
    metadata = settings.get_sp_metadata()
    return metadata.decode("utf-8") if isinstance(metadata, bytes) else str(metadata)


# -- starting a login -----------------------------------------------------------------------


def start_saml_login(
    runtime: Runtime, db: Session, *, connector: Connector, next_path: str | None, binding: str | None
) -> str:
    """Build an HTTP-Redirect AuthnRequest, remember its ID as a single-use login state and
    return the IdP URL to redirect the browser to. No RelayState is sent: ``next`` lives in
    the login state, so nothing in the round trip is worth tampering with."""
    if connector.protocol != "saml":
        raise NotFound(f"connector '{connector.id}' does not use SAML")
    idp = resolve_idp(runtime, connector)
    request = OneLogin_Saml2_Authn_Request(
        _settings(runtime, connector, idp), set_nameid_policy=idp.name_id_format is not None
    )
    account = directory.connector_account(db, connector=connector)
    request_id = request.get_id()
    create_login_state(
        db, runtime, account=account, connector=connector, binding=binding,
        next_path=safe_next(next_path) if next_path else None, key=request_id,
    )
    query = urllib.parse.urlencode({"SAMLRequest": request.get_request(deflate=True)})
    separator = "&" if "?" in idp.sso_url else "?"
    log.info("SAML login started connector=%s", connector.id)
    return f"{idp.sso_url}{separator}{query}"


# -- the ACS form ---------------------------------------------------------------------------


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
        raise BadRequest("post the SAML response as an HTML form (HTTP-POST binding)")
    try:
        fields = urllib.parse.parse_qs(body.decode("ascii"), keep_blank_values=True, max_num_fields=8)
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadRequest("the SAML response form is malformed") from exc
    responses = fields.get("SAMLResponse", [])
    if len(responses) != 1 or not responses[0].strip():
        raise BadRequest(
            "no SAML response was received",
            hint="the IdP must POST a form field SAMLResponse to this URL (HTTP-POST binding)",
        )
    relay = fields.get("RelayState", [])
    relay_state = relay[0] if len(relay) == 1 and len(relay[0]) <= MAX_RELAY_STATE_CHARS else None
    return AcsForm(saml_response=responses[0], relay_state=relay_state)


def decode_saml_response(value: str) -> tuple[bytes, str]:
    """Strict base64 (line breaks and blanks tolerated: some IdPs wrap lines). Returns the
    XML and the cleaned base64 text (what python3-saml is handed)."""
    raw = value.encode("ascii", errors="replace").translate(None, _BASE64_BLANKS)
    try:
        xml = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadRequest("the SAML response is not valid base64") from exc
    if not xml:
        raise BadRequest("the SAML response is empty")
    return xml, raw.decode("ascii")


# -- checks before xmlsec -------------------------------------------------------------------


def _refused(message: str, hint: str) -> LoginRefused:
    return LoginRefused(message, hint=hint)


#: every algorithm-bearing ds: element, checked against its allow-list before xmlsec runs
_ALGORITHM_ALLOW_LISTS = (
    ("SignatureMethod", ALLOWED_SIGNATURE_METHODS, "signature algorithm",
     "sign with RSA-SHA256 (or RSA/ECDSA with SHA-384/512) in the IdP's signing options"),
    ("DigestMethod", ALLOWED_DIGEST_METHODS, "digest algorithm",
     "use the SHA-256 (or SHA-384/512) digest algorithm in the IdP's signing options"),
    ("Transform", ALLOWED_TRANSFORMS, "transform",
     "only the enveloped-signature and exclusive canonicalization transforms are accepted"),
    ("CanonicalizationMethod", ALLOWED_CANONICALIZATIONS, "canonicalization",
     "use exclusive XML canonicalization (xml-exc-c14n) for signatures"),
)


def precheck_document(xml: bytes) -> Any:
    """Parse with python3-saml's hardened parser and reject what must never reach libxmlsec.
    Returns the root element."""
    try:
        root = OneLogin_Saml2_XML.to_etree(xml)
    except Exception as exc:
        # DTDForbidden, EntitiesForbidden, XMLSyntaxError, ...: name the type, never the content.
        log.info("SAML response refused before parsing finished: %s", type(exc).__name__)
        raise BadRequest("the SAML response is not well-formed XML without a DTD") from exc
    if root.tag != f"{_SAMLP}Response":
        raise BadRequest("the posted document is not a SAML Response")
    for tag in ("EncryptedAssertion", "EncryptedID", "EncryptedAttribute"):
        if root.find(f".//{_SAML}{tag}") is not None:
            raise _refused(
                "the identity provider sent encrypted content this service cannot read",
                "turn off assertion encryption for this application in the IdP; Transom relies on "
                "signed assertions over HTTPS and holds no decryption key",
            )
    if root.find(f".//{_XENC}EncryptedData") is not None:
        raise _refused("the identity provider sent encrypted content this service cannot read",
                       "turn off encryption for this application in the IdP")
    for name in _FORBIDDEN_DS_ELEMENTS:
        if root.find(f".//{_DS}{name}") is not None:
            raise _refused("the SAML response's signature uses a construct that is not allowed",
                           f"signatures must not contain ds:{name}")
    for element, allowed, problem, fix in _ALGORITHM_ALLOW_LISTS:
        for node in root.iter(f"{_DS}{element}"):
            if node.get("Algorithm") not in allowed:
                raise _refused(f"the SAML response's signature uses a {problem} that is not allowed", fix)
    for signature in root.iter(f"{_DS}Signature"):
        references = signature.findall(f"{_DS}SignedInfo/{_DS}Reference")
        parent = signature.getparent()
        parent_id = parent.get("ID") if parent is not None else None
        if len(references) != 1 or not parent_id or references[0].get("URI") != f"#{parent_id}":
            raise _refused(
                "the SAML response's signature does not cover the element that carries it",
                "each signature must have one Reference whose URI is '#' + the ID of its parent",
            )
    return root


# -- validation -----------------------------------------------------------------------------


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


def verify_saml_response(runtime: Runtime, connector: Connector, saml_response: str) -> VerifiedResponse:
    """Everything that needs no database: decode, pre-check, python3-saml strict validation,
    then the exact URL, audience, InResponseTo-presence and time checks. Raises a 4xx
    ``TransomError`` for every way a response can be bad."""
    idp = resolve_idp(runtime, connector)
    settings = _settings(runtime, connector, idp)
    sp = sp_endpoints(runtime, connector.id)
    xml, cleaned = decode_saml_response(saml_response)
    root = precheck_document(xml)
    # The library's checks and ours after it map their failures the same way: a validation
    # error is a refusal with a hint, anything else the parser raises is a 400.
    try:
        response = OneLogin_Saml2_Response(settings, cleaned)
        response.is_valid(_request_data(sp.acs_url), request_id=None, raise_exceptions=True)
        return _after_library(runtime, connector, idp, sp, root, response)
    except (LoginRefused, BadRequest):
        raise
    except OneLogin_Saml2_ValidationError as exc:
        log.info("SAML response refused connector=%s reason_code=%s", connector.id, exc.code)
        raise LoginRefused(
            "the identity provider's response was not accepted",
            hint=_library_hint(exc.code, sp),
        ) from None
    except Exception as exc:
        log.info("SAML response refused connector=%s error=%s", connector.id, type(exc).__name__)
        raise BadRequest("the SAML response could not be processed") from None


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


def _text(element: Any) -> str:
    """Full text of an element (comments never truncate a value: CVE-2017-11427)."""
    return "".join(element.itertext()).strip()


def _time(value: str | None) -> int | None:
    if value is None:
        return None
    parsed: int = OneLogin_Saml2_Utils.parse_SAML_to_time(value)
    return parsed


def _after_library(
    runtime: Runtime, connector: Connector, idp: ResolvedIdp, sp: SpEndpoints, root: Any,
    response: OneLogin_Saml2_Response,
) -> VerifiedResponse:
    skew = runtime.config.server.clock_skew_seconds
    now = int(OneLogin_Saml2_Utils.now())
    document = response.document

    destination = document.get("Destination")
    if destination is not None and destination != sp.acs_url:
        raise _refused("the response was sent to another address",
                       f"the IdP's ACS URL / Destination must be exactly {sp.acs_url}")

    # The library has checked the single assertion and its signature; _query_assertion
    # returns the element the verified signature references.
    assertions = response._query_assertion("")
    if len(assertions) != 1:
        raise _refused("the identity provider's response was not accepted",
                       "the response must carry exactly one signed assertion")
    assertion = assertions[0]
    signature = assertion.find(f"{_DS}Signature")
    if signature is None or assertion.get("ID") is None:
        raise _refused("the identity provider's response was not accepted", "the IdP must sign the assertion")

    conditions = assertion.findall(f"{_SAML}Conditions")
    if len(conditions) != 1:
        raise _refused("the identity provider's response was not accepted",
                       "the assertion must carry one Conditions element")
    restrictions = conditions[0].findall(f"{_SAML}AudienceRestriction")
    if not restrictions or any(
        sp.entity_id not in [_text(a) for a in r.findall(f"{_SAML}Audience")] for r in restrictions
    ):
        raise _refused("the response was meant for another application",
                       f"the IdP's Audience / SP Entity ID must be exactly {sp.entity_id}")

    not_before = _time(conditions[0].get("NotBefore"))
    not_after = _time(conditions[0].get("NotOnOrAfter"))
    clocks = f"check the clocks of the IdP and of this server (allowed skew: {skew} s)"
    if not_before is not None and not_before > now + skew:
        raise _refused("the identity provider's response is not valid yet", clocks)
    if not_after is not None and now >= not_after + skew:
        raise _refused("the identity provider's response has expired; sign in again", clocks)
    issued = _time(assertion.get("IssueInstant"))
    if issued is not None and issued > now + skew:
        raise _refused("the identity provider's response is not valid yet", clocks)

    confirmations = [
        sc for sc in assertion.findall(f"{_SAML}Subject/{_SAML}SubjectConfirmation") if sc.get("Method") == BEARER
    ]
    if not confirmations:
        raise _refused("the identity provider's response was not accepted",
                       "the assertion must carry a bearer SubjectConfirmation")
    in_response_to_values: set[str | None] = set()
    scd_expiry: list[int] = []
    for confirmation in confirmations:
        data = confirmation.find(f"{_SAML}SubjectConfirmationData")
        if data is None:
            raise _refused("the identity provider's response was not accepted",
                           "the bearer SubjectConfirmation must carry SubjectConfirmationData")
        if data.get("Recipient") != sp.acs_url:
            raise _refused("the response was sent to another address",
                           f"the Recipient of the assertion must be exactly {sp.acs_url}")
        scd_after = _time(data.get("NotOnOrAfter"))
        if scd_after is None:
            raise _refused("the identity provider's response was not accepted",
                           "the SubjectConfirmationData must carry NotOnOrAfter")
        if now >= scd_after + skew:
            raise _refused("the identity provider's response has expired; sign in again", clocks)
        scd_before = _time(data.get("NotBefore"))
        if scd_before is not None and scd_before > now + skew:
            raise _refused("the identity provider's response is not valid yet", clocks)
        scd_expiry.append(scd_after)
        in_response_to_values.add(data.get("InResponseTo"))
    if len(in_response_to_values) != 1:
        raise _refused("the identity provider's response was not accepted",
                       "all subject confirmations must answer the same request")
    in_response_to = in_response_to_values.pop()
    outer = document.get("InResponseTo")
    if in_response_to is None and outer is not None:
        raise _refused("the identity provider's response was not accepted",
                       "the signed assertion must carry InResponseTo in its SubjectConfirmationData")
    if outer is not None and outer != in_response_to:
        raise _refused("this sign-in link has expired or was already used; start the sign-in again",
                       "the Response and its assertion answer different requests")
    if in_response_to is None and not idp.allow_idp_initiated:
        raise _refused(
            "sign-in must start at this application",
            f"connector '{connector.id}' does not accept IdP-initiated logins; start from the app's "
            "login page, or set allow_idp_initiated = true",
        )

    issuer_element = assertion.find(f"{_SAML}Issuer")
    issuer = _text(issuer_element) if issuer_element is not None else idp.entity_id
    name_id = response.get_nameid()
    name_id_format = response.get_nameid_format()
    attributes = _plain_attributes(response.get_attributes())
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


# -- binding the response to this browser's login, once -------------------------------------


def accept_response(
    db: Session, runtime: Runtime, *, connector: Connector, verified: VerifiedResponse,
    binding: str | None, relay_state: str | None,
) -> str | None:
    """Record the assertion id (replay cache) and consume the login state named by the
    signed InResponseTo. Returns where to send the browser afterwards. Runs inside the
    caller's transaction: on any refusal nothing of it is kept."""
    account = directory.connector_account(db, connector=connector)
    now = datetime.now(UTC)
    # Sweep this connector's expired ids as we go: the table stays small without a job.
    db.execute(delete(SamlAssertionSeen).where(
        SamlAssertionSeen.connector_id == connector.id, SamlAssertionSeen.expires_at < now))
    seen = db.scalar(select(SamlAssertionSeen.assertion_id).where(
        SamlAssertionSeen.connector_id == connector.id,
        SamlAssertionSeen.assertion_id == verified.assertion_id,
    ))
    if seen is not None:
        log.warning("SAML assertion replay refused connector=%s", connector.id)
        raise _refused("this sign-in response was already used; start the sign-in again",
                       "the same SAML assertion was posted twice (replay)")
    # The primary key (connector, assertion id) also stops two concurrent posts.
    db.add(SamlAssertionSeen(connector_id=connector.id, assertion_id=verified.assertion_id,
                             account_id=account.id, expires_at=verified.expires_at))
    try:
        db.flush()
    except IntegrityError:
        raise _refused("this sign-in response was already used; start the sign-in again",
                       "the same SAML assertion was posted twice (replay)") from None
    if verified.in_response_to is not None:
        state = consume_login_state(db, key=verified.in_response_to, binding=binding, connector_id=connector.id)
        return state.next_path
    # IdP-initiated (allowed, checked in verify): RelayState may only name a local path.
    if relay_state and safe_next(relay_state) == relay_state:
        return relay_state
    return None
