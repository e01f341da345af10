"""The contract base class fails a plugin for each rule it checks: one careless plugin per
rule, each otherwise fine, and the check that must catch it."""

from __future__ import annotations

import types
from collections.abc import Callable, Mapping
from typing import Any

import httpx
import pytest
from pydantic import BaseModel, ConfigDict, SecretStr

from transom.connector import Claims, Connector, ConnectorType, OidcProvider
from transom.errors import LoginRefused
from transom.hookspecs import hookimpl
from transom.testing.contract import PluginContract

TYPE = "careless"


class GoodSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    issuer: str
    client_secret: SecretStr


class OpenSettings(BaseModel):  # forgets extra="forbid"
    issuer: str
    client_secret: SecretStr


class PlainSecretSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    issuer: str
    client_secret: str


def connector_type(settings_model: type[BaseModel]) -> Callable[[], ConnectorType]:
    def transom_connector_type() -> ConnectorType:
        return ConnectorType(name=TYPE, protocols=("oidc",), settings_model=settings_model, version="1")
    return transom_connector_type


def provider(connector: Connector) -> OidcProvider:
    settings: Any = connector.settings
    return OidcProvider(issuers=(settings.issuer,), authorization_endpoint=f"{settings.issuer}/a",
                        token_endpoint=f"{settings.issuer}/t", jwks_uri=f"{settings.issuer}/k", client_id="c",
                        client_secret=settings.client_secret.get_secret_value())


def claims(connector: Connector, payload: Mapping[str, Any]) -> Claims:
    if not payload.get("uid"):
        raise LoginRefused("no subject")
    return Claims(subject=str(payload["uid"]))


def provider_calling_home(connector: Connector) -> OidcProvider:
    httpx.get(f"{connector.settings.issuer}/.well-known/openid-configuration", timeout=1)  # type: ignore[attr-defined]
    return provider(connector)


def claims_without_refusal(connector: Connector, payload: Mapping[str, Any]) -> Claims:
    return Claims(subject=str(payload.get("uid", "")))


def claims_with_a_shapeless_reason(connector: Connector, payload: Mapping[str, Any]) -> Claims:
    if not payload.get("uid"):
        raise LoginRefused("no subject", reason="No UID!")
    return Claims(subject=str(payload["uid"]))


def claims_with_default(connector: Connector, payload: Mapping[str, Any] = {}) -> Claims:
    return claims(connector, payload)


def claims_mutating(connector: Connector, payload: Mapping[str, Any]) -> Claims:
    payload["uid"] = str(payload.get("uid")).upper()  # type: ignore[index]
    return claims(connector, payload)


def plugin(**overrides: Callable[..., Any]) -> types.ModuleType:
    hooks: dict[str, Callable[..., Any]] = {"transom_connector_type": connector_type(GoodSettings),
                                            "transom_oidc_provider": provider,
                                            "transom_extract_claims": claims, **overrides}
    module = types.ModuleType("careless_plugin")
    for name, function in hooks.items():
        setattr(module, name, hookimpl(function))
    return module


def contract(module: types.ModuleType) -> PluginContract:
    class Careless(PluginContract):
        plugin = module
        type_name = TYPE
        settings = {"issuer": "http://127.0.0.1:9", "client_secret": "careless-secret-value"}
        sample_payload = {"uid": "u-1"}
        payload_without_subject = {"mail": "ada@acme.example"}
        check_entry_point = False

    return Careless()


FAILS = (AssertionError, pytest.fail.Exception)


def test_a_careful_plugin_passes_every_check() -> None:
    checks = contract(plugin())
    for name in dir(checks):
        if name.startswith("test_") and name not in ("test_entry_point_names_the_plugin",  # not installed
                                                     "test_written_for_this_hook_contract",  # not declared
                                                     "test_scim_normalize_leaves_a_plain_body_alone"):
            getattr(checks, name)()


@pytest.mark.parametrize(("module", "check"), [
    (plugin(transom_connector_type=connector_type(OpenSettings)), "test_settings_refuse_unknown_keys"),
    (plugin(transom_connector_type=connector_type(PlainSecretSettings)), "test_secrets_are_secret_str"),
    (plugin(transom_oidc_provider=provider_calling_home), "test_provider_hook_does_no_io"),
    (plugin(transom_extract_claims=claims_without_refusal), "test_missing_subject_is_login_refused"),
    (plugin(transom_extract_claims=claims_with_a_shapeless_reason), "test_missing_subject_is_login_refused"),
    (plugin(transom_extract_claims=claims_with_default), "test_hookimpls_are_marked_plain_def_without_defaults"),
    (plugin(transom_extract_claims=claims_mutating), "test_extract_claims_does_not_change_its_payload"),
], ids=["open settings", "plain-str secret", "provider does I/O", "no refusal", "shapeless reason", "default",
        "mutates payload"])
def test_each_rule_catches_its_careless_plugin(module: types.ModuleType, check: str) -> None:
    with pytest.raises(FAILS):
        getattr(contract(module), check)()


def test_missing_subject_reason_is_checked_when_declared() -> None:
    checks = contract(plugin())
    checks.test_missing_subject_is_login_refused()  # no reason declared, none given: fine
    type(checks).missing_subject_reason = "careless.uid_missing"
    with pytest.raises(AssertionError, match=r"careless\.uid_missing"):
        checks.test_missing_subject_is_login_refused()


def test_provider_io_is_reported_as_io_not_as_a_connector_error() -> None:
    with pytest.raises(AssertionError, match="tried the network"):
        contract(plugin(transom_oidc_provider=provider_calling_home)).test_provider_hook_does_no_io()


def test_a_plugin_on_a_deprecated_hook_fails_the_contract(monkeypatch: pytest.MonkeyPatch) -> None:
    """The deprecation mechanism of docs/plugin-authors.md: a deprecated hookspec carries
    ``warn_on_impl``; registering a plugin that implements it warns, and the contract fails."""
    from transom import hookspecs

    checks = contract(plugin())
    checks.test_implements_no_deprecated_hook()
    monkeypatch.setitem(hookspecs.transom_extract_claims.transom_spec, "warn_on_impl",  # type: ignore[attr-defined]
                        hookspecs.HookDeprecationWarning("transom_extract_claims is deprecated: use transom_x"))
    with pytest.raises(AssertionError, match="transom_extract_claims is deprecated"):
        checks.test_implements_no_deprecated_hook()


def test_a_plugin_written_for_another_contract_is_told_so() -> None:
    from transom import hookspecs

    checks = contract(plugin())
    type(checks).contract_version = hookspecs.CONTRACT_VERSION
    checks.test_written_for_this_hook_contract()
    type(checks).contract_version = hookspecs.CONTRACT_VERSION - 1
    with pytest.raises(AssertionError, match="written for hook contract"):
        checks.test_written_for_this_hook_contract()
