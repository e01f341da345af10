"""SAML 2.0 logins end to end through the real app: generic_saml, okta (protocol saml) and
azure_ad (protocol saml), each against a FakeSamlIdp that signs real responses."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from saml_support import (
    ENTRA_GROUPS,
    MS,
    OTHER_TENANT,
    TENANT,
    acs_url,
    app_client,
    assert_refused,
    build,
    counts,
    entra_attributes,
    entra_connector,
    generic_attributes,
    generic_connector,
    okta_attributes,
    okta_connector,
    sp_entity_id,
)
from sqlalchemy import select

from transom.attributes import with_provisioning_values
from transom.connector import GroupsState
from transom.models import ExternalIdentity
from transom.sessions import COOKIE_NAME
from transom.testing.saml import (
    EMAIL_ADDRESS,
    PERSISTENT,
    TRANSIENT,
    FakeSamlIdp,
    SigningKey,
    encode,
    post_response,
    saml_login,
    start_login,
)


def test_generic_saml_login_creates_user_and_session(make_runtime: Any) -> None:
    idp = FakeSamlIdp()
    runtime = build(make_runtime, [generic_connector(idp)])
    with app_client(runtime) as client:
        response = saml_login(client, idp, connector_id="acme-saml", name_id="u-1001",
                              attributes=generic_attributes(), next_path="/dashboard?tab=1")
        assert response.status_code == 303, response.text
        assert response.headers["location"] == "/dashboard?tab=1"
        cookie = response.headers["set-cookie"]
        assert COOKIE_NAME in cookie and "HttpOnly" in cookie
        me = client.get("/api/me")
        assert me.status_code == 200
        body = me.json()
        assert body["account"] == "acme"
        assert body["email"] == "ada@acme.example"
        assert body["user_name"] == "ada@acme.example"
        assert body["display_name"] == "Ada Lovelace"
        assert body["status"] == "active"
    with runtime.db.transaction() as db:
        identity = db.scalar(select(ExternalIdentity))
        assert identity is not None
        assert identity.connector_id == "acme-saml" and identity.subject == "u-1001"
    state = counts(runtime)
    assert state["users"] == 1 and state["assertions_seen"] == 1 and state["login_states"] == 0


def test_second_login_finds_the_same_user(make_runtime: Any) -> None:
    idp = FakeSamlIdp()
    runtime = build(make_runtime, [generic_connector(idp)])
    with app_client(runtime) as client:
        first = saml_login(client, idp, connector_id="acme-saml", name_id="u-1001", attributes=generic_attributes())
        assert first.status_code == 303
        user_id = client.get("/api/me").json()["id"]
        client.cookies.clear()
        second = saml_login(client, idp, connector_id="acme-saml", name_id="u-1001",
                            attributes=generic_attributes(mail=["ada.lovelace@acme.example"]))
        assert second.status_code == 303
        assert client.get("/api/me").json()["id"] == user_id
    assert counts(runtime)["users"] == 1


def test_authn_request_shape(make_runtime: Any) -> None:
    idp = FakeSamlIdp()
    runtime = build(make_runtime, [generic_connector(idp), entra_connector(idp)])
    with app_client(runtime) as client:
        request = start_login(client, "acme-saml", next_path="https://evil.example/")
        assert request.destination == idp.sso_url
        assert request.acs_url == acs_url("acme-saml")
        assert request.issuer == sp_entity_id("acme-saml")
        assert request.name_id_policy_format == PERSISTENT
        # next lives in the server-side login state, never in RelayState
        assert request.relay_state is None
        assert b"RequestedAuthnContext" not in request.xml
        entra = start_login(client, "acme-entra")
        # Entra: no NameIDPolicy format (users are keyed on objectidentifier)
        assert entra.name_id_policy_format is None
        assert entra.issuer == sp_entity_id("acme-entra")
    assert counts(runtime)["login_states"] == 2


def test_next_outside_the_site_lands_on_root(make_runtime: Any) -> None:
    idp = FakeSamlIdp()
    runtime = build(make_runtime, [generic_connector(idp)])
    with app_client(runtime) as client:
        response = saml_login(client, idp, connector_id="acme-saml", name_id="u-1", attributes=generic_attributes(),
                              next_path="//evil.example/x")
        assert response.status_code == 303
        assert response.headers["location"] == "/"


def test_multi_valued_attributes_are_kept(make_runtime: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    idp = FakeSamlIdp()
    runtime = build(make_runtime, [generic_connector(idp)])
    seen: list[Any] = []
    original = runtime.plugins.extract_claims

    def spy(connector: Any, payload: Any) -> Any:
        claims = original(connector, payload)
        seen.append((payload, claims, connector))
        return claims

    monkeypatch.setattr(runtime.plugins, "extract_claims", spy)
    attributes = generic_attributes(groups=["dev", "ops", "sec"], space_name=["Trial", "Labs"],
                                    space_role=["Space Member", "Space Admin"], timezone=["Europe/London"])
    with app_client(runtime) as client:
        response = saml_login(client, idp, connector_id="acme-saml", name_id="u-7", attributes=attributes)
        assert response.status_code == 303
    payload, plugin_claims, connector = seen[0]
    # the plugin maps identity and groups; the host reads the provisioning attributes
    assert plugin_claims.space_names == () and plugin_claims.timezone is None
    claims = with_provisioning_values(connector, payload, plugin_claims)
    assert payload["attributes"]["groups"] == ["dev", "ops", "sec"]
    assert payload["name_id"] == "u-7" and payload["name_id_format"] == PERSISTENT
    assert payload["issuer"] == idp.entity_id and payload["session_index"] == "_session"
    assert claims.groups.state is GroupsState.PRESENT and claims.groups.ids == ("dev", "ops", "sec")
    assert claims.space_names == ("Trial", "Labs")
    assert claims.space_roles == ("Space Member", "Space Admin")
    assert claims.timezone == "Europe/London"


def test_generic_subject_attribute_instead_of_name_id(make_runtime: Any) -> None:
    idp = FakeSamlIdp()
    connector = generic_connector(idp)
    connector["settings"]["attributes"]["subject"] = "urn:oasis:names:tc:SAML:attribute:subject-id"
    runtime = build(make_runtime, [connector])
    with app_client(runtime) as client:
        response = saml_login(client, idp, connector_id="acme-saml", name_id="x", name_id_format=TRANSIENT,
                              attributes=generic_attributes(**{
                                  "urn:oasis:names:tc:SAML:attribute:subject-id": ["ada@idp.example"]}))
        assert response.status_code == 303
    with runtime.db.transaction() as db:
        identity = db.scalar(select(ExternalIdentity))
        assert identity is not None and identity.subject == "ada@idp.example"


def test_transient_name_id_is_refused(make_runtime: Any) -> None:
    idp = FakeSamlIdp()
    runtime = build(make_runtime, [generic_connector(idp)])
    with app_client(runtime) as client:
        response = saml_login(client, idp, connector_id="acme-saml", name_id="_t123", name_id_format=TRANSIENT,
                              attributes=generic_attributes())
        body = assert_refused(response, runtime, client)
        assert "persistent" in body["hint"]
        assert body["reason"] == "saml.name_id_transient"  # the plugin's rule (docs/security.md)


def test_generic_subject_attribute_missing_is_refused_by_its_own_rule(make_runtime: Any) -> None:
    idp = FakeSamlIdp()
    connector = generic_connector(idp)
    connector["settings"]["attributes"]["subject"] = "urn:oasis:names:tc:SAML:attribute:subject-id"
    runtime = build(make_runtime, [connector])
    with app_client(runtime) as client:
        response = saml_login(client, idp, connector_id="acme-saml", name_id="u-1", attributes=generic_attributes())
        body = assert_refused(response, runtime, client)
    assert body["reason"] == "saml.subject_attribute_missing"
    assert "subject-id" in body["hint"]


def test_okta_transient_name_id_is_refused(make_runtime: Any) -> None:
    idp = FakeSamlIdp()
    runtime = build(make_runtime, [okta_connector(idp)])
    with app_client(runtime) as client:
        response = saml_login(client, idp, connector_id="acme-okta", name_id="_t9", name_id_format=TRANSIENT,
                              attributes=okta_attributes())
        body = assert_refused(response, runtime, client)
    assert body["reason"] == "saml.name_id_transient"
    assert "Okta app's Name ID format" in body["hint"]


def test_okta_saml_login_with_groups(make_runtime: Any, caplog: pytest.LogCaptureFixture) -> None:
    idp = FakeSamlIdp(entity_id="http://www.okta.com/exk1fake")
    runtime = build(make_runtime, [okta_connector(idp)])
    caplog.set_level(logging.INFO, logger="transom.login")
    with app_client(runtime) as client:
        response = saml_login(client, idp, connector_id="acme-okta", name_id="Ada@Acme.Example",
                              name_id_format=EMAIL_ADDRESS,
                              attributes=okta_attributes(groups=["Engineering", "Everyone"]))
        assert response.status_code == 303, response.text
        body = client.get("/api/me").json()
        assert body["email"] == "ada@acme.example"
        assert body["user_name"] == "ada@acme.example"
    with runtime.db.transaction() as db:
        identity = db.scalar(select(ExternalIdentity))
        # Okta user names are case-insensitive: the NameID is keyed in lower case
        assert identity is not None and identity.subject == "ada@acme.example"
    line = next(r.getMessage() for r in caplog.records if "Valid login through Okta" in r.getMessage())
    assert "Engineering" in line and "Everyone" in line


def test_okta_saml_groups_absent_and_present_empty(make_runtime: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    idp = FakeSamlIdp(entity_id="http://www.okta.com/exk1fake")
    runtime = build(make_runtime, [okta_connector(idp)])
    seen: list[Any] = []
    original = runtime.plugins.extract_claims
    monkeypatch.setattr(runtime.plugins, "extract_claims",
                        lambda c, p: seen.append(original(c, p)) or seen[-1])
    with app_client(runtime) as client:
        assert saml_login(client, idp, connector_id="acme-okta", name_id="ada",
                          attributes=okta_attributes()).status_code == 303
        client.cookies.clear()
        assert saml_login(client, idp, connector_id="acme-okta", name_id="ada",
                          attributes=okta_attributes(groups=[""])).status_code == 303
    # extract_claims runs once per login: before the replay cache, and the login service reuses it
    assert len(seen) == 2
    assert seen[0].groups.state is GroupsState.ABSENT
    assert seen[-1].groups.state is GroupsState.PRESENT and seen[-1].groups.ids == ()


def test_entra_saml_login_keys_on_tenant_and_object_id(make_runtime: Any, caplog: pytest.LogCaptureFixture) -> None:
    idp = FakeSamlIdp(entity_id=f"https://sts.windows.net/{TENANT}/")
    runtime = build(make_runtime, [entra_connector(idp)])
    caplog.set_level(logging.INFO, logger="transom.login")
    groups = ["0b1c2d3e-0000-4000-8000-00000000000a", "0b1c2d3e-0000-4000-8000-00000000000b"]
    with app_client(runtime) as client:
        response = saml_login(client, idp, connector_id="acme-entra", name_id="ada@acme.example",
                              name_id_format=EMAIL_ADDRESS,
                              attributes=entra_attributes(**{ENTRA_GROUPS: groups}))
        assert response.status_code == 303, response.text
        body = client.get("/api/me").json()
        assert body["email"] == "ada@acme.example" and body["display_name"] == "Ada Lovelace"
    with runtime.db.transaction() as db:
        identity = db.scalar(select(ExternalIdentity))
        assert identity is not None
        assert identity.subject == f"{TENANT}:a1b2c3d4-0000-4000-8000-000000000001"
    line = next(r.getMessage() for r in caplog.records if "Valid login through AzureAD" in r.getMessage())
    assert groups[0] in line and groups[1] in line


def test_entra_saml_overage_is_recognised(make_runtime: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    idp = FakeSamlIdp(entity_id=f"https://sts.windows.net/{TENANT}/")
    runtime = build(make_runtime, [entra_connector(idp)])
    seen: list[Any] = []
    original = runtime.plugins.extract_claims
    monkeypatch.setattr(runtime.plugins, "extract_claims",
                        lambda c, p: seen.append(original(c, p)) or seen[-1])
    link = f"https://graph.windows.net/{TENANT}/users/x/getMemberObjects"
    with app_client(runtime) as client:
        response = saml_login(client, idp, connector_id="acme-entra", name_id="ada",
                              attributes=entra_attributes(**{f"{MS}/claims/groups.link": [link]}))
        # overage cannot be resolved here (no client credentials): memberships stay, login succeeds
        assert response.status_code == 303, response.text
    assert seen[0].groups.state is GroupsState.OVERAGE and seen[0].groups.source == link


def test_entra_saml_other_tenant_is_refused(make_runtime: Any) -> None:
    idp = FakeSamlIdp(entity_id=f"https://sts.windows.net/{TENANT}/")
    runtime = build(make_runtime, [entra_connector(idp)])
    with app_client(runtime) as client:
        response = saml_login(client, idp, connector_id="acme-entra", name_id="ada",
                              attributes=entra_attributes(tenant=OTHER_TENANT))
        body = assert_refused(response, runtime, client)
        assert TENANT in body["hint"]
        assert body["reason"] == "saml.tenant"


def test_entra_saml_without_object_id_is_refused(make_runtime: Any) -> None:
    idp = FakeSamlIdp(entity_id=f"https://sts.windows.net/{TENANT}/")
    runtime = build(make_runtime, [entra_connector(idp)])
    attributes = entra_attributes()
    del attributes["http://schemas.microsoft.com/identity/claims/objectidentifier"]
    with app_client(runtime) as client:
        response = saml_login(client, idp, connector_id="acme-entra", name_id="ada", attributes=attributes)
        body = assert_refused(response, runtime, client)
        assert "objectidentifier" in body["hint"]
        assert body["reason"] == "saml.entra_ids_missing"


def test_entra_saml_defaults_entity_id_and_sso_url_from_tenant(make_runtime: Any) -> None:
    idp = FakeSamlIdp(entity_id=f"https://sts.windows.net/{TENANT}/",
                      sso_url=f"https://login.microsoftonline.com/{TENANT}/saml2")
    connector = {"id": "acme-entra", "type": "azure_ad", "account": "acme",
                 "settings": {"protocol": "saml", "tenant_id": TENANT,
                              "idp_certificates": [idp.key.certificate_pem]}}
    runtime = build(make_runtime, [connector])
    with app_client(runtime) as client:
        response = saml_login(client, idp, connector_id="acme-entra", name_id="ada", attributes=entra_attributes())
        assert response.status_code == 303, response.text


def test_certificate_rollover_either_certificate_works(make_runtime: Any) -> None:
    old = SigningKey.generate("Rollover IdP")
    new = SigningKey.generate("Rollover IdP")
    idp = FakeSamlIdp(key=old)
    connector = generic_connector(idp)
    connector["settings"]["idp_certificates"] = [old.certificate_pem, new.certificate_pem]
    runtime = build(make_runtime, [connector])
    with app_client(runtime) as client:
        for key in (old, new):
            client.cookies.clear()
            response = saml_login(client, idp, connector_id="acme-saml", name_id="u-1",
                                  attributes=generic_attributes(), signing_key=key)
            assert response.status_code == 303, response.text
            assert client.get("/api/me").status_code == 200


def test_idp_metadata_file_supplies_entity_sso_and_certificates(make_runtime: Any, tmp_path: Any) -> None:
    idp = FakeSamlIdp()
    rollover = SigningKey.generate("Transom Fake IdP")
    path = tmp_path / "idp-metadata.xml"
    path.write_text(idp.metadata_xml(extra_keys=[rollover]), encoding="utf-8")
    connector = {"id": "acme-saml", "type": "generic_saml", "account": "acme",
                 "settings": {"idp_metadata_file": str(path), "attributes": {"email": "mail"}}}
    runtime = build(make_runtime, [connector])
    with app_client(runtime) as client:
        request = start_login(client, "acme-saml")
        assert request.destination == idp.sso_url
        for key in (idp.key, rollover):
            client.cookies.clear()
            response = saml_login(client, idp, connector_id="acme-saml", name_id="u-1",
                                  attributes=generic_attributes(), signing_key=key)
            assert response.status_code == 303, response.text


def test_idp_metadata_url_is_fetched_once_and_cached(make_runtime: Any) -> None:
    import httpx

    from transom import saml

    saml.metadata_cache.clear()
    idp = FakeSamlIdp()
    fetched: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        fetched.append(str(request.url))
        return httpx.Response(200, text=idp.metadata_xml(), headers={"content-type": "application/xml"})

    connector = {"id": "acme-saml", "type": "generic_saml", "account": "acme",
                 "settings": {"idp_metadata_url": "https://idp.example.test/metadata.xml",
                              "attributes": {"email": "mail"}}}
    runtime = build(make_runtime, [connector], http=httpx.Client(transport=httpx.MockTransport(handler)))
    with app_client(runtime) as client:
        for _ in range(2):
            client.cookies.clear()
            response = saml_login(client, idp, connector_id="acme-saml", name_id="u-1",
                                  attributes=generic_attributes())
            assert response.status_code == 303, response.text
    assert fetched == ["https://idp.example.test/metadata.xml"]
    saml.metadata_cache.clear()


def test_idp_metadata_url_too_large_or_down_is_a_clear_error(make_runtime: Any) -> None:
    import httpx

    from transom import saml

    saml.metadata_cache.clear()

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/big.xml":
            return httpx.Response(200, content=b"<x>" + b"a" * (saml.MAX_METADATA_BYTES + 10) + b"</x>")
        return httpx.Response(503)

    connectors = [
        {"id": f"c-{name}", "type": "generic_saml", "account": "acme",
         "settings": {"idp_metadata_url": f"https://idp.example.test/{name}.xml"}}
        for name in ("big", "down")
    ]
    runtime = build(make_runtime, connectors, http=httpx.Client(transport=httpx.MockTransport(handler)))
    with app_client(runtime) as client:
        for cid in ("c-big", "c-down"):
            response = client.get(f"/api/accounts/login/{cid}", headers={"accept": "application/json"})
            assert response.status_code == 502
            assert "idp_metadata_url" in response.json()["hint"]
    saml.metadata_cache.clear()


def test_idp_initiated_login_when_enabled(make_runtime: Any) -> None:
    idp = FakeSamlIdp()
    runtime = build(make_runtime, [generic_connector(idp, allow_idp_initiated=True)])
    with app_client(runtime) as client:
        root = idp.signed_response(acs_url=acs_url("acme-saml"), audience=sp_entity_id("acme-saml"),
                                   name_id="u-9", in_response_to=None, attributes=generic_attributes())
        response = post_response(client, "acme-saml", encode(root), relay_state="/reports")
        assert response.status_code == 303, response.text
        assert response.headers["location"] == "/reports"
        assert client.get("/api/me").status_code == 200


def test_idp_initiated_relay_state_must_be_a_local_path(make_runtime: Any) -> None:
    idp = FakeSamlIdp()
    runtime = build(make_runtime, [generic_connector(idp, allow_idp_initiated=True)])
    with app_client(runtime) as client:
        root = idp.signed_response(acs_url=acs_url("acme-saml"), audience=sp_entity_id("acme-saml"),
                                   name_id="u-9", in_response_to=None, attributes=generic_attributes())
        response = post_response(client, "acme-saml", encode(root), relay_state="https://evil.example/")
        assert response.status_code == 303
        assert response.headers["location"] == "/"


def test_sp_initiated_still_bound_when_idp_initiated_is_enabled(make_runtime: Any) -> None:
    idp = FakeSamlIdp()
    runtime = build(make_runtime, [generic_connector(idp, allow_idp_initiated=True)])
    with app_client(runtime) as client:
        start_login(client, "acme-saml")
        root = idp.signed_response(acs_url=acs_url("acme-saml"), audience=sp_entity_id("acme-saml"),
                                   name_id="u-9", in_response_to="_not_a_request_we_sent",
                                   attributes=generic_attributes())
        assert_refused(post_response(client, "acme-saml", encode(root)), runtime, client, login_states=1)


def test_want_messages_signed_requires_a_signed_response(make_runtime: Any) -> None:
    idp = FakeSamlIdp()
    runtime = build(make_runtime, [generic_connector(idp, want_messages_signed=True)])
    with app_client(runtime) as client:
        refused = saml_login(client, idp, connector_id="acme-saml", name_id="u-1", attributes=generic_attributes())
        body = assert_refused(refused, runtime, client)
        assert "want_messages_signed" in body["hint"]
        accepted = saml_login(client, idp, connector_id="acme-saml", name_id="u-1", attributes=generic_attributes(),
                              sign_response=True)
        assert accepted.status_code == 303, accepted.text


def test_unknown_or_oidc_connector_has_no_acs(make_runtime: Any) -> None:
    idp = FakeSamlIdp()
    runtime = build(make_runtime, [generic_connector(idp)])
    with app_client(runtime) as client:
        assert post_response(client, "nope", "PHg+").status_code == 404
        assert client.get("/api/accounts/saml/nope/metadata").status_code == 404


def test_sp_metadata_is_accepted_by_pysaml2(make_runtime: Any) -> None:
    from saml2 import BINDING_HTTP_POST
    from saml2.mdstore import MetaDataExtern, MetadataStore
    from saml2.sigver import security_context  # noqa: F401  (pysaml2 needs its crypto backend importable)

    assert MetaDataExtern is not None
    idp = FakeSamlIdp()
    runtime = build(make_runtime, [generic_connector(idp), entra_connector(idp)])
    with app_client(runtime) as client:
        for cid in ("acme-saml", "acme-entra"):
            response = client.get(f"/api/accounts/saml/{cid}/metadata")
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("application/samlmetadata+xml")
            from saml2 import config as saml2_config

            store = MetadataStore(attrc=None, config=saml2_config.Config())
            store.load("inline", response.text)
            entity = sp_entity_id(cid)
            assert list(store.keys()) == [entity]
            services = store.assertion_consumer_service(entity, binding=BINDING_HTTP_POST)
            assert [s["location"] for s in services] == [acs_url(cid)]
            sp = store[entity]["spsso_descriptor"][0]
            assert sp["want_assertions_signed"] == "true"


def test_expired_idp_certificate_still_verifies_but_is_logged(make_runtime: Any,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    """SAML-41 policy (docs/saml.md): the pinned key keeps working, the operator is warned."""
    from datetime import UTC, datetime, timedelta

    now = datetime.now(UTC)
    expired = SigningKey.generate("Old IdP", not_valid_before=now - timedelta(days=400),
                                  not_valid_after=now - timedelta(days=1))
    idp = FakeSamlIdp(key=expired)
    runtime = build(make_runtime, [generic_connector(idp)])
    caplog.set_level(logging.WARNING, logger="transom.saml")
    with app_client(runtime) as client:
        response = saml_login(client, idp, connector_id="acme-saml", name_id="u-1", attributes=generic_attributes())
        assert response.status_code == 303
    assert any("certificate expired" in r.getMessage() and "acme-saml" in r.getMessage() for r in caplog.records)


def test_schema_cache_patch_matches_the_stock_validator() -> None:
    """performance-notes §2: the cached validator returns what python3-saml's own would."""
    from lxml import etree
    from onelogin.saml2.xml_utils import OneLogin_Saml2_XML

    from transom import saml

    stock = saml.STOCK_VALIDATE_XML
    assert OneLogin_Saml2_XML.validate_xml is not stock
    idp = FakeSamlIdp()
    good = etree.tostring(idp.signed_response(acs_url="https://sp.example/acs", audience="https://sp.example",
                                              name_id="u", in_response_to="ONELOGIN_x"))
    bad = good.replace(b"saml:Issuer", b"saml:Issuerx")
    schema = "saml-schema-protocol-2.0.xsd"
    for document in (good, bad, b"<not-closed", b"<!DOCTYPE x [<!ENTITY a 'b'>]><x>&a;</x>"):
        expected = stock(document, schema)
        actual = OneLogin_Saml2_XML.validate_xml(document, schema)
        assert isinstance(expected, str) == isinstance(actual, str)
        if isinstance(expected, str):
            assert expected == actual


