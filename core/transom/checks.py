"""``transom check-config``: everything ``serve`` (or the first login) would trip on, found
before a user does. Each problem is one :class:`Finding` naming the connector and the key;
checking goes on after a problem so that one run lists them all.

No network here (``--probe`` does that, in ``transom.probe``); the database is asked only
which accounts exist, and only when it is reachable.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from transom.certs import CertificateProblem, expiry, load_certificate, parse_metadata
from transom.config import (
    DEFAULT_CONFIG_PATH,
    Config,
    ConnectorEntry,
    ServerSettings,
    bind_connector,
    parse_connector_entry,
    resolve_secret_refs,
)
from transom.connector import Connector, SamlSettings
from transom.errors import ConfigError

Level = Literal["error", "warning"]
#: settings keys whose value is a secret and belongs in { env = ... } or { file = ... }
_SECRET_WORDS = ("secret", "password", "private_key", "token")
_MAX_FILE_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Finding:
    level: Level
    #: "server.session_secret", "connector 'okta': settings.idp_certificate_file", or a path
    where: str
    message: str

    def line(self) -> str:
        return f"{self.level}: {self.where}: {self.message}"


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)
    config: Config | None = None
    connectors: dict[str, Connector] = field(default_factory=dict)
    types: list[str] = field(default_factory=list)

    def error(self, where: str, message: str) -> None:
        self.findings.append(Finding("error", where, message))

    def warning(self, where: str, message: str) -> None:
        self.findings.append(Finding("warning", where, message))

    def config_error(self, exc: ConfigError) -> None:
        # ConfigError messages already start with "connector 'x': key" or "server.key"
        where, sep, message = exc.message.partition(": ")
        self.findings.append(Finding("error", where if sep else "config", message if sep else exc.message))

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "warning"]

    def as_json(self) -> dict[str, Any]:
        return {"ok": not self.errors, "connectors": sorted(self.connectors), "types": self.types,
                "findings": [asdict(f) for f in self.findings]}


def config_path(path: str | os.PathLike[str] | None) -> Path:
    return Path(path or os.environ.get("TRANSOM_CONFIG") or DEFAULT_CONFIG_PATH)


def check_config(path: str | os.PathLike[str] | None, *, now: datetime | None = None,
                 check_database: bool = True) -> Report:
    report = Report()
    cfg_path = config_path(path)
    if not cfg_path.is_file():
        report.error(str(cfg_path), "config file not found (serve needs one; see docs/configuration.md)")
        return report
    try:
        raw = tomllib.loads(cfg_path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        report.error(str(cfg_path), f"not valid TOML: {exc}")
        return report
    except (OSError, UnicodeDecodeError) as exc:
        report.error(str(cfg_path), f"cannot read: {getattr(exc, 'strerror', None) or type(exc).__name__}")
        return report
    for key in sorted(set(raw) - {"server", "connectors"}):
        report.error(key, "unknown top-level table")
    _plain_text_secrets(report, raw)
    server = _check_server(report, raw.get("server", {}))
    entries = _connector_entries(report, raw.get("connectors", []))
    # an invalid [server] does not stop the connector checks; only the database check needs it
    config = Config(server=server or ServerSettings.model_construct(), connector_entries=entries, path=cfg_path)
    report.config = config
    types = _load_types(report, {e.type for e in entries})
    report.types = sorted(types)
    for entry in entries:
        if entry.type not in types:
            continue  # already reported by _load_types
        try:
            report.connectors[entry.id] = bind_connector(entry, types)
        except ConfigError as exc:
            report.config_error(exc)
    config.connectors = dict(report.connectors)
    for connector in report.connectors.values():
        if isinstance(connector.settings, SamlSettings) and connector.protocol == "saml":
            _check_saml_files(report, connector, connector.settings, now=now)
    _check_crypto_backend(report)
    if check_database and server is not None:
        _check_database(report, server.database_url, entries)
    return report


def _plain_text_secrets(report: Report, raw: Mapping[str, Any]) -> None:
    server = raw.get("server", {})
    for key in ("session_secret", "metrics_token"):
        if isinstance(server, dict) and isinstance(server.get(key), str):
            report.warning(f"server.{key}", f'written in the file; use {{ env = "TRANSOM_{key.upper()}" }} '
                           'or { file = "/run/secrets/..." }')
    connectors = raw.get("connectors", [])
    if not isinstance(connectors, list):
        return
    for index, item in enumerate(connectors):
        if not isinstance(item, dict) or not isinstance(item.get("settings"), dict):
            continue
        label = f"connector '{item.get('id')}'" if item.get("id") else f"connectors[{index}]"
        for key, value in item["settings"].items():
            if isinstance(value, str) and value and any(w in key.lower() for w in _SECRET_WORDS):
                report.warning(f"{label}: settings.{key}", 'secret written in the file; use { env = "NAME" } '
                               'or { file = "PATH" }')


def _check_server(report: Report, server_raw: Any) -> ServerSettings | None:
    if not isinstance(server_raw, dict):
        report.error("server", "must be a table")
        return None
    try:
        resolved = resolve_secret_refs(dict(server_raw), "server")
    except ConfigError as exc:
        report.config_error(exc)
        return None
    try:
        server = ServerSettings(**resolved)
    except ValidationError as exc:
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"])
            env = f"TRANSOM_{key.upper()}"
            where = f"{env} (server.{key})" if env in os.environ else f"server.{key}"
            message = "unknown key" if err["type"] == "extra_forbidden" else err["msg"].removeprefix("Value error, ")
            report.error(where, message)
        return None
    if server.session_secret is None:
        report.error("server.session_secret", 'not set; use session_secret = { env = "TRANSOM_SESSION_SECRET" } '
                     "with a random value of at least 32 characters")
    return server


def _connector_entries(report: Report, connectors_raw: Any) -> list[ConnectorEntry]:
    if not isinstance(connectors_raw, list):
        report.error("connectors", "must be an array of tables ([[connectors]])")
        return []
    entries: list[ConnectorEntry] = []
    seen: set[str] = set()
    for index, item in enumerate(connectors_raw):
        try:
            entry = parse_connector_entry(index, item)
        except ConfigError as exc:
            report.config_error(exc)
            continue
        if entry.id in seen:
            report.error(f"connector '{entry.id}'", "duplicate connector id")
            continue
        seen.add(entry.id)
        entries.append(entry)
    return entries


def _load_types(report: Report, wanted: Iterable[str]) -> dict[str, Any]:
    """Each enabled plugin on its own, so one broken plugin does not hide the others."""
    from transom.plugins import PluginHost

    good: list[str] = []
    for type_name in sorted(set(wanted)):
        try:
            PluginHost.load({type_name})
        except ConfigError as exc:
            report.error(f"connector type '{type_name}'", exc.message)
            continue
        good.append(type_name)
    if not good:
        return {}
    return dict(PluginHost.load(good).types)


def _read_capped(path: str) -> bytes:
    with open(path, "rb") as f:
        data = f.read(_MAX_FILE_BYTES + 1)
    if len(data) > _MAX_FILE_BYTES:
        raise OSError(0, f"over {_MAX_FILE_BYTES} bytes")
    return data


def _check_saml_files(report: Report, connector: Connector, settings: SamlSettings, *,
                      now: datetime | None) -> None:
    label = f"connector '{connector.id}'"
    for index, text in enumerate(settings.idp_certificates):
        _check_certificate(report, f"{label}: settings.idp_certificates[{index}]", text, now=now)
    if settings.idp_certificate_file:
        where = f"{label}: settings.idp_certificate_file"
        try:
            data = _read_capped(settings.idp_certificate_file)
        except OSError as exc:
            report.error(where, f"cannot read {settings.idp_certificate_file}: {exc.strerror}")
        else:
            _check_certificate(report, where, data.decode("ascii", "replace"), now=now)
    if settings.idp_metadata_file:
        where = f"{label}: settings.idp_metadata_file"
        try:
            meta = parse_metadata(_read_capped(settings.idp_metadata_file))
        except OSError as exc:
            report.error(where, f"cannot read {settings.idp_metadata_file}: {exc.strerror}")
        except ValueError as exc:
            report.error(where, f"{settings.idp_metadata_file}: {exc}")
        else:
            if not meta.certificates and not settings.idp_certificates and not settings.idp_certificate_file:
                report.error(where, "the metadata holds no signing certificate")
            for cert in meta.certificates:
                _check_certificate(report, where, cert, now=now)
    if settings.idp_metadata_url:
        from urllib.parse import urlsplit

        parts = urlsplit(settings.idp_metadata_url)
        loopback = parts.hostname in ("127.0.0.1", "::1", "localhost")
        if parts.scheme != "https" and not (parts.scheme == "http" and loopback):
            report.error(f"{label}: settings.idp_metadata_url", "must be an https URL (it carries the keys we trust)")


def _check_certificate(report: Report, where: str, text: str, *, now: datetime | None) -> None:
    try:
        cert = load_certificate(text)
    except CertificateProblem as exc:
        report.error(where, str(exc))
        return
    exp = expiry(cert)
    level = exp.level(now)
    if level == "error":
        report.error(where, exp.describe(now) + "; add the IdP's new certificate")
    elif level == "warning":
        report.warning(where, exp.describe(now) + "; plan the rollover")


def _check_crypto_backend(report: Report) -> None:
    from transom.runtime import assert_crypto_backend

    try:
        assert_crypto_backend()
    except ConfigError as exc:
        report.error("python-jose", exc.message)


def _check_database(report: Report, url: str, entries: list[ConnectorEntry]) -> None:
    """Accounts named by connectors must exist; never creates a database file."""
    from sqlalchemy import create_engine, inspect, select
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError

    from transom.models import Account

    try:
        parsed = make_url(url)
    except ArgumentError:
        report.error("server.database_url", "not a database URL")
        return
    if parsed.get_backend_name() == "sqlite":
        db_file = parsed.database or ""
        if db_file in ("", ":memory:") or not Path(db_file).exists():
            report.warning("server.database_url", f"database {db_file or ':memory:'} does not exist yet; serve "
                           "creates it, then create the accounts the connectors name (transom accounts create)")
            return
    connect_args = {"connect_timeout": 5} if parsed.get_backend_name() == "postgresql" else {}
    try:
        engine = create_engine(parsed, connect_args=connect_args)
    except (SQLAlchemyError, ImportError) as exc:
        report.error("server.database_url", f"cannot use this database: {type(exc).__name__}")
        return
    try:
        with engine.connect() as conn:
            if not inspect(conn).has_table("accounts"):
                names: set[str] = set()
                report.warning("server.database_url", "the database has no tables yet (serve or transom db upgrade "
                               "applies the migrations)")
            else:
                names = set(conn.scalars(select(Account.name)))
    except SQLAlchemyError as exc:
        report.error("server.database_url", f"cannot connect: {type(exc).__name__}")
        return
    finally:
        engine.dispose()
    for entry in entries:
        if entry.account not in names:
            report.error(f"connector '{entry.id}': account", f"account '{entry.account}' does not exist in the "
                         f"database; create it with: transom accounts create {entry.account}")
