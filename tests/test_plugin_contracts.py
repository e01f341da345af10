"""The plugin kit's conformance checks (transom.testing.contract) run over every built-in
connector plugin (okta, azure_ad, generic_saml, generic_oidc), once per protocol it speaks,
exactly as a third-party author runs them."""

from __future__ import annotations

from typing import Any

import pytest

import transom_azure_ad
import transom_generic_oidc
import transom_generic_saml
import transom_okta
from transom.connector import GroupsClaim
from transom.testing.contract import PluginContract, no_network
from transom.testing.keys import SigningKey
from transom.testing.saml import PERSISTENT

CERTIFICATE = SigningKey.generate("Contract IdP").certificate_pem
SAML_SOURCE = {"idp_entity_id": "https://idp.example.test/metadata", "idp_sso_url": "https://idp.example.test/sso",
               "idp_certificates": [CERTIFICATE]}
TENANT = "8eaef023-2b34-4da1-9baa-8bc8c9d6a490"
OID = "a1b2c3d4-0000-4000-8000-000000000001"
MS = "http://schemas.microsoft.com/identity/claims"


def saml_payload(name_id: str | None, attributes: dict[str, list[str]], name_id_format: str = PERSISTENT
                 ) -> dict[str, Any]:
    return {"name_id": name_id, "name_id_format": name_id_format, "issuer": SAML_SOURCE["idp_entity_id"],
            "attributes": attributes}


class TestOktaOidcContract(PluginContract):
    plugin = transom_okta
    type_name = "okta"
    contract_version = 2
    settings = {"domain": "acme.okta.test", "client_id": "0oa1okta", "client_secret": "okta-secret-value"}
    sample_payload = {"sub": "00u1ada", "email": "ada@acme.example", "email_verified": True,
                      "preferred_username": "ada@acme.example", "name": "Ada Lovelace", "groups": ["Everyone"]}
    payload_without_subject = {"email": "ada@acme.example", "preferred_username": "ada@acme.example"}
    missing_subject_reason = "oidc.subject_claim_missing"
    expected_claims = {"subject": "00u1ada", "email": "ada@acme.example", "email_verified": True,
                       "groups": GroupsClaim.present(["Everyone"])}


class TestOktaSamlContract(PluginContract):
    plugin = transom_okta
    type_name = "okta"
    contract_version = 2
    settings = {"protocol": "saml", **SAML_SOURCE}
    sample_payload = saml_payload("00u1ada", {"email": ["ada@acme.example"], "login": ["ada@acme.example"]})
    payload_without_subject = saml_payload(None, {"email": ["ada@acme.example"]})
    missing_subject_reason = "saml.name_id_missing"
    expected_claims = {"subject": "00u1ada", "email": "ada@acme.example", "user_name": "ada@acme.example"}


class TestAzureAdOidcContract(PluginContract):
    plugin = transom_azure_ad
    type_name = "azure_ad"
    contract_version = 2
    settings = {"tenant_id": TENANT, "client_id": "11111111-2222-3333-4444-555555555555",
                "client_secret": "entra-secret-value"}
    sample_payload = {"tid": TENANT, "oid": OID, "sub": "pairwise", "preferred_username": "ada@acme.example",
                      "email": "ada@acme.example", "name": "Ada Lovelace", "groups": ["g-1", "g-2"]}
    payload_without_subject = {"tid": TENANT, "sub": "pairwise", "email": "ada@acme.example"}
    missing_subject_reason = "oidc.entra_ids_missing"
    expected_claims = {"subject": f"{TENANT}:{OID}", "email_verified": False, "user_name": "ada@acme.example",
                       "groups": GroupsClaim.present(["g-1", "g-2"])}


class TestAzureAdSamlContract(PluginContract):
    plugin = transom_azure_ad
    type_name = "azure_ad"
    contract_version = 2
    settings = {"protocol": "saml", "tenant_id": TENANT, **SAML_SOURCE}
    sample_payload = saml_payload("ada@acme.example", {f"{MS}/tenantid": [TENANT], f"{MS}/objectidentifier": [OID]})
    payload_without_subject = saml_payload("ada@acme.example", {f"{MS}/tenantid": [TENANT]})
    missing_subject_reason = "saml.entra_ids_missing"
    expected_claims = {"subject": f"{TENANT}:{OID}"}


class TestGenericSamlContract(PluginContract):
    plugin = transom_generic_saml
    type_name = "generic_saml"
    contract_version = 2
    settings = {**SAML_SOURCE, "attributes": {"email": "mail"}, "groups_attribute": "memberOf"}
    sample_payload = saml_payload("u-1001", {"mail": ["ada@acme.example"], "memberOf": ["staff"]})
    payload_without_subject = saml_payload(None, {"mail": ["ada@acme.example"]})
    missing_subject_reason = "saml.name_id_missing"
    expected_claims = {"subject": "u-1001", "email": "ada@acme.example", "groups": GroupsClaim.present(["staff"])}


class TestGenericOidcContract(PluginContract):
    plugin = transom_generic_oidc
    type_name = "generic_oidc"
    contract_version = 2
    settings = {"issuer": "https://sso.example.test/realms/acme", "client_id": "transom",
                "client_secret": "oidc-secret-value", "groups_claim": "groups"}
    sample_payload = {"sub": "f1e2d3", "email": "ada@acme.example", "preferred_username": "ada",
                      "groups": ["/staff"]}
    payload_without_subject = {"email": "ada@acme.example", "preferred_username": "ada"}
    missing_subject_reason = "oidc.subject_claim_missing"
    expected_claims = {"subject": "f1e2d3", "user_name": "ada", "groups": GroupsClaim.present(["/staff"])}


# -- the checks catch what they claim to catch ------------------------------------------------


def test_no_network_records_and_refuses_a_connection() -> None:
    import httpx

    with no_network() as attempts, pytest.raises(httpx.ConnectError):
        httpx.get("http://127.0.0.1:9/", timeout=1)
    assert attempts and attempts[0].startswith(("getaddrinfo", "connect", "create_connection"))
    # and the network is back afterwards: a listening socket accepts
    import socket

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        with socket.create_connection(server.getsockname(), timeout=1):
            pass