def test_idp_metadata_url_must_be_https(make_runtime: Any) -> None:
    import httpx

    def handler(request: httpx.Request) -> httpx.Response:
        raise AssertionError("plain-http metadata must not be fetched")

    connector = {"id": "acme-saml", "type": "generic_saml", "account": "acme",
                 "settings": {"idp_metadata_url": "http://idp.example.test/metadata.xml"}}
    runtime = build(make_runtime, [connector], http=httpx.Client(transport=httpx.MockTransport(handler)))
    with app_client(runtime) as client:
        response = client.get("/api/accounts/login/acme-saml", headers={"accept": "application/json"})
        assert response.status_code == 500
        assert "https" in response.json()["detail"]


def test_library_settings_are_the_safe_ones() -> None:
    """checklist §1.2 / SAML-43: strict always; assertion signatures, modern algorithms,
    a NameID and unique attribute names required; keys pinned (never a fingerprint)."""
    from transom import saml

    sp = saml.SpEndpoints(entity_id="https://t.example/m", acs_url="https://t.example/acs",
                          metadata_url="https://t.example/m")
    for want_messages_signed in (False, True):
        idp = saml.ResolvedIdp(entity_id="https://idp.example", sso_url="https://idp.example/sso",
                               certificates=("CERT",), allow_idp_initiated=False,
                               want_messages_signed=want_messages_signed, name_id_format=None)
        settings = saml.settings_dict(sp, idp, name_id_format=None)
        security = settings["security"]
        assert settings["strict"] is True and settings["debug"] is False
        assert security["wantAssertionsSigned"] is True
        assert security["wantMessagesSigned"] is want_messages_signed
        assert security["rejectDeprecatedAlgorithm"] is True
        assert security["wantNameId"] is True and security["allowRepeatAttributeName"] is False
        assert security["signatureAlgorithm"].endswith("rsa-sha256")
        assert security["digestAlgorithm"].endswith("sha256")
        assert "certFingerprint" not in settings["idp"]
        assert settings["idp"]["x509certMulti"] == {"signing": ["CERT"]}
