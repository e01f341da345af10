"""Connector self-check (``transom check-config --probe``, ``GET /api/admin/connectors/{id}/check``):
fetch what a connector depends on and say whether a login could work right now.

- OIDC: the discovery document (required and exact as at login for a provider completed by
  discovery; optional for one that names its endpoints) and the JWKS (how many keys, how
  many usable).
- SAML: the metadata URL when one is set (entity ID, signing certificates); the expiry of
  every configured certificate.
- Whatever the connector's plugin checks in its ``transom_probe`` hook (Entra with group
  sync: an app-only token for Microsoft Graph, dropped unread).
- Clock skew: the IdP's ``Date`` header against our clock.

Nothing here raises on an IdP problem: every problem becomes a :class:`ProbeCheck` that is not
ok. The admin console calls :func:`probe_connector` for its connectors page.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from transom.certs import CertificateProblem, MetadataSummary, expiry, load_certificate, parse_metadata
from transom.connector import Connector, OidcProvider, ProbeCheck
from transom.errors import TransomError
from transom.observe import CURRENT, RequestInfo, new_request_id, note_connector
from transom.oidc.discovery import WELL_KNOWN, discovery_url
from transom.plugins import PluginHost

#: a JWKS or metadata document bigger than this is not one
_MAX_BYTES = 512 * 1024
#: a skew beyond the configured clock_skew_seconds fails logins; warn at half of it
#: ``info`` is a note that does not fail the probe (a discovery document the login does not need)
OK, INFO, WARN, FAIL = "ok", "info", "warn", "fail"


@dataclass
class ConnectorProbe:
    connector: str
    type: str
    protocol: str
    checks: list[ProbeCheck] = field(default_factory=list)
    issuer_match: bool | None = None
    keys: int | None = None
    clock_skew_seconds: float | None = None
    certificates: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.status != FAIL for c in self.checks)

    def add(self, kind: str, status: str, detail: str, url: str | None = None) -> None:
        self.checks.append(ProbeCheck(kind, status, detail, url))

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["ok"] = self.ok
        return data


class _Fetcher:
    """GETs and POSTs that never raise, and remember the IdP's Date headers."""

    def __init__(self, http: httpx.Client) -> None:
        self.http = http
        self.dates: list[tuple[datetime, datetime]] = []  # (IdP's Date, our clock at receipt)

    def fetch(self, kind: str, method: str, url: str, **kwargs: Any) -> tuple[httpx.Response | None, str]:
        try:
            response = self.http.request(method, url, extensions={"transom_kind": kind}, **kwargs)
        except httpx.TimeoutException:
            return None, "timed out"
        except httpx.HTTPError as exc:
            return None, f"unreachable ({type(exc).__name__})"
        date = response.headers.get("date")
        if date:
            with contextlib.suppress(TypeError, ValueError):
                self.dates.append((parsedate_to_datetime(date), datetime.now(UTC)))
        if len(response.content) > _MAX_BYTES:
            return None, f"answer over {_MAX_BYTES // 1024} KiB"
        return response, ""


def probe_connector(plugins: PluginHost, http: httpx.Client, connector: Connector, *,
                    clock_skew_seconds: int = 120) -> ConnectorProbe:
    """Probe one connector. ``plugins`` and ``http`` are a Runtime's (``runtime.plugins``,
    ``runtime.http``) or the CLI's own."""
    token = CURRENT.set(RequestInfo(request_id=new_request_id(None))) if CURRENT.get() is None else None
    try:
        note_connector(connector)
        result = ConnectorProbe(connector=connector.id, type=connector.type, protocol=connector.protocol)
        fetcher = _Fetcher(http)
        try:
            if connector.protocol == "oidc":
                _probe_oidc(plugins, fetcher, connector, result)
            else:
                _probe_saml(plugins, fetcher, connector, result)
        except TransomError as exc:  # the plugin refused to describe the IdP
            result.add("config", FAIL, exc.message)
        try:
            # what only the plugin knows to check (Entra: a Graph app token), through the
            # transom_probe hook rather than by reading its settings by name
            result.checks.extend(plugins.probe(connector, http))
        except TransomError as exc:
            result.add("plugin", FAIL, exc.message)
        _clock(fetcher, result, clock_skew_seconds)
        return result
    finally:
        if token is not None:
            CURRENT.reset(token)


def probe_all(plugins: PluginHost, http: httpx.Client, connectors: Iterable[Connector], *,
              clock_skew_seconds: int = 120) -> list[ConnectorProbe]:
    return [probe_connector(plugins, http, c, clock_skew_seconds=clock_skew_seconds) for c in connectors]


