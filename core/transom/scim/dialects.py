"""IdP dialects: every SCIM write body passes through ``transom_scim_normalize`` for each
connector of the token's account, in configuration order (hookspecs.py).

Attribution (docs/scim.md): a request is attributed to the IdPs *configured for the token's
account*, not to request headers. Entra's User-Agent is undocumented and Okta's varies, and
an account's SCIM token is pasted into that account's IdP app, so the account's connectors
are the best evidence of who is calling. Each plugin's rewrites are no-ops on plain RFC 7644
bodies, so an account with both an Okta and an Entra connector still works. On top of the
plugins, the host is tolerant for every client (resource.py, patch.py): case-insensitive
attribute names and ``op`` values, string booleans, nulls as "unassigned", unknown and
read-only attributes ignored, dotted and URN-qualified keys in path-less PATCH values.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from transom.runtime import Runtime

#: never handed to plugins: they translate bodies and have no use for credentials
_PRIVATE_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})


def normalize(
    runtime: Runtime,
    *,
    account_name: str,
    resource_type: str,
    operation: str,
    body: dict[str, Any],
    headers: Mapping[str, str],
) -> dict[str, Any]:
    visible = {k.lower(): v for k, v in headers.items() if k.lower() not in _PRIVATE_HEADERS}
    for connector in runtime.connectors_of_account(account_name):
        result = runtime.plugins.scim_normalize(
            connector, resource_type=resource_type, operation=operation, body=body, headers=visible
        )
        if result is not None:
            body = result
    return body
