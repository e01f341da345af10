"""Configuration: ``[server]`` (pydantic-settings, ``TRANSOM_*`` overrides) and
``[[connectors]]`` instances validated against each plugin's settings model.

Secrets are references, never literals: ``{ env = "NAME" }`` or ``{ file = "PATH" }``.
Every error is a :class:`ConfigError` whose message is one line naming the connector id and
the key.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from transom.connector import Connector, ProvisioningSettings
from transom.errors import ConfigError

DEFAULT_CONFIG_PATH = "transom.toml"
_CONNECTOR_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
#: values people paste from examples; a session secret must not be guessable
LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")
_WEAK_SECRETS = {"changeme", "change-me", "secret", "password", "transom", "dev", "test"}


class ServerSettings(BaseSettings):
    """``[server]``. Environment variables ``TRANSOM_<KEY>`` win over the file."""

    model_config = SettingsConfigDict(env_prefix="TRANSOM_", extra="forbid")

    base_url: str = "http://127.0.0.1:8000"
    database_url: str = "sqlite:///./transom.db"
    session_secret: SecretStr | None = None
    session_max_age_seconds: int = Field(default=8 * 3600, ge=60)
    login_state_max_age_seconds: int = Field(default=600, ge=30, le=3600)
    #: logins one browser may have in flight (tabs, retries); starting one more drops its oldest
    login_states_per_browser: int = Field(default=20, ge=1, le=1000)
    #: pending login states one account may hold; over it, the oldest are dropped (docs/performance.md)
    max_pending_login_states: int = Field(default=100_000, ge=100)
    #: accepted clock skew for id_token and SAML time checks
    clock_skew_seconds: int = Field(default=120, ge=0, le=300)
    log_level: str = "INFO"
    #: "text" (one human-readable line) or "json" (one JSON object per line), for every logger
    log_format: Literal["text", "json"] = "text"
    #: serve ``GET /metrics`` (Prometheus text format); docs/operations.md says how to restrict it
    metrics_enabled: bool = True
    #: when set, ``/metrics`` wants ``Authorization: Bearer <metrics_token>``
    metrics_token: SecretStr | None = None
    #: mark the session cookie Secure; defaults to true when base_url is https
    secure_cookies: bool | None = None
    max_request_bytes: int = Field(default=256 * 1024, ge=1024)
    #: password logins (right or wrong) per account and email per window; 0 turns it off
    password_attempts_per_user: int = Field(default=10, ge=0)
    #: password logins from one client address, whatever the account, per window; 0: off
    password_attempts_per_address: int = Field(default=200, ge=0)
    password_throttle_window_seconds: int = Field(default=300, ge=1, le=86400)
    #: SCIM and admin-API requests per token per window (500/10 s = 50/s, twice Entra's pace); 0: off
    api_rate_limit: int = Field(default=500, ge=0)
    api_rate_window_seconds: int = Field(default=10, ge=1, le=3600)
    #: login activity (admin console): rows older than this are pruned...
    login_activity_retention_days: int = Field(default=30, ge=1, le=3650)
    #: ...and an account keeps at most this many (a flood of refused logins stays bounded)
    login_activity_max_rows: int = Field(default=10_000, ge=10, le=1_000_000)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment overrides the file (the file arrives as init kwargs).
        return env_settings, init_settings

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+(/[^\s]*)?$", value):
            raise ValueError("must be an absolute http(s) URL")
        return value.rstrip("/")

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        # uvicorn looks the level up in its own table: anything else dies with a KeyError
        if value.strip().lower() not in LOG_LEVELS:
            raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}")
        return value.strip().upper()

    @field_validator("session_secret")
    @classmethod
    def _strong_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        raw = value.get_secret_value()
        if raw.lower() in _WEAK_SECRETS or len(raw) < 32:
            raise ValueError("must be a random value of at least 32 characters")
        return value

    @property
    def cookies_secure(self) -> bool:
        if self.secure_cookies is not None:
            return self.secure_cookies
        return self.base_url.startswith("https://")


class ConnectorEntry(BaseModel):
    """One ``[[connectors]]`` table before its settings are validated by the plugin."""

    model_config = ConfigDict(extra="forbid")

    id: str
    type: str
    account: str
    name: str | None = None
    email_domains: list[str] = Field(default_factory=list)
    settings: dict[str, Any] = Field(default_factory=dict)
    provisioning: ProvisioningSettings = Field(default_factory=ProvisioningSettings)

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not _CONNECTOR_ID.match(value):
            raise ValueError("must be lower-case letters, digits, '-' or '_' (max 63)")
        return value

    @field_validator("email_domains")
    @classmethod
    def _domains(cls, value: list[str]) -> list[str]:
        return [d.strip().lower().lstrip("@") for d in value if d.strip()]


@dataclass
class Config:
    server: ServerSettings
    connector_entries: list[ConnectorEntry]
    path: Path | None = None
    connectors: dict[str, Connector] = field(default_factory=dict)

    @property
    def enabled_types(self) -> set[str]:
        return {c.type for c in self.connector_entries}


def resolve_secret_refs(value: Any, where: str) -> Any:
    """Replace ``{env = NAME}`` / ``{file = PATH}`` tables with their values, recursively."""
    if isinstance(value, dict):
        keys = set(value)
        if keys == {"env"}:
            name = value["env"]
            if not isinstance(name, str) or name not in os.environ:
                raise ConfigError(f"{where}: environment variable {name} is not set")
            return os.environ[name]
        if keys == {"file"}:
            path = Path(str(value["file"]))
            try:
                return path.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(f"{where}: cannot read secret file {path}: {exc.strerror}") from exc
        return {k: resolve_secret_refs(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [resolve_secret_refs(v, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def _first_error(exc: ValidationError, prefix: str) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"])
    key = f"{prefix}.{loc}" if loc else prefix
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
    more = f" (+{len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
    return f"{key}: {msg}{more}"


def load_config(path: str | os.PathLike[str] | None = None, *, require_file: bool = False) -> Config:
    """Read and validate the TOML file (without plugins: see :func:`bind_connectors`)."""
    chosen = path or os.environ.get("TRANSOM_CONFIG") or DEFAULT_CONFIG_PATH
    cfg_path = Path(chosen)
    raw: dict[str, Any] = {}
    if cfg_path.exists():
        try:
            raw = tomllib.loads(cfg_path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{cfg_path}: not valid TOML: {exc}") from exc
        except OSError as exc:
            raise ConfigError(f"{cfg_path}: cannot read: {exc.strerror}") from exc
    elif require_file or path is not None:
        raise ConfigError(f"{cfg_path}: config file not found")
    return parse_config(raw, path=cfg_path if cfg_path.exists() else None)


def parse_config(raw: Mapping[str, Any], *, path: Path | None = None) -> Config:
    unknown = set(raw) - {"server", "connectors"}
    if unknown:
        raise ConfigError(f"unknown top-level table: {sorted(unknown)[0]}")
    server_raw = resolve_secret_refs(dict(raw.get("server", {})), "server")
    try:
        server = ServerSettings(**server_raw)
    except ValidationError as exc:
        raise ConfigError(_first_error(exc, "server")) from exc

    entries: list[ConnectorEntry] = []
    seen: set[str] = set()
    connectors_raw = raw.get("connectors", [])
    if not isinstance(connectors_raw, list):
        raise ConfigError("connectors: must be an array of tables ([[connectors]])")
    for index, item in enumerate(connectors_raw):
        entry = parse_connector_entry(index, item)
        if entry.id in seen:
            raise ConfigError(f"connector '{entry.id}': duplicate connector id")
        seen.add(entry.id)
        entries.append(entry)
    return Config(server=server, connector_entries=entries, path=path)


def parse_connector_entry(index: int, item: Any) -> ConnectorEntry:
    """One ``[[connectors]]`` table, its secret references resolved."""
    cid = item.get("id") if isinstance(item, dict) else None
    label = f"connector '{cid}'" if cid else f"connectors[{index}]"
    if not isinstance(item, dict):
        raise ConfigError(f"{label}: must be a table")
    resolved = {
        k: (resolve_secret_refs(v, f"{label} {k}") if k in ("settings",) else v)
        for k, v in item.items()
    }
    try:
        return ConnectorEntry(**resolved)
    except ValidationError as exc:
        raise ConfigError(f"{label}: {_first_error(exc, '').lstrip('.')}") from exc


def bind_connectors(config: Config, types: Mapping[str, Any]) -> dict[str, Connector]:
    """Validate each connector's settings with its type's settings model.

    ``types`` maps type name to :class:`~transom.connector.ConnectorType`.
    """
    connectors = {entry.id: bind_connector(entry, types) for entry in config.connector_entries}
    config.connectors = connectors
    return connectors


def bind_connector(entry: ConnectorEntry, types: Mapping[str, Any]) -> Connector:
    """One connector: its type must be loaded and its settings valid (``check-config`` calls
    this per connector so that it reports every broken connector, not only the first)."""
    ct = types.get(entry.type)
    if ct is None:
        raise ConfigError(
            f"connector '{entry.id}': type '{entry.type}' is not provided by any loaded plugin"
        )
    try:
        settings = ct.settings_model(**entry.settings)
    except ValidationError as exc:
        raise ConfigError(
            f"connector '{entry.id}': {_first_error(exc, 'settings')}"
        ) from exc
    except ValueError as exc:
        raise ConfigError(f"connector '{entry.id}': settings: {exc}") from exc
    protocol = getattr(settings, "protocol", None) or ct.protocols[0]
    if protocol not in ct.protocols:
        raise ConfigError(
            f"connector '{entry.id}': settings.protocol: type '{entry.type}' does not speak "
            f"{protocol}"
        )
    return Connector(
        id=entry.id,
        type=entry.type,
        account=entry.account,
        name=entry.name or ct.default_button_label,
        email_domains=tuple(entry.email_domains),
        settings=settings,
        provisioning=entry.provisioning,
        protocol=protocol,
        capabilities=ct.capabilities_of(settings),
    )
