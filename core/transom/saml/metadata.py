"""The IdP side of a connector: the plugin's ``SamlIdp`` merged with IdP metadata (file or
URL, cached per process)."""

from __future__ import annotations

import logging
import threading
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from onelogin.saml2.idp_metadata_parser import OneLogin_Saml2_IdPMetadataParser

from transom.connector import Connector, SamlIdp
from transom.errors import ConfigError, UpstreamError
from transom.runtime import Runtime
from transom.saml.certificates import format_cert, warn_expired_certificates

log = logging.getLogger("transom.saml")


MAX_METADATA_BYTES = 1024 * 1024
#: per-process cache lifetime of IdP metadata fetched from a URL (rollover shows up within it)
METADATA_TTL_SECONDS = 3600
#: after a failed refresh, keep serving the last good metadata for at most this long
METADATA_STALE_SECONDS = 24 * 3600


_LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})


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
    unique = tuple(dict.fromkeys(format_cert(c) for c in certificates))
    warn_expired_certificates(connector, unique)
    return ResolvedIdp(
        entity_id=entity_id,
        sso_url=sso_url,
        certificates=unique,
        allow_idp_initiated=idp.allow_idp_initiated,
        want_messages_signed=idp.want_messages_signed,
        name_id_format=idp.name_id_format,
    )
