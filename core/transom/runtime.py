"""The running host: config, plugins, database and the shared HTTP client, built once."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import httpx

from transom.config import Config, bind_connectors
from transom.connector import Connector
from transom.db import Database
from transom.errors import ConfigError, NotFound
from transom.idphttp import MeteredClient
from transom.observe import note_connector
from transom.oidc.discovery import DiscoveryCache
from transom.oidc.jwks import JwksCache
from transom.plugins import PluginHost

#: IdP calls (token, JWKS, Graph, metadata) must not hang a login
HTTP_TIMEOUT = httpx.Timeout(5.0, connect=3.0)


def assert_crypto_backend() -> None:
    """python-jose silently falls back to a pure-Python RSA backend when ``cryptography``
    is missing: 4x slower and a different code path. Refuse to start instead."""
    import jose.backends

    if jose.backends.RSAKey.__name__ != "CryptographyRSAKey":
        raise ConfigError("python-jose is not using the cryptography backend; install python-jose[cryptography]")


@dataclass
class Runtime:
    config: Config
    plugins: PluginHost
    db: Database
    http: httpx.Client
    #: per-process cache of OIDC signing keys (refetched on an unknown kid)
    jwks: JwksCache = field(default_factory=JwksCache)
    #: per-process cache of OIDC discovery documents (transom.oidc.discovery)
    discovery: DiscoveryCache = field(default_factory=DiscoveryCache)

    @classmethod
    def build(
        cls,
        config: Config,
        *,
        extra_plugins: Mapping[str, object] | None = None,
        http: httpx.Client | None = None,
    ) -> Runtime:
        assert_crypto_backend()
        plugins = PluginHost.load(config.enabled_types, extra_plugins=extra_plugins)
        bind_connectors(config, plugins.types)
        client = http or MeteredClient(timeout=HTTP_TIMEOUT, follow_redirects=False)
        return cls(config=config, plugins=plugins, db=Database(config.server.database_url), http=client)

    def connector(self, connector_id: str) -> Connector:
        connector = self.config.connectors.get(connector_id)
        if connector is None:
            raise NotFound(f"no connector '{connector_id}' is configured")
        note_connector(connector)
        return connector

    def connectors_of_account(self, account_name: str) -> list[Connector]:
        return [c for c in self.config.connectors.values() if c.account == account_name]

    def close(self) -> None:
        self.http.close()
        self.db.dispose()
