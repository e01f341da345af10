"""One log line per refusal (issue 11): a refused OIDC or SAML login, a refused password
login, SCIM or admin request writes exactly one refusal line, on logger ``transom.refusal``,
naming the rule (reason code), the connector and the request id, never token contents.
The pipeline's own modules do not log refusals; what detail they have (an exception class,
an attribute name) travels on the error into that one line."""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import client_for
from oidc_support import build as build_oidc
from oidc_support import entra_claims, entra_connector, entra_fake
from saml_support import build as build_saml
from saml_support import entra_attributes, generic_attributes, generic_connector
from saml_support import entra_connector as entra_saml_connector

from transom.logs import RequestIdFilter
from transom.testing.oidc import finish_login, oidc_login
from transom.testing.oidc import start_login as start_oidc
from transom.testing.saml import TRANSIENT, FakeSamlIdp, SigningKey, encode, post_response, saml_login, start_login

OTHER_TENANT = "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0"


@pytest.fixture
def records(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Every record at INFO and above, each with the request id the real handler would print."""
    caplog.set_level(logging.INFO)
    request_ids = RequestIdFilter()
    caplog.handler.addFilter(request_ids)
    try:
        yield caplog
    finally:
        caplog.handler.removeFilter(request_ids)


def refusal_lines(records: pytest.LogCaptureFixture, request_id: str) -> list[logging.LogRecord]:
    """The records of one request that report a refusal, from whichever logger."""
    return [r for r in records.records if getattr(r, "request_id", None) == request_id and r.levelno >= logging.INFO
            and "refus" in r.getMessage().lower()]


def the_one_line(records: pytest.LogCaptureFixture, response: Any) -> str:
    request_id = response.headers["x-request-id"]
    lines = refusal_lines(records, request_id)
    assert [r.name for r in lines] == ["transom.refusal"], [(r.name, r.getMessage()) for r in lines]
    assert lines[0].levelno == logging.INFO  # a 4xx; 5xx refusals are WARNING
    return lines[0].getMessage()


def test_refused_oidc_login_writes_one_line(make_runtime: Any, records: pytest.LogCaptureFixture) -> None:
    fake = entra_fake()
    runtime = build_oidc(make_runtime, fake, entra_connector())
    with client_for(runtime) as client:
        response = oidc_login(client, fake, "acme-entra", claims=entra_claims(aud="someone-else"))
    assert response.status_code == 400 and response.json()["reason"] == "oidc.aud"
    line = the_one_line(records, response)
    assert "code=oidc.aud" in line and "connector=acme-entra" in line
    assert "status=400" in line and "/api/accounts/idp-callback" in line
    # never token contents: the signed id_token's parts are not in any line
    token = fake.id_token(entra_claims(aud="someone-else"))
    assert all(part not in r.getMessage() for r in records.records for part in token.split("."))


def test_refused_oidc_login_by_the_idp_writes_one_line(make_runtime: Any,
                                                        records: pytest.LogCaptureFixture) -> None:
    fake = entra_fake()
    runtime = build_oidc(make_runtime, fake, entra_connector())
    with client_for(runtime) as client:
        location = start_oidc(client, "acme-entra")
        state = location.split("state=")[1].split("&")[0]
        response = finish_login(client, {"state": state, "error": "access_denied"})
    assert response.status_code == 400 and response.json()["reason"] == "oidc.idp_error"
    line = the_one_line(records, response)
    assert "code=oidc.idp_error" in line and "connector=acme-entra" in line and "access_denied" in line


def test_refused_saml_login_by_the_library_writes_one_line(make_runtime: Any,
                                                            records: pytest.LogCaptureFixture) -> None:
    idp = FakeSamlIdp()
    runtime = build_saml(make_runtime, [generic_connector(idp)])
    with client_for(runtime) as client:
        response = saml_login(client, idp, connector_id="acme-saml", name_id="u-1",
                              attributes=generic_attributes(), signing_key=SigningKey.generate("Intruder"))
    assert response.status_code == 400 and response.json()["reason"] == "saml.library.invalid_signature"
    line = the_one_line(records, response)
    # the library's numeric code is turned into its name, never a bare reason_code=32
    assert "code=saml.library.invalid_signature" in line and "connector=acme-saml" in line
    assert "reason_code" not in line and "hint:" in line


def test_unreadable_saml_post_names_the_parser_error_in_the_one_line(make_runtime: Any,
                                                                     records: pytest.LogCaptureFixture) -> None:
    idp = FakeSamlIdp()
    runtime = build_saml(make_runtime, [generic_connector(idp)])
    doctype = b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY e "x">]><r>&e;</r>'
    with client_for(runtime) as client:
        response = client.post("/api/accounts/saml/acme-saml/acs",
                               data={"SAMLResponse": base64.b64encode(doctype).decode()})
    assert response.status_code == 400 and response.json()["reason"] == "saml.xml"
    line = the_one_line(records, response)
    # the parser's exception class (DTDForbidden, EntitiesForbidden...) rides on the line
    assert "code=saml.xml" in line and "detail=" in line and "Forbidden" in line
    assert "ENTITY" not in line  # never the posted content


def test_saml_replay_writes_one_line(make_runtime: Any, records: pytest.LogCaptureFixture) -> None:
    idp = FakeSamlIdp()
    runtime = build_saml(make_runtime, [generic_connector(idp)])
    with client_for(runtime) as client:
        request = start_login(client, "acme-saml")
        encoded = encode(idp.signed_response(acs_url=request.acs_url or "", audience=request.issuer,
                                             in_response_to=request.id, name_id="u-1",
                                             attributes=generic_attributes()))
        assert post_response(client, "acme-saml", encoded).status_code == 303
        again = post_response(client, "acme-saml", encoded)
    assert again.status_code == 400 and again.json()["reason"] == "saml.replay"
    line = the_one_line(records, again)
    assert "code=saml.replay" in line and "connector=acme-saml" in line


def test_plugin_refusal_writes_one_line_with_reason(make_runtime: Any, records: pytest.LogCaptureFixture) -> None:
    idp = FakeSamlIdp()
    runtime = build_saml(make_runtime, [generic_connector(idp)])
    with client_for(runtime) as client:
        response = saml_login(client, idp, connector_id="acme-saml", name_id="_t1", name_id_format=TRANSIENT,
                              attributes=generic_attributes())
    assert response.status_code == 400 and response.json()["reason"] == "saml.name_id_transient"
    line = the_one_line(records, response)
    # the plugin's reason code, and the hook it refused in
    assert "code=saml.name_id_transient" in line and "connector=acme-saml" in line
    assert "detail=hook=transom_extract_claims" in line


def test_entra_saml_foreign_tenant_writes_one_line(make_runtime: Any, records: pytest.LogCaptureFixture) -> None:
    from saml_support import TENANT

    idp = FakeSamlIdp(entity_id=f"https://sts.windows.net/{TENANT}/")
    runtime = build_saml(make_runtime, [entra_saml_connector(idp)])
    with client_for(runtime) as client:
        response = saml_login(client, idp, connector_id="acme-entra", name_id="ada",
                              attributes=entra_attributes(tenant=OTHER_TENANT))
    assert response.status_code == 400 and response.json()["reason"] == "saml.tenant"
    line = the_one_line(records, response)
    assert "code=saml.tenant" in line and "connector=acme-entra" in line


def test_refused_password_login_writes_one_line(make_runtime: Any, records: pytest.LogCaptureFixture) -> None:
    runtime = build_saml(make_runtime, [])
    with client_for(runtime) as client:
        response = client.post("/api/accounts/login", data={"email": "nobody@acme.example",
                                                            "password": "not the password", "account": "acme"})
    assert response.status_code == 400
    line = the_one_line(records, response)
    assert "code=login_refused" in line and "not the password" not in line


def test_refused_scim_and_admin_requests_write_one_line_each(make_runtime: Any,
                                                             records: pytest.LogCaptureFixture) -> None:
    runtime = build_saml(make_runtime, [])
    with client_for(runtime) as client:
        scim = client.get("/api/scim/v2/Users", headers={"authorization": "Bearer not-a-token"})
        admin = client.get("/api/admin/groups", headers={"authorization": "Bearer not-a-token"})
    assert (scim.status_code, admin.status_code) == (401, 401)
    assert "status=401" in the_one_line(records, scim)
    assert "status=401" in the_one_line(records, admin)
    assert "not-a-token" not in records.text
