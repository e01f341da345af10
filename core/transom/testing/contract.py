"""Generic conformance checks for a connector plugin: subclass :class:`PluginContract` in
your tests, say what your plugin is and give it one valid settings table and two payloads::

    import transom_acme
    from transom.testing.contract import PluginContract

    class TestAcmeContract(PluginContract):
        plugin = transom_acme
        type_name = "acme"
        settings = {"issuer": "https://login.acme.test", "client_id": "app",
                    "client_secret": "s3cret"}
        sample_payload = {"uid": "u-1", "mail": "ada@acme.example"}
        payload_without_subject = {"mail": "ada@acme.example"}
        expected_claims = {"subject": "u-1", "email": "ada@acme.example"}

pytest then runs every ``test_*`` method below against the plugin. Each check goes through
Transom's own :class:`~transom.plugins.PluginHost` (routing by type, the fail-closed
wrappers, load-time validation), so what passes here is what the host will accept.
A plugin that speaks two protocols gets one subclass per protocol (``settings`` with
``protocol = "saml"`` in the second).
"""

from __future__ import annotations

import copy
import inspect
import re
import socket
import typing
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from importlib import metadata
from typing import Any, ClassVar

import pytest
from pydantic import BaseModel, SecretStr, ValidationError

from transom import hookspecs
from transom.config import bind_connectors, parse_config
from transom.connector import Claims, Connector, ConnectorType, OidcProvider, SamlIdp
from transom.errors import LoginRefused
from transom.plugins import ENTRY_POINT_GROUP, HOOK_NAMES, HOOK_PREFIX, PluginHost

#: a field whose name matches this holds a credential and must be a ``SecretStr``
SECRET_FIELD = re.compile(r"secret|password|passphrase|(^|_)token$|(^|_)api_key$|(^|_)private_key$")

#: a refusal's ``reason``: a stable dotted lower-case code naming the rule (``acme.uid_missing``)
REASON_CODE = re.compile(r"[a-z][a-z0-9_]*(\.[a-z0-9_]+)+")

#: a plain RFC 7644 User body: a dialect rewrite must leave it as it is
PLAIN_SCIM_USER: Mapping[str, Any] = {
    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
    "userName": "ada@acme.example",
    "externalId": "ext-ada",
    "name": {"givenName": "Ada", "familyName": "Lovelace"},
    "emails": [{"value": "ada@acme.example", "type": "work", "primary": True}],
    "active": True,
}


class NetworkAttempt(OSError):
    """Raised inside a hook that tried to open a connection while the network was blocked."""


@contextmanager
def no_network() -> Iterator[list[str]]:
    """Block outgoing connections and name lookups for the block; yields the attempts made
    (a plugin that swallows the error is still caught by the list)."""
    attempts: list[str] = []
    targets: list[tuple[Any, str]] = [(socket.socket, "connect"), (socket.socket, "connect_ex"),
                                      (socket, "create_connection"), (socket, "getaddrinfo")]
    saved = [(owner, name, getattr(owner, name)) for owner, name in targets]

    def refuse(what: str) -> Any:
        def blocked(*args: Any, **kwargs: Any) -> Any:
            target = next((a for a in args if isinstance(a, tuple | str)), "?")
            attempts.append(f"{what}({target!r})")
            raise NetworkAttempt(f"network I/O is not allowed here ({what})")
        return blocked

    for owner, name in targets:
        setattr(owner, name, refuse(name))
    try:
        yield attempts
    finally:
        for owner, name, original in saved:
            setattr(owner, name, original)


class _Held:
    error: Exception | None = None

    def reraise(self) -> None:
        if self.error is not None:
            raise self.error


@contextmanager
def _held() -> Iterator[_Held]:
    """Hold an exception raised in the block, so that the network check reports first (the
    host's fail-closed wrapper would otherwise turn the blocked call into a ConnectorError)."""
    held = _Held()
    try:
        yield held
    except Exception as exc:
        held.error = exc


