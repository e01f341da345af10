"""The host-owned provisioning attributes: space, role, timezone and account-role values read
from a verified payload with the connector's ``[connectors.provisioning]`` names.

They are host configuration, the same for every connector type, so no plugin reads them: a
plugin maps identity and groups, and the host fills these in (docs/provisioning.md). A value a
plugin did set is an override and is kept.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from transom.connector import Claims, Connector, claim_values, saml_attribute_values, saml_first_value

#: the standard OIDC claim for a time zone (OpenID Connect Core §5.1), used when the
#: configured timezone claim is absent
OIDC_ZONEINFO = "zoneinfo"


def _values(connector: Connector, payload: Mapping[str, Any], name: str | None) -> tuple[str, ...]:
    if not name:
        return ()
    if connector.protocol == "saml":
        return tuple(saml_attribute_values(payload, name))
    return claim_values(payload, name)


def _timezone(connector: Connector, payload: Mapping[str, Any]) -> str | None:
    name = connector.provisioning.timezone_attribute
    if connector.protocol == "saml":
        return saml_first_value(payload, name)
    for claim in (name, OIDC_ZONEINFO):
        values = [v.strip() for v in claim_values(payload, claim) if v.strip()]
        if values:
            return values[0]
    return None


def with_provisioning_values(connector: Connector, payload: Mapping[str, Any], claims: Claims) -> Claims:
    """``claims`` with every provisioning value the plugin left empty read from ``payload``."""
    provisioning = connector.provisioning
    return dataclasses.replace(
        claims,
        timezone=claims.timezone if claims.timezone is not None else _timezone(connector, payload),
        space_names=claims.space_names or _values(connector, payload, provisioning.space_attribute),
        space_roles=claims.space_roles or _values(connector, payload, provisioning.role_attribute),
        account_roles=claims.account_roles or _values(connector, payload, provisioning.account_role_attribute),
    )