def _json(response: httpx.Response) -> Any:
    try:
        return json.loads(response.content)
    except (ValueError, RecursionError):
        return None


#: issuers whose discovery document the probe tries, for a provider that does not need one
_MAX_OPTIONAL_DISCOVERY = 4


def _discovery_document(fetcher: _Fetcher, url: str) -> tuple[dict[str, Any] | None, str]:
    """The discovery document at ``url`` (one with an ``issuer``), else why not."""
    response, why = fetcher.fetch("discovery", "GET", url, headers={"accept": "application/json"})
    if response is None:
        return None, why
    if response.status_code != 200:
        return None, f"HTTP {response.status_code}"
    doc = _json(response)
    if not isinstance(doc, dict) or not isinstance(doc.get("issuer"), str):
        return None, "not an OpenID discovery document (no issuer)"
    return doc, ""


def _probe_oidc(plugins: PluginHost, fetcher: _Fetcher, connector: Connector, result: ConnectorProbe) -> None:
    """As the login does it: a provider completed by discovery (``discovery`` /
    ``discovery_url``) needs its document, whose ``issuer`` must equal ``issuers[0]``
    exactly, and takes its JWKS URL from it. A provider that names its endpoints needs no
    document: the probe tries the configured issuers' (Entra lists its v2 issuer and its v1
    issuer ``https://sts.windows.net/{tid}/``, which publishes none) as a check of the
    issuer, and reports finding none as a note, not a failure."""
    provider = plugins.oidc_provider(connector)
    jwks_uri = provider.jwks_uri
    if provider.discovery or provider.discovery_url:
        url = discovery_url(provider)
        doc, why = _discovery_document(fetcher, url)
        if doc is None:
            result.add("discovery", FAIL, why, url)
        else:
            found = doc["issuer"]
            result.issuer_match = found == provider.issuers[0]
            if result.issuer_match:
                result.add("discovery", OK, f"issuer {found} matches", url)
            else:
                result.add("discovery", FAIL, f"issuer {found!r} is not the configured {provider.issuers[0]!r}", url)
            advertised = doc.get("jwks_uri")
            if not jwks_uri and isinstance(advertised, str):
                jwks_uri = advertised
            elif isinstance(advertised, str) and advertised != jwks_uri:
                result.add("jwks", WARN, f"discovery names jwks_uri {advertised}, the connector uses {jwks_uri}",
                           jwks_uri)
    else:
        _optional_discovery(fetcher, provider, result)
    if not jwks_uri:
        result.add("jwks", FAIL, "no jwks_uri: neither the connector nor its discovery document names one")
        return
    _probe_jwks(fetcher, jwks_uri, result)


def _optional_discovery(fetcher: _Fetcher, provider: OidcProvider, result: ConnectorProbe) -> None:
    tried: list[str] = []
    for issuer in list(dict.fromkeys(provider.issuers))[:_MAX_OPTIONAL_DISCOVERY]:
        url = issuer.rstrip("/") + WELL_KNOWN
        doc, why = _discovery_document(fetcher, url)
        if doc is None:
            tried.append(f"{issuer} ({why})")
            continue
        found = doc["issuer"]
        result.issuer_match = found in provider.issuers
        if result.issuer_match:
            result.add("discovery", OK, f"issuer {found} matches", url)
        else:
            result.add("discovery", FAIL, f"issuer {found!r} is none of the configured {', '.join(provider.issuers)}",
                       url)
        advertised = doc.get("jwks_uri")
        if isinstance(advertised, str) and advertised != provider.jwks_uri:
            result.add("jwks", WARN, f"discovery names jwks_uri {advertised}, the connector uses "
                       f"{provider.jwks_uri}", provider.jwks_uri)
        return
    result.add("discovery", INFO, f"no discovery document for {'; '.join(tried)}; not needed: the connector "
               "names its endpoints (the issuer is checked on every id_token)")