def nested_models(annotation: Any) -> Iterator[type[BaseModel]]:
    """Every pydantic model named in a field annotation (through Optional, unions, lists,
    dicts...)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
        return
    for arg in typing.get_args(annotation):
        yield from nested_models(arg)


def annotation_has(annotation: Any, wanted: type) -> bool:
    if annotation is wanted:
        return True
    return any(annotation_has(arg, wanted) for arg in typing.get_args(annotation))


def all_models(model: type[BaseModel]) -> Iterator[tuple[str, type[BaseModel]]]:
    """``model`` and every model nested in its fields, with a dotted path for messages."""
    seen: set[type[BaseModel]] = set()
    stack: list[tuple[str, type[BaseModel]]] = [(model.__name__, model)]
    while stack:
        path, current = stack.pop()
        if current in seen:
            continue
        seen.add(current)
        yield path, current
        for name, field in current.model_fields.items():
            stack.extend((f"{path}.{name}", sub) for sub in nested_models(field.annotation))


class PluginContract:
    """Base class of a plugin's conformance tests (not collected itself: its name does not
    start with ``Test``; a subclass named ``Test...`` is)."""

    #: the plugin object: usually the module the entry point names
    plugin: ClassVar[object]
    #: the connector type it provides (its entry-point name)
    type_name: ClassVar[str]
    #: a valid ``[connectors.settings]`` table, secrets as plain strings
    settings: ClassVar[Mapping[str, Any]]
    #: a verified payload the plugin maps (OIDC: id_token claims; SAML: ``name_id``,
    #: ``name_id_format``, ``issuer``, ``attributes``)
    sample_payload: ClassVar[Mapping[str, Any]]
    #: the same payload without what the plugin takes the subject from
    payload_without_subject: ClassVar[Mapping[str, Any]]
    #: the ``reason`` that refusal carries (docs/plugin-authors.md); checked when set
    missing_subject_reason: ClassVar[str | None] = None
    #: ``Claims`` attributes ``sample_payload`` must map to (compared with ==)
    expected_claims: ClassVar[Mapping[str, Any]] = {}
    #: ``[connectors.provisioning]`` for the connector the checks build
    provisioning: ClassVar[Mapping[str, Any]] = {}
    #: check that an installed entry point in ``transom.connectors`` names ``plugin``
    #: (False while a test registers a plugin that is not installed)
    check_entry_point: ClassVar[bool] = True
    #: settings fields that hold credentials but whose names do not say so
    secret_fields: ClassVar[tuple[str, ...]] = ()
    #: the hook contract the plugin was written for (``transom.hookspecs.CONTRACT_VERSION``);
    #: when set, a Transom with another contract fails the check and says where to read why
    contract_version: ClassVar[int | None] = None

    # -- helpers -------------------------------------------------------------------------

    def plugin_host(self) -> PluginHost:
        return PluginHost.load([self.type_name], entry_points=[], extra_plugins={self.type_name: self.plugin})

    def connector(self, host: PluginHost | None = None, settings: Mapping[str, Any] | None = None) -> Connector:
        """A connector of this type, built from ``settings`` the way the host builds one."""
        host = host or self.plugin_host()
        entry = {"id": "contract", "type": self.type_name, "account": "contract",
                 "settings": dict(self.settings if settings is None else settings),
                 "provisioning": dict(self.provisioning)}
        config = parse_config({"connectors": [entry]})
        connector: Connector = bind_connectors(config, host.types)["contract"]
        return connector

    def connector_type(self) -> ConnectorType:
        return self.plugin_host().types[self.type_name]

    def hook_functions(self) -> dict[str, Any]:
        return {name: getattr(self.plugin, name) for name in dir(self.plugin)
                if name.startswith(HOOK_PREFIX) and callable(getattr(self.plugin, name))}

    # -- the plugin as a whole -------------------------------------------------------------

    def test_loads_and_declares_its_type(self) -> None:
        declared = self.connector_type()
        assert declared.name == self.type_name
        assert declared.protocols, "a connector type speaks at least one protocol"
        assert set(declared.protocols) <= {"oidc", "saml"}, declared.protocols
        assert issubclass(declared.settings_model, BaseModel)
        assert declared.version, "declare the plugin's version in ConnectorType.version"

    def test_entry_point_names_the_plugin(self) -> None:
        if not self.check_entry_point:
            pytest.skip("check_entry_point is False")
        found = [ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP) if ep.name == self.type_name]
        assert found, f"no entry point '{self.type_name}' in group '{ENTRY_POINT_GROUP}': is the package installed?"
        assert len({(ep.value, ep.dist.name if ep.dist else "?") for ep in found}) == 1, found
        assert found[0].load() is self.plugin

    def test_written_for_this_hook_contract(self) -> None:
        if self.contract_version is None:
            pytest.skip("contract_version is not set")
        assert self.contract_version == hookspecs.CONTRACT_VERSION, (
            f"the plugin was written for hook contract {self.contract_version}; this Transom has contract "
            f"{hookspecs.CONTRACT_VERSION}: see docs/plugin-authors.md, 'Versioning and deprecation'")

    def test_implements_no_deprecated_hook(self) -> None:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            self.plugin_host()
        deprecated = [str(w.message) for w in caught if issubclass(w.category, hookspecs.HookDeprecationWarning)]
        assert not deprecated, f"the plugin implements deprecated hooks or parameters: {deprecated}"

    def test_hookimpls_are_marked_plain_def_without_defaults(self) -> None:
        hooks = self.hook_functions()
        assert "transom_connector_type" in hooks
        for name, function in hooks.items():
            assert name in HOOK_NAMES, f"{name} is not a Transom hook (known: {', '.join(HOOK_NAMES)})"
            options = getattr(function, f"{hookspecs.PROJECT}_impl", None)
            assert options is not None, f"{name} lacks @hookimpl"
            assert not (options.get("wrapper") or options.get("hookwrapper")), (
                f"{name}: wrappers belong to the host; a plugin's hook translates")
            assert not (inspect.iscoroutinefunction(function) or inspect.isasyncgenfunction(function)
                        or inspect.isgeneratorfunction(function)), f"{name} must be a plain def"
            spec = set(inspect.signature(getattr(hookspecs, name)).parameters)
            for parameter in inspect.signature(function).parameters.values():
                assert parameter.name in spec, f"{name}: parameter {parameter.name} is not in the hookspec"
                assert parameter.default is inspect.Parameter.empty, (
                    f"{name}: parameter {parameter.name} has a default; hooks are called with every "
                    "argument by keyword")

    # -- settings --------------------------------------------------------------------------

    def test_settings_refuse_unknown_keys(self) -> None:
        model = self.connector_type().settings_model
        model.model_validate(dict(self.settings))
        with pytest.raises(ValidationError) as refused:
            model.model_validate({**self.settings, "surely_not_a_setting": "x"})
        assert any(e["type"] == "extra_forbidden" for e in refused.value.errors())
        for path, nested in all_models(model):
            assert nested.model_config.get("extra") == "forbid", (
                f"{path}: set model_config = ConfigDict(extra='forbid') so a typo is an error")

    def test_secrets_are_secret_str(self) -> None:
        model = self.connector_type().settings_model
        built = model.model_validate(dict(self.settings))
        for path, nested in all_models(model):
            for name, field in nested.model_fields.items():
                if SECRET_FIELD.search(name) or name in self.secret_fields:
                    assert annotation_has(field.annotation, SecretStr), (
                        f"{path}.{name} holds a credential: type it SecretStr (operators write "
                        "{ env = \"NAME\" })")
        for name, value in self.settings.items():
            if isinstance(value, str) and (SECRET_FIELD.search(name) or name in self.secret_fields):
                assert value not in repr(built) and value not in str(built), f"{name} shows in the settings' repr"

    # -- claims ------------------------------------------------------------------------------

    def test_sample_payload_maps_to_claims(self) -> None:
        host = self.plugin_host()
        connector = self.connector(host)
        with no_network() as attempts, _held() as failure:
            claims = host.extract_claims(connector, dict(self.sample_payload))
        assert not attempts, f"transom_extract_claims tried the network: {attempts}"
        failure.reraise()
        assert isinstance(claims, Claims), "the sample payload must map to Claims"
        assert isinstance(claims.subject, str) and claims.subject.strip(), "Claims.subject must not be blank"
        for attribute, expected in self.expected_claims.items():
            assert getattr(claims, attribute) == expected, attribute

    def test_missing_subject_is_login_refused(self) -> None:
        host = self.plugin_host()
        with pytest.raises(LoginRefused) as refused:
            host.extract_claims(self.connector(host), dict(self.payload_without_subject))
        reason = refused.value.reason
        if reason is not None:
            assert REASON_CODE.fullmatch(reason), f"reason {reason!r} is not a dotted lower-case code (acme.x_missing)"
        if self.missing_subject_reason is not None:
            assert reason == self.missing_subject_reason, (reason, self.missing_subject_reason)

    def test_extract_claims_does_not_change_its_payload(self) -> None:
        host = self.plugin_host()
        payload = copy.deepcopy(dict(self.sample_payload))
        host.extract_claims(self.connector(host), payload)
        assert payload == self.sample_payload

    # -- provider hooks ----------------------------------------------------------------------

    def test_provider_hook_does_no_io(self) -> None:
        host = self.plugin_host()
        connector = self.connector(host)
        with no_network() as attempts, _held() as failure:
            if connector.protocol == "oidc":
                provider: OidcProvider | SamlIdp = host.oidc_provider(connector)
            else:
                provider = host.saml_idp(connector)
        assert not attempts, f"the provider hook tried the network: {attempts}"
        failure.reraise()
        if isinstance(provider, OidcProvider):
            assert provider.issuers, "an OIDC provider names at least one issuer"
            assert all(provider.issuers), "issuers must not be blank"
            assert "openid" in provider.scopes
        else:
            assert provider.metadata_file or provider.metadata_url or (
                provider.entity_id and provider.sso_url and provider.certificates)

    # -- SCIM ------------------------------------------------------------------------------------

    def test_scim_normalize_leaves_a_plain_body_alone(self) -> None:
        if "transom_scim_normalize" not in self.hook_functions():
            pytest.skip("the plugin does not rewrite SCIM bodies")
        host = self.plugin_host()
        connector = self.connector(host)
        body = copy.deepcopy(dict(PLAIN_SCIM_USER))
        with no_network() as attempts, _held() as failure:
            result = host.scim_normalize(connector, resource_type="User", operation="create", body=body,
                                         headers={"content-type": "application/scim+json"})
        assert not attempts, f"transom_scim_normalize tried the network: {attempts}"
        failure.reraise()
        assert body == PLAIN_SCIM_USER, "transom_scim_normalize must not mutate the body"
        assert result is None or result == PLAIN_SCIM_USER

