"""Acme Login, an OpenID Connect IdP with its own claim names: ``uid`` (the immutable user
id; ``sub`` is pairwise per application), ``mail``, ``login``, ``cn`` (display name) and
``memberOf`` (group ids)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, SecretStr

from transom.connector import GROUP_SYNC, Claims, Connector, ConnectorType, GroupsClaim, OidcProvider, as_str_list
from transom.errors import LoginRefused
from transom.hookspecs import hookimpl


class AcmeSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a typo in the config is an error

    issuer: str  # e.g. "https://login.acme.example"
    client_id: str
    client_secret: SecretStr  # operators write { env = "ACME_CLIENT_SECRET" }


@hookimpl
def transom_connector_type() -> ConnectorType:
    return ConnectorType(name="acme", protocols=("oidc",), settings_model=AcmeSettings,
                         capabilities=frozenset({GROUP_SYNC}), default_button_label="Sign in with Acme",
                         version="1.0.0")


@hookimpl
def transom_oidc_provider(connector: Connector[AcmeSettings]) -> OidcProvider:
    settings = connector.settings  # always AcmeSettings: the host routes hooks by connector type
    issuer = settings.issuer.rstrip("/")
    return OidcProvider(issuers=(issuer,), authorization_endpoint=f"{issuer}/v1/authorize",
                        token_endpoint=f"{issuer}/v1/token", jwks_uri=f"{issuer}/v1/keys",
                        client_id=settings.client_id, client_secret=settings.client_secret.get_secret_value())


def _text(payload: Mapping[str, Any], name: str) -> str | None:
    value = payload.get(name)
    return value.strip() if isinstance(value, str) and value.strip() else None


@hookimpl
def transom_extract_claims(connector: Connector[AcmeSettings], payload: Mapping[str, Any]) -> Claims:
    # identity and groups only: the host reads space, role and timezone ([connectors.provisioning])
    uid = _text(payload, "uid")
    if uid is None:
        raise LoginRefused("Acme Login did not say who you are",
                           hint=f"connector '{connector.id}': the id_token has no uid claim",
                           reason="acme.uid_missing")
    groups = payload.get("memberOf")  # absent: "not sent", never "member of nothing"
    return Claims(subject=uid, email=_text(payload, "mail"), user_name=_text(payload, "login"),
                  display_name=_text(payload, "cn"),
                  groups=GroupsClaim.absent() if groups is None else GroupsClaim.present(as_str_list(groups)))
