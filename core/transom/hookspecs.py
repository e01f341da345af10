"""Hook specifications: the whole contract between the Transom host and connector plugins.

A connector plugin is a module (or object) registered through the entry-point group
``transom.connectors`` under the name of the connector type it provides. It implements
some of the hooks below, decorated with :data:`hookimpl`::

    from transom.hookspecs import hookimpl

    @hookimpl
    def transom_connector_type() -> ConnectorType: ...

Rules every implementation follows:

* Hooks are plain ``def`` functions. An ``async def`` returns a coroutine, which pluggy
  counts as a result and which would end every first-result call.
* Hooks are routed by connector type: the host calls a per-connector hook only on the
  plugin registered for ``connector.type``. A plugin therefore only ever sees its own
  connectors (``connector.settings`` is always an instance of its own settings model:
  annotate ``connector: Connector[MySettings]``) and never guards on the type.
* The host reads the provisioning attributes (``[connectors.provisioning]``: space, role,
  timezone, account role) from the verified payload itself; plugins map identity and
  groups only. A value a plugin does put in those ``Claims`` fields overrides the host's.
* Plugins translate; they never verify signatures, never touch the database and never
  raise HTTP exceptions. To refuse, raise a :class:`transom.errors.TransomError` subclass;
  any other exception is turned into a ``ConnectorError`` by the host (it fails closed).
* Hook parameters have no defaults. Hooks are called with keyword arguments only, so an
  implementation may accept any subset of the parameters, in any order.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import httpx

    from transom.connector import Claims, Connector, ConnectorType, OidcProvider, ProbeCheck, SamlIdp

PROJECT = "transom"

#: Version of the hook contract: the hooks below, their parameters and rules, and the value
#: types of ``transom.connector``. Raised only by an incompatible change (a hook or parameter
#: removed, a meaning changed); additions are marked ``.. versionadded::`` instead.
#: 1 = Transom 0.1 (every plugin saw every connector and guarded on ``connector.type``);
#: 2 = Transom 0.2 (hooks routed by connector type, provisioning attributes read by the host).
#: Policy: docs/plugin-authors.md, "Versioning and deprecation".
CONTRACT_VERSION = 2


class HookDeprecationWarning(DeprecationWarning):
    """Warned when a plugin registers an implementation of a deprecated hook or parameter
    (the hookspec's ``warn_on_impl`` / ``warn_on_impl_args``)."""


hookspec = pluggy.HookspecMarker(PROJECT)
#: decorate hook implementations in plugins with this marker
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def transom_connector_type() -> ConnectorType:  # type: ignore[empty-body]
    """Describe the connector type this plugin provides.

    Called once when the plugin is loaded, before any connector is built.

    :return: the :class:`~transom.connector.ConnectorType`: its name (equal to the
        entry-point name), the protocols it speaks, its settings model (a pydantic model
        that validates ``[connectors.settings]``) and its capabilities (for example
        ``"group_sync"``).

    Every loaded plugin must implement this hook. The host asks each plugin on its own
    and refuses to start unless it declares exactly the type it is registered as.

    .. versionadded:: 0.1
    """


@hookspec(firstresult=True)
def transom_oidc_provider(connector: Connector) -> OidcProvider | None:
    """Tell the host where the OIDC identity provider of ``connector`` lives.

    Called when an OIDC login starts and when an id_token is verified, for connectors
    whose protocol is ``oidc``. Must not do network I/O: derive everything from
    ``connector.settings`` so that every URL can point at a local server.

    :param connector: a configured connector of this plugin's type.
    :return: issuers, endpoints, JWKS URL and client credentials; ``None`` (the host
        refuses the login with a configuration error) if this connector does not speak OIDC.

    Routed to the plugin of ``connector.type`` only.

    .. versionadded:: 0.1
    .. versionchanged:: 0.2 routed by connector type; no ``None``-unless-mine guard.
    """


@hookspec(firstresult=True)
def transom_saml_idp(connector: Connector) -> SamlIdp | None:
    """Tell the host where the SAML identity provider of ``connector`` lives.

    Called when a SAML login starts, when SP metadata is built and when a response is
    validated, for connectors whose protocol is ``saml``. The host reads metadata files
    and URLs named in the result; the plugin does no I/O beyond reading local files.

    :param connector: a configured connector of this plugin's type.
    :return: entity ID, SSO URL, signing certificates and/or a metadata source; ``None``
        (a configuration error) if this connector does not speak SAML.

    Routed to the plugin of ``connector.type`` only.

    .. versionadded:: 0.1
    .. versionchanged:: 0.2 routed by connector type; no ``None``-unless-mine guard.
    """


@hookspec(firstresult=True)
def transom_extract_claims(connector: Connector, payload: Mapping[str, Any]) -> Claims | None:
    """Translate a verified IdP payload into the canonical :class:`~transom.connector.Claims`.

    Called after the host has verified the id_token or SAML response, once per login.

    :param connector: the connector the login came through (of this plugin's type).
    :param payload: for OIDC, the verified id_token claims; for SAML, a mapping with
        ``name_id``, ``name_id_format``, ``issuer`` and ``attributes`` (attribute name to
        list of string values). Never contains unverified data.
    :return: identity and groups as claims. Leave ``space_names``, ``space_roles``,
        ``account_roles`` and ``timezone`` empty: the host reads them with the connector's
        ``[connectors.provisioning]`` names (a value set here overrides the host's). For an
        OIDC connector, ``None`` lets the host map the standard OIDC claims itself. Raise
        ``LoginRefused`` when a required value (such as the subject) is missing.

    Routed to the plugin of ``connector.type`` only.

    .. versionadded:: 0.1
    .. versionchanged:: 0.2 routed by connector type; provisioning values read by the host.
    """


@hookspec(firstresult=True)
def transom_lookup_group_ids(
    connector: Connector, claims: Claims, payload: Mapping[str, Any], http: httpx.Client
) -> list[str] | None:
    """Resolve the complete list of the user's IdP group ids when the payload could not
    carry it (``claims.groups`` is in the ``OVERAGE`` state, as with Entra's overage).

    Called before the login's database transaction opens, only for overage, only when the
    connector syncs groups.

    :param connector: the connector the login came through (of this plugin's type).
    :param claims: the claims the plugin extracted.
    :param payload: the verified payload they came from.
    :param http: a synchronous ``httpx.Client`` to call the IdP's API with.
    :return: every group id the user belongs to, or ``None`` when this plugin cannot
        resolve an overage (memberships stay unchanged). Raise ``UpstreamError`` when the
        IdP cannot be asked: the host then changes no membership and lets the login succeed.

    Routed to the plugin of ``connector.type`` only.

    .. versionadded:: 0.1
    .. versionchanged:: 0.2 routed by connector type.
    """


@hookspec(firstresult=True)
def transom_scim_normalize(
    connector: Connector,
    resource_type: str,
    operation: str,
    body: Mapping[str, Any],
    headers: Mapping[str, str],
) -> dict[str, Any] | None:
    """Rewrite an IdP's SCIM request body into plain RFC 7644 form.

    Called for every SCIM write request (``POST``, ``PUT``, ``PATCH``) before the host
    parses it, once per connector of the token's account, in configuration order, each
    time on that connector's own plugin; each connector sees the body the previous one
    returned. Connectors of other accounts, and plugins of types the account does not use,
    never see the body. Pure: no I/O.

    :param connector: a connector of the account the SCIM token belongs to.
    :param resource_type: ``"User"`` or ``"Group"``.
    :param operation: ``"create"``, ``"replace"`` or ``"patch"``.
    :param body: the parsed JSON body (do not mutate it; return a new dict).
    :param headers: the request headers, lower-cased names.
    :return: the normalised body, or ``None`` if nothing needs rewriting.

    Routed to the plugin of ``connector.type`` only.

    .. versionadded:: 0.1
    .. versionchanged:: 0.2 routed by connector type.
    """


@hookspec(firstresult=True)
def transom_probe(connector: Connector, http: httpx.Client) -> list[ProbeCheck] | None:
    """Check what ``connector`` depends on beyond the endpoints the host probes itself.

    Called by ``transom check-config --probe``, ``GET /api/admin/connectors/{id}/check`` and
    the admin console's "Check now", after the host's own checks (OIDC discovery and JWKS,
    SAML metadata and certificates); never during a login. Fetch only what a login or a
    lookup of this connector really needs (Entra: an app token for Microsoft Graph when the
    groups overage is looked up), and drop what you fetched unread.

    :param connector: a configured connector of this plugin's type.
    :param http: a synchronous ``httpx.Client`` (the host's, with its timeouts and metrics).
    :return: the checks to add to the report, each a
        :class:`~transom.connector.ProbeCheck` whose ``status`` is ``ok``, ``info``, ``warn``
        or ``fail`` and whose ``detail`` holds no secret or token contents; ``None`` (or an
        empty list) when there is nothing more to check. Report an unreachable dependency as
        a ``fail`` check rather than raising; a ``TransomError`` raised here is reported as
        one failed ``plugin`` check.

    Routed to the plugin of ``connector.type`` only.

    .. versionadded:: 0.2
    """
