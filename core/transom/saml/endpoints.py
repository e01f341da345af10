"""Where a SAML connector lives on this host: SP entity ID, ACS and metadata URLs, built from
``server.base_url`` only."""

from __future__ import annotations

from dataclasses import dataclass

from transom.connector import Connector
from transom.errors import NotFound
from transom.runtime import Runtime

ACS_PATH = "/api/accounts/saml/{connector_id}/acs"
METADATA_PATH = "/api/accounts/saml/{connector_id}/metadata"


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
