"""Loading connector plugins and calling their hooks.

:class:`PluginHost` is the only code in Transom that touches ``pm.hook``. Plugins are
found through the entry-point group ``transom.connectors``; only the types the config
enables are imported.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Generator, Iterable, Mapping
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import httpx
import pluggy

from transom import hookspecs, metrics
from transom.connector import PROBE_STATUSES, Claims, Connector, ConnectorType, OidcProvider, ProbeCheck, SamlIdp
from transom.errors import ConfigError, ConnectorError, TransomError
from transom.observe import note_connector

log = logging.getLogger("transom.plugins")

ENTRY_POINT_GROUP = "transom.connectors"
HOOK_PREFIX = "transom_"
HOOK_NAMES = tuple(
    name for name, _ in inspect.getmembers(hookspecs, inspect.isfunction)
    if name.startswith(HOOK_PREFIX)
)


@dataclass(frozen=True)
class InstalledPlugin:
    type_name: str
    distribution: str
    version: str
    value: str


def installed_plugins(
    entry_points: Iterable[metadata.EntryPoint] | None = None,
) -> list[InstalledPlugin]:
    """Every connector plugin installed, without importing any of them."""
    eps = list(entry_points) if entry_points is not None else _entry_points()
    found = []
    for ep in eps:
        dist = ep.dist
        found.append(
            InstalledPlugin(
                type_name=ep.name,
                distribution=dist.metadata["Name"] if dist is not None else "?",
                version=dist.version if dist is not None else "?",
                value=ep.value,
            )
        )
    return sorted(found, key=lambda p: (p.type_name, p.distribution))


def _entry_points() -> list[metadata.EntryPoint]:
    return list(metadata.entry_points(group=ENTRY_POINT_GROUP))


class _FailClosed:
    """One wrapper per hook: times the call, logs connector id and type (never values) and
    turns any non-Transom exception into a ConnectorError."""

    @staticmethod
    def _guard(hook: str, connector: Connector | None) -> Generator[None, Any, Any]:
        started = time.perf_counter()
        where = f"connector={connector.id} type={connector.type}" if connector else ""
        try:
            result = yield
        except TransomError as exc:
            # A plugin's refusal: the hook's name rides on the error into the one refusal line
            # (transom.observe), which already names the connector.
            exc.add_log_detail(f"hook={hook}")
            log.debug("hook %s raised a Transom error %s", hook, where)
            raise
        except Exception as exc:
            log.warning("hook %s failed %s: %s", hook, where, type(exc).__name__)
            raise ConnectorError(
                f"connector plugin failed in {hook}"
                + (f" for connector '{connector.id}'" if connector else "")
            ) from exc
        finally:
            elapsed = time.perf_counter() - started
            metrics.hook(hook, connector.type if connector else "", elapsed)
            log.debug("hook %s took %.2f ms %s", hook, elapsed * 1e3, where)
        return result

    @hookspecs.hookimpl(wrapper=True, specname="transom_connector_type")
    def guard_connector_type(self) -> Generator[None, Any, Any]:
        return (yield from self._guard("transom_connector_type", None))

    @hookspecs.hookimpl(wrapper=True, specname="transom_oidc_provider")
    def guard_oidc_provider(self, connector: Connector) -> Generator[None, Any, Any]:
        return (yield from self._guard("transom_oidc_provider", connector))

    @hookspecs.hookimpl(wrapper=True, specname="transom_saml_idp")
    def guard_saml_idp(self, connector: Connector) -> Generator[None, Any, Any]:
        return (yield from self._guard("transom_saml_idp", connector))

    @hookspecs.hookimpl(wrapper=True, specname="transom_extract_claims")
    def guard_extract_claims(self, connector: Connector) -> Generator[None, Any, Any]:
        return (yield from self._guard("transom_extract_claims", connector))

    @hookspecs.hookimpl(wrapper=True, specname="transom_lookup_group_ids")
    def guard_lookup_group_ids(self, connector: Connector) -> Generator[None, Any, Any]:
        return (yield from self._guard("transom_lookup_group_ids", connector))

    @hookspecs.hookimpl(wrapper=True, specname="transom_scim_normalize")
    def guard_scim_normalize(self, connector: Connector) -> Generator[None, Any, Any]:
        return (yield from self._guard("transom_scim_normalize", connector))

    @hookspecs.hookimpl(wrapper=True, specname="transom_probe")
    def guard_probe(self, connector: Connector) -> Generator[None, Any, Any]:
        return (yield from self._guard("transom_probe", connector))


def _check_hook_names(plugin: object, type_name: str) -> None:
    """pluggy validates only marked functions; catch a ``transom_*`` function that is
    misspelled or forgot its ``@hookimpl`` marker as well."""
    for attr in dir(plugin):
        if not attr.startswith(HOOK_PREFIX):
            continue
        value = getattr(plugin, attr, None)
        if not callable(value):
            continue
        if attr not in HOOK_NAMES:
            raise ConfigError(
                f"plugin for connector type '{type_name}' defines {attr}, which is not a "
                f"Transom hook (known: {', '.join(HOOK_NAMES)})"
            )
        if not hasattr(value, f"{hookspecs.PROJECT}_impl"):
            raise ConfigError(
                f"plugin for connector type '{type_name}' defines {attr} without @hookimpl"
            )
        if inspect.iscoroutinefunction(value):
            raise ConfigError(
                f"plugin for connector type '{type_name}': {attr} is async; hooks must be "
                "plain def"
            )


class PluginHost:
    """The typed facade over pluggy: the only caller of ``pm.hook``.

    Every per-connector hook is routed by ``connector.type``: it runs on the core's
    fail-closed wrappers plus the one plugin registered for that type, never on another
    type's plugin. A plugin therefore only ever sees its own connectors, and a careless or
    hostile plugin cannot answer for anyone else's.
    """

    def __init__(self, pm: pluggy.PluginManager, types: Mapping[str, ConnectorType]) -> None:
        self._pm = pm
        self.types: dict[str, ConnectorType] = dict(types)
        self._callers: dict[tuple[str, str], pluggy.HookCaller] = {}

    @classmethod
    def load(
        cls,
        enabled_types: Iterable[str],
        *,
        entry_points: Iterable[metadata.EntryPoint] | None = None,
        extra_plugins: Mapping[str, object] | None = None,
    ) -> PluginHost:
        """Import and register only the plugins of ``enabled_types``.

        ``extra_plugins`` registers already-imported plugin objects by type name (tests and
        ``transom demo``); they go through the same validation as entry points.
        """
        enabled = sorted(set(enabled_types))
        extra = dict(extra_plugins or {})
        eps = list(entry_points) if entry_points is not None else _entry_points()
        by_name: dict[str, list[metadata.EntryPoint]] = {}
        for ep in eps:
            by_name.setdefault(ep.name, []).append(ep)

        pm = pluggy.PluginManager(hookspecs.PROJECT)
        pm.add_hookspecs(hookspecs)
        pm.register(_FailClosed(), name=_GUARDS)
        for type_name in enabled:
            plugin = extra[type_name] if type_name in extra else _load_entry_point(type_name, by_name)
            _check_hook_names(plugin, type_name)
            try:
                pm.register(plugin, name=_plugin_name(type_name))
            except (ValueError, pluggy.PluginValidationError) as exc:
                raise ConfigError(f"connector type '{type_name}': {_one_line(exc)}") from exc
        try:
            pm.check_pending()
        except pluggy.PluginValidationError as exc:
            raise ConfigError(f"invalid plugin: {_one_line(exc)}") from exc

        host = cls(pm, {})
        for type_name in enabled:
            host.types[type_name] = host._describe(type_name)
        return host

    def _describe(self, type_name: str) -> ConnectorType:
        """Ask the plugin registered as ``type_name`` (and only it) what it provides."""
        try:
            declared = self._caller("transom_connector_type", type_name)()
        except TransomError as exc:
            raise ConfigError(f"connector type '{type_name}': its plugin failed to describe itself: {exc}") from exc
        for ct in declared:
            if not isinstance(ct, ConnectorType):
                raise ConfigError(
                    f"connector type '{type_name}': its plugin returned {type(ct).__name__} from "
                    "transom_connector_type, expected ConnectorType"
                )
        names = [ct.name for ct in declared]
        if names != [type_name]:
            raise ConfigError(
                f"plugin registered as connector type '{type_name}' does not declare that type in "
                f"transom_connector_type (declared: {', '.join(sorted(names)) or 'none'})"
            )
        found: ConnectorType = declared[0]
        return found

    def _caller(self, hook: str, type_name: str) -> pluggy.HookCaller:
        """The hook as seen by the core's wrappers and the plugin of ``type_name`` alone."""
        key = (hook, type_name)
        caller = self._callers.get(key)
        if caller is None:
            own = _plugin_name(type_name)
            others = [
                plugin for name, plugin in self._pm.list_name_plugin()
                if name != own and name != _GUARDS and plugin is not None
            ]
            # subset_hook_caller shares the real hook's implementations minus ``others``;
            # with nobody to remove, the full caller is already the subset.
            caller = self._pm.subset_hook_caller(hook, others) if others else getattr(self._pm.hook, hook)
            self._callers[key] = caller
        return caller

    # -- typed hook calls ---------------------------------------------------------------

    def oidc_provider(self, connector: Connector) -> OidcProvider:
        note_connector(connector)
        result = self._caller("transom_oidc_provider", connector.type)(connector=connector)
        if not isinstance(result, OidcProvider):
            raise ConnectorError(
                f"connector '{connector.id}' (type {connector.type}) provides no OIDC provider"
            )
        return result

    def saml_idp(self, connector: Connector) -> SamlIdp:
        note_connector(connector)
        result = self._caller("transom_saml_idp", connector.type)(connector=connector)
        if not isinstance(result, SamlIdp):
            raise ConnectorError(
                f"connector '{connector.id}' (type {connector.type}) provides no SAML IdP"
            )
        return result

    def extract_claims(self, connector: Connector, payload: Mapping[str, Any]) -> Claims | None:
        result = self._caller("transom_extract_claims", connector.type)(connector=connector, payload=payload)
        if result is not None and not isinstance(result, Claims):
            raise ConnectorError(f"connector '{connector.id}' returned invalid claims")
        return result

    def lookup_group_ids(
        self, connector: Connector, claims: Claims, payload: Mapping[str, Any], http: httpx.Client
    ) -> list[str] | None:
        note_connector(connector)
        result = self._caller("transom_lookup_group_ids", connector.type)(
            connector=connector, claims=claims, payload=payload, http=http
        )
        if result is None:
            return None
        if not isinstance(result, list | tuple) or not all(isinstance(g, str) for g in result):
            raise ConnectorError(f"connector '{connector.id}' returned invalid group ids")
        return list(result)

    def scim_normalize(
        self,
        connector: Connector,
        *,
        resource_type: str,
        operation: str,
        body: Mapping[str, Any],
        headers: Mapping[str, str],
    ) -> dict[str, Any] | None:
        result = self._caller("transom_scim_normalize", connector.type)(
            connector=connector,
            resource_type=resource_type,
            operation=operation,
            body=body,
            headers=headers,
        )
        if result is not None and not isinstance(result, dict):
            raise ConnectorError(f"connector '{connector.id}' returned an invalid SCIM body")
        return result

    def probe(self, connector: Connector, http: httpx.Client) -> list[ProbeCheck]:
        """The plugin's own checks of what ``connector`` depends on (``transom.probe``)."""
        note_connector(connector)
        result = self._caller("transom_probe", connector.type)(connector=connector, http=http)
        if result is None:
            return []
        if not isinstance(result, list | tuple) or not all(
                isinstance(c, ProbeCheck) and c.status in PROBE_STATUSES for c in result):
            raise ConnectorError(f"connector '{connector.id}' returned invalid probe checks")
        return list(result)


_GUARDS = "transom-core-guards"


def _plugin_name(type_name: str) -> str:
    return f"transom-connector-{type_name}"


def _load_entry_point(type_name: str, by_name: Mapping[str, list[metadata.EntryPoint]]) -> object:
    candidates = by_name.get(type_name, [])
    distinct = {(ep.value, _dist_name(ep)) for ep in candidates}
    if not candidates:
        raise ConfigError(
            f"connector type '{type_name}' is not installed: no entry point "
            f"'{type_name}' in group '{ENTRY_POINT_GROUP}' (is its plugin installed?)"
        )
    if len(distinct) > 1:
        owners = ", ".join(sorted(f"{d} ({v})" for v, d in distinct))
        raise ConfigError(
            f"connector type '{type_name}' is provided by more than one package: "
            f"{owners}; uninstall all but one"
        )
    try:
        return candidates[0].load()
    except Exception as exc:
        raise ConfigError(
            f"connector type '{type_name}': importing {candidates[0].value} "
            f"failed: {type(exc).__name__}: {exc}"
        ) from exc


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())


def _dist_name(ep: metadata.EntryPoint) -> str:
    return ep.dist.metadata["Name"] if ep.dist is not None else "?"
