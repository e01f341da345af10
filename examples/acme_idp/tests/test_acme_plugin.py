"""Acme Login's plugin, tested with Transom's plugin kit: the generic contract, then whole
sign-ins through a real Transom host against a fake Acme Login that signs real tokens.

The fixtures (``fake_oidc_idp``, ``served_oidc_idp``, ``transom_host``) come from the kit's
pytest plugin, installed with Transom: no conftest needed.
"""

from __future__ import annotations

from typing import Any

import transom_acme
from transom.connector import GroupsClaim
from transom.testing.contract import PluginContract
from transom.testing.oidc import FakeOidcIdp
from transom.testing.plugin import FAKE_CLIENT_ID, FAKE_CLIENT_SECRET, HostFactory

# Acme's ``sub`` is pairwise (a different value per application), so the plugin keys users on
# ``uid``, the directory's immutable id.
ADA = {"sub": "pw-7f3a9c", "uid": "acme-0042", "mail": "ada@acme.example", "login": "ada", "cn": "Ada Lovelace",
       "memberOf": ["grp-research", "grp-staff"]}


class TestAcmeContract(PluginContract):
    plugin = transom_acme
    type_name = "acme"
    contract_version = 2  # transom.hookspecs.CONTRACT_VERSION when this plugin was written
    settings = {"issuer": "https://login.acme.example", "client_id": "app", "client_secret": "acme-secret-value"}
    sample_payload = ADA
    payload_without_subject = {k: v for k, v in ADA.items() if k != "uid"}
    missing_subject_reason = "acme.uid_missing"
    expected_claims = {"subject": "acme-0042", "email": "ada@acme.example", "user_name": "ada",
                       "display_name": "Ada Lovelace", "groups": GroupsClaim.present(["grp-research", "grp-staff"])}


def acme_connector(idp: FakeOidcIdp, **provisioning: Any) -> dict[str, Any]:
    """The ``[[connectors]]`` table an operator would write for Acme Login."""
    return {"id": "acme-login", "type": "acme", "account": "acme", "email_domains": ["acme.example"],
            "settings": {"issuer": idp.issuer, "client_id": FAKE_CLIENT_ID, "client_secret": FAKE_CLIENT_SECRET},
            "provisioning": provisioning}


def test_sign_in_maps_acme_claim_names(transom_host: HostFactory, fake_oidc_idp: FakeOidcIdp) -> None:
    # no ``plugins=``: the host finds "acme" through the installed entry point, as in production
    connector = acme_connector(fake_oidc_idp, space_attribute="acmeProject", role_attribute="acmeProjectRole",
                               timezone_attribute="tz")
    host = transom_host([connector], idps=[fake_oidc_idp])
    host.create_space("acme", "Research")
    provisioning = {"acmeProject": "Research", "acmeProjectRole": "Space Admin", "tz": "Europe/London"}
    result = host.login("acme-login", fake_oidc_idp, claims={**ADA, **provisioning})
    assert result.ok, result.response.text
    assert result.user is not None
    assert (result.user["account"], result.user["email"], result.user["user_name"], result.user["display_name"]) == (
        "acme", "ada@acme.example", "ada", "Ada Lovelace")
    # space, role and timezone: read by the host with [connectors.provisioning]'s names, not by the plugin
    assert result.user["spaces"] == [{"space": "Research", "role": "Space Admin"}]
    assert result.user["timezone"] == "Europe/London"
    # the same uid again is the same user, even with a new address
    host.logout()
    again = host.login("acme-login", fake_oidc_idp, claims={**ADA, "mail": "ada.lovelace@acme.example"})
    assert again.ok and again.user is not None
    assert again.user["id"] == result.user["id"]
    assert again.user["email"] == "ada.lovelace@acme.example"


def test_memberof_drives_group_sync(transom_host: HostFactory, fake_oidc_idp: FakeOidcIdp) -> None:
    host = transom_host([acme_connector(fake_oidc_idp)], idps=[fake_oidc_idp])
    host.create_group("acme", "Research", idp_identifier="grp-research")
    host.create_group("acme", "Finance", idp_identifier="grp-finance")
    first = host.login("acme-login", fake_oidc_idp, claims=ADA)
    assert first.user is not None
    assert [g["name"] for g in first.user["groups"]] == ["Research"]
    host.logout()
    moved = host.login("acme-login", fake_oidc_idp, claims={**ADA, "memberOf": ["grp-finance"]})
    assert moved.user is not None
    assert [g["name"] for g in moved.user["groups"]] == ["Finance"]


def test_token_without_uid_is_refused(transom_host: HostFactory, fake_oidc_idp: FakeOidcIdp) -> None:
    host = transom_host([acme_connector(fake_oidc_idp)], idps=[fake_oidc_idp])
    result = host.login("acme-login", fake_oidc_idp, claims={"sub": "pw-7f3a9c", "mail": "ada@acme.example"})
    assert not result.ok and result.user is None
    assert 400 <= result.response.status_code < 500
    assert "uid" in result.error.get("hint", "")


def test_sign_in_with_keys_fetched_over_real_http(transom_host: HostFactory, served_oidc_idp: FakeOidcIdp) -> None:
    # no ``idps=``: the host's ordinary HTTP client fetches the JWKS and redeems the code over a socket
    host = transom_host([acme_connector(served_oidc_idp)])
    result = host.login("acme-login", served_oidc_idp, claims=ADA)
    assert result.ok, result.response.text
    assert served_oidc_idp.jwks_fetches == 1
    assert served_oidc_idp.token_requests and served_oidc_idp.token_requests[0]["grant_type"] == "authorization_code"