def _probe_jwks(fetcher: _Fetcher, jwks_uri: str, result: ConnectorProbe) -> None:
    response, why = fetcher.fetch("jwks", "GET", jwks_uri, headers={"accept": "application/json"})
    if response is None:
        result.add("jwks", FAIL, why, jwks_uri)
        return
    if response.status_code != 200:
        result.add("jwks", FAIL, f"HTTP {response.status_code}", jwks_uri)
        return
    doc = _json(response)
    keys = doc.get("keys") if isinstance(doc, dict) else None
    if not isinstance(keys, list):
        result.add("jwks", FAIL, "not a JWKS document (no keys array)", jwks_uri)
        return
    signing = [k for k in keys if isinstance(k, dict) and k.get("use", "sig") == "sig" and k.get("kty") in
               ("RSA", "EC", "OKP")]
    result.keys = len(signing)
    if not signing:
        result.add("jwks", FAIL, f"{len(keys)} keys, none usable for signatures", jwks_uri)
    else:
        result.add("jwks", OK, f"{len(signing)} signing key(s) of {len(keys)}", jwks_uri)


def _probe_saml(plugins: PluginHost, fetcher: _Fetcher, connector: Connector, result: ConnectorProbe) -> None:
    idp = plugins.saml_idp(connector)
    certificates = list(idp.certificates)
    if idp.metadata_file:
        try:
            with open(idp.metadata_file, "rb") as f:
                certificates.extend(parse_metadata(f.read(_MAX_BYTES)).certificates)
        except (OSError, ValueError) as exc:
            result.add("metadata", FAIL, f"{idp.metadata_file}: {getattr(exc, 'strerror', None) or exc}")
    if idp.metadata_url:
        meta = _fetch_metadata(fetcher, idp.metadata_url, result)
        if meta is not None:
            if idp.entity_id and meta.entity_id != idp.entity_id:
                result.issuer_match = False
                result.add("metadata", FAIL, f"entity ID {meta.entity_id!r} is not the configured "
                           f"{idp.entity_id!r}", idp.metadata_url)
            else:
                result.issuer_match = True
                result.add("metadata", OK, f"entity ID {meta.entity_id}, {len(meta.certificates)} signing "
                           "certificate(s)", idp.metadata_url)
            certificates.extend(meta.certificates)
    result.keys = len(set(certificates))
    if not certificates:
        result.add("certificate", FAIL, "no IdP signing certificate")
    for text in dict.fromkeys(certificates):
        try:
            exp = expiry(load_certificate(text))
        except CertificateProblem as exc:
            result.add("certificate", FAIL, str(exc))
            continue
        level = exp.level()
        result.certificates.append({"subject": exp.subject, "not_after": exp.not_after.isoformat(),
                                    "days_left": int(exp.days_left())})
        result.add("certificate", FAIL if level == "error" else WARN if level == "warning" else OK, exp.describe())


def _fetch_metadata(fetcher: _Fetcher, url: str, result: ConnectorProbe) -> MetadataSummary | None:
    response, why = fetcher.fetch("metadata", "GET", url,
                                  headers={"accept": "application/samlmetadata+xml, application/xml"})
    if response is None:
        result.add("metadata", FAIL, why, url)
        return None
    if response.status_code != 200:
        result.add("metadata", FAIL, f"HTTP {response.status_code}", url)
        return None
    try:
        return parse_metadata(response.content)
    except ValueError as exc:
        result.add("metadata", FAIL, str(exc), url)
        return None


def _clock(fetcher: _Fetcher, result: ConnectorProbe, allowed: int) -> None:
    if not fetcher.dates:
        return
    # Date has one-second resolution: the skew is only meaningful beyond a couple of seconds
    skews = [(ours - theirs).total_seconds() for theirs, ours in fetcher.dates]
    skew = max(skews, key=abs)
    result.clock_skew_seconds = round(skew, 1)
    if abs(skew) > allowed:
        result.add("clock", FAIL, f"our clock is {skew:+.0f} s off the IdP's, beyond clock_skew_seconds={allowed}")
    elif abs(skew) > allowed / 2:
        result.add("clock", WARN, f"our clock is {skew:+.0f} s off the IdP's (clock_skew_seconds={allowed})")
    else:
        result.add("clock", OK, f"{skew:+.0f} s against the IdP's Date header")


def table(probes: Iterable[ConnectorProbe]) -> str:
    """A readable table, one row per check."""
    rows = [("CONNECTOR", "TYPE", "CHECK", "STATUS", "DETAIL")]
    for probe in probes:
        for check in probe.checks or [ProbeCheck("-", OK, "nothing to fetch")]:
            rows.append((probe.connector, f"{probe.type}/{probe.protocol}", check.kind, check.status.upper(),
                         check.detail + (f" <{check.url}>" if check.url and check.status != OK else "")))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join("  ".join([*(r[i].ljust(widths[i]) for i in range(4)), r[4]]).rstrip() for r in rows)
