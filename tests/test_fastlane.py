"""The fast lane (web/fastlane.py) answers exactly as FastAPI's routing did: the same requests,
good and bad, sent once through the lane and once through FastAPI's router (the lane steps
aside while ``dependency_overrides`` is set), give the same status, headers, body and refusal
line. Plus: the lane really skips FastAPI's dependency solving, takes only the routes it was
built for, and refuses to be built in front of a route that an earlier one shadows."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from typing import Any

import fastapi.routing
import httpx
import pytest
from conftest import client_for
from fastapi import APIRouter, FastAPI
from oidc_support import entra_claims, entra_connector, entra_fake
from saml_support import generic_attributes, generic_connector
from scim_support import SCIM, auth, new_user
from starlette.testclient import TestClient

from transom import directory
from transom.logs import RequestIdFilter
from transom.runtime import Runtime
from transom.saml import MAX_ACS_BODY_BYTES
from transom.testing.oidc import FakeOidcIdp, oidc_login
from transom.testing.saml import FakeSamlIdp, saml_login
from transom.web.deps import get_runtime
from transom.web.fastlane import lane_routes

Send = Callable[[TestClient], httpx.Response]


class Site:
    def __init__(self, runtime: Runtime, oidc: FakeOidcIdp, saml: FakeSamlIdp, token: str, other_token: str) -> None:
        self.runtime, self.oidc, self.saml, self.token, self.other_token = runtime, oidc, saml, token, other_token


@pytest.fixture
def site(make_runtime: Any) -> Site:
    oidc, saml = entra_fake(), FakeSamlIdp()
    runtime = make_runtime(connectors=[entra_connector(), generic_connector(saml)],
                           http=httpx.Client(transport=oidc.transport()))
    with runtime.db.transaction() as db:
        acme = directory.create_account(db, name="acme")
        token = directory.create_token(db, account=acme, permissions=["manage-users"], name="entra-app")
        globex = directory.create_account(db, name="globex")
        other = directory.create_token(db, account=globex, permissions=["manage-users"], name="globex-app")
    return Site(runtime, oidc, saml, token, other)


@pytest.fixture
def clients(site: Site) -> Iterator[tuple[TestClient, TestClient]]:
    """(through the lane, through FastAPI's router) on the same runtime."""
    with client_for(site.runtime) as lane, client_for(site.runtime) as routed:
        routed.app.dependency_overrides[get_runtime] = get_runtime  # type: ignore[attr-defined]
        yield lane, routed


_VOLATILE = [
    re.compile(r"[0-9a-f]{16}"),  # request ids
    re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC"),  # the error page's time
]


def _stable(text: str) -> str:
    for pattern in _VOLATILE:
        text = pattern.sub("*", text)
    return text


def _answer(response: httpx.Response) -> dict[str, Any]:
    headers = {k: _stable(v) for k, v in response.headers.items()
               if k in ("content-type", "www-authenticate", "retry-after", "cache-control", "connection")}
    location = response.headers.get("location")
    return {
        "status": response.status_code, "headers": headers, "body": _stable(response.text),
        "location": location.split("?")[0] if location else None,
        "request id": bool(response.headers.get("x-request-id")),
        "cookies": sorted(c.split("=")[0] for c in response.headers.get_list("set-cookie")),
    }


def _refusals(records: pytest.LogCaptureFixture) -> list[str]:
    return [_stable(r.getMessage()) for r in records.records if r.name == "transom.refusal"]


BAD_REQUESTS: dict[str, Send] = {
    "start, unknown connector": lambda c: c.get("/api/accounts/login/nobody"),
    "start, unknown connector (browser)": lambda c: c.get("/api/accounts/login/nobody",
                                                          headers={"accept": "text/html"}),
    "start, NUL in the path": lambda c: c.get("/api/accounts/login/a%00b"),
    "start, control in next": lambda c: c.get("/api/accounts/login/acme-entra?next=%2F%01"),
    "start, NUL in a query name": lambda c: c.get("/api/accounts/login/acme-entra?%00=1"),
    "callback, no parameters": lambda c: c.get("/api/accounts/idp-callback"),
    "callback, unknown state": lambda c: c.get("/api/accounts/idp-callback?state=nope&code=abc"),
    "callback, IdP error": lambda c: c.get("/api/accounts/idp-callback?error=access_denied&state=nope"),
    "callback, NUL in the query": lambda c: c.get("/api/accounts/idp-callback?state=a%00&code=b"),
    "callback POST, not a form": lambda c: c.post("/api/accounts/idp-callback", content=b"{}",
                                                  headers={"content-type": "application/json"}),
    "callback POST, NUL in a field": lambda c: c.post("/api/accounts/idp-callback",
                                                      data={"state": "a\x00", "code": "b"}),
    "callback POST, unknown state": lambda c: c.post("/api/accounts/idp-callback",
                                                     data={"state": "nope", "code": "b"}),
    "ACS, unknown connector": lambda c: c.post("/api/accounts/saml/nobody/acs", data={"SAMLResponse": "x"}),
    "ACS, not base64": lambda c: c.post("/api/accounts/saml/acme-saml/acs", data={"SAMLResponse": "%%%"}),
    "ACS, no form": lambda c: c.post("/api/accounts/saml/acme-saml/acs", content=b"",
                                     headers={"content-type": "text/plain"}),
    "ACS, control in RelayState": lambda c: c.post("/api/accounts/saml/acme-saml/acs",
                                                   data={"SAMLResponse": "eA==", "RelayState": "\x07"}),
    "ACS, over its own cap": lambda c: c.post("/api/accounts/saml/acme-saml/acs",
                                              data={"SAMLResponse": "A" * (MAX_ACS_BODY_BYTES + 10)}),
    "ACS, over the request cap, chunked": lambda c: c.post(
        "/api/accounts/saml/acme-saml/acs", content=iter([b"SAMLResponse=" + b"A" * (300 * 1024)]),
        headers={"content-type": "application/x-www-form-urlencoded"}),
    "ACS, HTML error page": lambda c: c.post("/api/accounts/saml/acme-saml/acs", data={"SAMLResponse": "eA=="},
                                             headers={"accept": "text/html"}),
    "SCIM create, no token": lambda c: c.post(f"{SCIM}/Users", json=new_user("ada@acme.example")),
    "SCIM create, wrong token": lambda c: c.post(f"{SCIM}/Users", json=new_user("ada@acme.example"),
                                                 headers=auth("nope")),
    "SCIM create, NUL in the query": lambda c: c.post(f"{SCIM}/Users?attributes=%00", json={}),
    "SCIM create, over the request cap": lambda c: c.post(f"{SCIM}/Users", content=b"{" + b" " * (300 * 1024)),
    "not the lane: HEAD on the start": lambda c: c.head("/api/accounts/login/acme-entra"),
    "not the lane: trailing slash": lambda c: c.get("/api/accounts/login/acme-entra/"),
    "not the lane: PUT on the callback": lambda c: c.put("/api/accounts/idp-callback"),
    "not the lane: SCIM in capitals": lambda c: c.post(f"{SCIM}/USERS", json={}),
}


@pytest.mark.parametrize("name", sorted(BAD_REQUESTS))
def test_refusals_are_the_same_through_the_lane(name: str, site: Site, clients: tuple[TestClient, TestClient],
                                                caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    caplog.handler.addFilter(RequestIdFilter())
    lane, routed = clients
    answers, lines = [], []
    for client in (lane, routed):
        caplog.clear()
        answers.append(_answer(BAD_REQUESTS[name](client)))
        lines.append(_refusals(caplog))
    assert answers[0] == answers[1]
    assert lines[0] == lines[1]


def test_scim_create_is_the_same_through_the_lane(site: Site, clients: tuple[TestClient, TestClient]) -> None:
    answers = []
    for n, client in enumerate(clients):
        response = client.post(f"{SCIM}/Users", json=new_user(f"user{n}@acme.example"), headers=auth(site.token))
        assert response.status_code == 201, response.text
        body = response.json()
        answers.append((sorted(body), sorted(response.headers), response.headers["content-type"],
                        response.headers["location"].rsplit("/", 1)[0]))
    assert answers[0] == answers[1]
    bad_json = [_answer(c.post(f"{SCIM}/Users", content=b"{", headers=auth(site.token))) for c in clients]
    assert bad_json[0] == bad_json[1]
    taken = [_answer(c.post(f"{SCIM}/Users", json=new_user("user0@acme.example"), headers=auth(site.token)))
             for c in clients]
    assert taken[0] == taken[1] and taken[0]["status"] == 409


def _shape(response: httpx.Response) -> tuple[Any, ...]:
    """Status, content type, header names and the body's keys: what does not depend on ids."""
    body = response.json() if response.content else None
    return (response.status_code, response.headers.get("content-type"), sorted(response.headers),
            sorted(body) if isinstance(body, dict) else body)


def test_scim_users_are_the_same_through_the_lane(site: Site, clients: tuple[TestClient, TestClient]) -> None:
    answers = []
    for n, client in enumerate(clients):
        name = f"grace{n}@acme.example"
        created = client.post("/api/scim/Users", json=new_user(name), headers=auth(site.token)).json()
        user = f"{SCIM}/Users/{created['id']}"
        etag = client.get(user, headers=auth(site.token)).headers["etag"]
        patch = {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                 "Operations": [{"op": "replace", "path": "active", "value": False}]}
        search = {"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
                  "filter": f'userName eq "{name}"'}
        answers.append([_shape(r) for r in (
            client.get(f"{SCIM}/Users", params={"filter": f'userName eq "{name}"'}, headers=auth(site.token)),
            client.get(f"{SCIM}/users", params={"filter": "userName eq"}, headers=auth(site.token)),
            client.get(user, headers=auth(site.token)),
            client.get(user, headers={**auth(site.token), "If-None-Match": etag}),
            client.get(user.replace("/Users/", "/users/"), headers=auth(site.token)),
            client.get(f"{SCIM}/Users/nobody", headers=auth(site.token)),
            client.get(user, headers=auth(site.other_token)),
            client.get(user),
            client.post(f"{SCIM}/Users/.search", json=search, headers=auth(site.token)),
            client.patch(user, json=patch, headers={**auth(site.token), "If-Match": 'W/"nope"'}),
            client.patch(user, json=patch, headers=auth(site.token)),
            client.put(user, json=new_user(name, active=True), headers=auth(site.token)),
            client.put(user, content=b"[]", headers=auth(site.token)),
            client.delete(user, headers=auth(site.token)),
            client.delete(user, headers=auth(site.token)),
        )])
    assert answers[0] == answers[1]
    assert [a[0] for a in answers[0]] == [200, 400, 200, 304, 200, 404, 404, 401, 200, 412, 200, 200, 400, 204, 404]


@pytest.mark.parametrize("form_post", [False, True])
def test_oidc_login_is_the_same_through_the_lane(form_post: bool, site: Site,
                                                 clients: tuple[TestClient, TestClient]) -> None:
    answers = [_answer(oidc_login(c, site.oidc, "acme-entra", claims=entra_claims(), next_path="/admin",
                                  form_post=form_post)) for c in clients]
    assert answers[0] == answers[1]
    assert answers[0]["status"] == 303 and answers[0]["location"] == "/admin"
    assert "transom_session" in answers[0]["cookies"]


def test_saml_login_is_the_same_through_the_lane(site: Site, clients: tuple[TestClient, TestClient]) -> None:
    answers = [_answer(saml_login(c, site.saml, connector_id="acme-saml", name_id="ada@acme.example",
                                  attributes=generic_attributes())) for c in clients]
    assert answers[0] == answers[1]
    assert answers[0]["status"] == 303 and "transom_session" in answers[0]["cookies"]


def test_the_lane_skips_dependency_solving(site: Site, clients: tuple[TestClient, TestClient],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    solved: list[str] = []
    real = fastapi.routing.solve_dependencies

    async def counting(*args: Any, **kwargs: Any) -> Any:
        solved.append(kwargs["request"].url.path)
        return await real(*args, **kwargs)

    monkeypatch.setattr(fastapi.routing, "solve_dependencies", counting)
    lane, routed = clients
    oidc_login(lane, site.oidc, "acme-entra", claims=entra_claims())
    saml_login(lane, site.saml, connector_id="acme-saml", name_id="ada@acme.example",
               attributes=generic_attributes())
    lane.post(f"{SCIM}/Users", json=new_user("bob@acme.example"), headers=auth(site.token))
    lane.post("/api/scim/users", json=new_user("eve@acme.example"), headers=auth(site.token))
    lane.get(f"{SCIM}/Users", params={"filter": 'userName eq "eve@acme.example"'}, headers=auth(site.token))
    assert solved == []
    lane.get("/api/accounts/saml/acme-saml/metadata")  # not a lane route
    oidc_login(routed, site.oidc, "acme-entra", claims=entra_claims())
    assert solved == ["/api/accounts/saml/acme-saml/metadata", "/api/accounts/login/acme-entra",
                      "/api/accounts/idp-callback"]


def test_the_lane_refuses_a_shadowed_route() -> None:
    async def special() -> None: ...

    async def hot() -> None: ...

    async def direct(_request: Any) -> Any: ...

    app = FastAPI()
    router = APIRouter()
    router.add_api_route("/login/special", special, methods=["GET"])
    router.add_api_route("/login/{connector_id}", hot, methods=["GET"])
    app.include_router(router)
    with pytest.raises(RuntimeError, match="shadowed"):
        lane_routes(app, {hot: direct})
    assert [r.path for r in lane_routes(app, {special: direct})] == ["/login/special"]
    with pytest.raises(RuntimeError, match="not a registered route"):
        lane_routes(FastAPI(), {hot: direct})
