"""Property-based: arbitrary Unicode, with lone surrogates, NUL and other controls mixed in,
through every SCIM and admin-API string field and filter. Never a 5xx, and no control
character the input policy refuses ever lands in the database (issue 12; the suite runs this
on SQLite and on PostgreSQL). Bounded: a fixed number of examples, no example database."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import quote, urlencode

from conftest import client_for
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scim_support import SCIM, auth, create, make_tenants, new_user
from sqlalchemy import select

from transom import directory
from transom.models import Group, User

ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
NASTY = ["\x00", "\x01", "\x08", "\x0b", "\x1b", "\x1f", "\x7f", "\t", "\n", "\r", "\ud800", "\udbff", "\udc00",
         "\udfff", "\ufffe", "\u2028", "\U0001f600", '"', "\\", "%", "*", "'"]
CHARS = st.one_of(st.characters(), st.sampled_from(NASTY),
                  st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF, categories=["Cs"]))
TEXT = st.text(alphabet=CHARS, max_size=24)
#: everything the text rule refuses; identifiers also refuse TAB, LF, CR and DEL
UNSAFE_TEXT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff]")
UNSAFE_IDENTIFIER = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")

USER_FIELDS: list[tuple[str, Any]] = [
    ("userName", lambda v: {"userName": v}),
    ("displayName", lambda v: {"displayName": v}),
    ("externalId", lambda v: {"externalId": v}),
    ("name.givenName", lambda v: {"name": {"givenName": v, "familyName": v}}),
    ("title", lambda v: {"title": v, "nickName": v, "locale": v}),
    ("emails", lambda v: {"emails": [{"value": v, "type": v}]}),
    ("addresses", lambda v: {"addresses": [{"formatted": v, "streetAddress": v, "type": "work"}]}),
    ("enterprise", lambda v: {ENTERPRISE: {"department": v, "manager": {"value": v}}}),
    ("key", lambda v: {v: "x"}),
]
PATCH_PATHS = ["displayName", "userName", "name.givenName", "title", 'emails[type eq "work"].value',
               f"{ENTERPRISE}:department", "addresses[type eq \"work\"].formatted"]

SETTINGS = settings(max_examples=60, deadline=None, database=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def _raw(body: Any) -> bytes:
    """JSON with every non-ASCII character escaped, so a lone surrogate travels as ``\\ud800``
    exactly as a hostile client would send it."""
    return json.dumps(body, ensure_ascii=True).encode()


def _url(value: str) -> str:
    """Percent-encoded UTF-8; a lone surrogate goes out as its (invalid) UTF-8 bytes."""
    return quote(value.encode("utf-8", "surrogatepass"), safe="")


def _strings(value: Any, *, keys: bool = False) -> list[str]:
    if isinstance(value, str):
        return [] if keys else [value]
    if isinstance(value, dict):
        found = list(value) if keys else []
        return found + [s for v in value.values() for s in _strings(v, keys=keys)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v, keys=keys)]
    return []


def _assert_nothing_unsafe_stored(runtime: Any) -> None:
    with runtime.db.transaction() as db:
        for user in db.scalars(select(User)):
            for identifier in (user.user_name, user.external_id, user.email):
                assert identifier is None or not UNSAFE_IDENTIFIER.search(identifier), repr(identifier)
            for text in [*_strings(user.scim_attributes), user.display_name or ""]:
                assert not UNSAFE_TEXT.search(text), repr(text)
            for key in _strings(user.scim_attributes, keys=True):
                assert not UNSAFE_IDENTIFIER.search(key), repr(key)
        for group in db.scalars(select(Group)):
            for identifier in (group.name, group.idp_identifier):
                assert identifier is None or not UNSAFE_IDENTIFIER.search(identifier), repr(identifier)


def test_scim_string_fields_and_filters_never_5xx_and_store_nothing_unsafe(make_runtime: Any) -> None:
    tenants = make_tenants(make_runtime, server={"api_rate_limit": 0})
    headers = auth(tenants.token)
    with client_for(tenants.runtime) as client:
        target = create(client, tenants.token, new_user("target@acme.example"))["id"]

        @SETTINGS
        @given(value=TEXT, field=st.sampled_from(USER_FIELDS), path=st.sampled_from(PATCH_PATHS),
               op=st.sampled_from(["add", "replace", "remove"]))
        def run(value: str, field: tuple[str, Any], path: str, op: str) -> None:
            name, shape = field
            body = {"userName": f"u{abs(hash(value))}@acme.example", **shape(value)}
            responses = [
                client.post(f"{SCIM}/Users", content=_raw(body), headers=headers),
                client.put(f"{SCIM}/Users/{target}", headers=headers,
                           content=_raw({"userName": "target@acme.example", **shape(value)})),
                client.patch(f"{SCIM}/Users/{target}", headers=headers, content=_raw(
                    {"schemas": [PATCH_OP], "Operations": [{"op": op, "path": path, "value": value}]})),
                client.patch(f"{SCIM}/Users/{target}", headers=headers, content=_raw(
                    {"schemas": [PATCH_OP], "Operations": [{"op": "replace", "value": shape(value)}]})),
                client.patch(f"{SCIM}/Users/{target}", headers=headers, content=_raw(
                    {"schemas": [PATCH_OP], "Operations": [{"op": op, "path": value, "value": "x"}]})),
                client.get(f"{SCIM}/Users?filter={_url(name.split('.')[0] + ' eq ' + json.dumps(value))}",
                           headers=headers),
                client.get(f"{SCIM}/Users?filter={_url(path + ' co ' + chr(34) + value + chr(34))}"
                           f"&attributes={_url(value)}", headers=headers),
                client.post(f"{SCIM}/Users/.search", headers=headers, content=_raw(
                    {"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
                     "filter": f"displayName sw {json.dumps(value)}", "attributes": [value]})),
                client.get(f"{SCIM}/Users/{_url(value)}", headers=headers),
            ]
            for response in responses:
                assert response.status_code < 500, (name, repr(value), response.status_code, response.text)
                if response.status_code >= 400:
                    assert response.json()["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]

        run()
    _assert_nothing_unsafe_stored(tenants.runtime)
    with tenants.runtime.db.transaction() as db:  # some examples were accepted: the check checked something
        assert len(db.scalars(select(User)).all()) > 5


def test_admin_api_string_fields_never_5xx_and_store_nothing_unsafe(make_runtime: Any) -> None:
    tenants = make_tenants(make_runtime, server={"api_rate_limit": 0})
    with tenants.runtime.db.transaction() as db:
        token = directory.create_token(db, account=directory.get_account(db, name="acme"), permissions=["admin"],
                                       name="admin")
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    with client_for(tenants.runtime) as client:
        assert client.post("/api/admin/groups", json={"name": "base"}, headers=headers).status_code == 201

        @settings(SETTINGS, max_examples=30)  # each example hashes two passwords (Argon2)
        @given(value=TEXT)
        def run(value: str) -> None:
            in_path = _url(value)
            responses = [
                client.post("/api/admin/groups", content=_raw({"name": value}), headers=headers),
                client.post("/api/admin/groups", headers=headers,
                            content=_raw({"name": f"g{abs(hash(value))}", "idp_identifier": value})),
                client.put("/api/admin/groups/base/idp-identifier", content=_raw({"idp_identifier": value}),
                           headers=headers),
                client.get(f"/api/admin/groups/{in_path}", headers=headers),
                client.get(f"/api/admin/groups/{in_path}/members", headers=headers),
                client.post(f"/api/admin/groups/base/members/{in_path}", headers=headers),
                client.post("/api/accounts/login", headers={"content-type": "application/x-www-form-urlencoded"},
                            content=urlencode({"email": value, "password": value, "account": value},
                                              encoding="utf-8", errors="surrogatepass")),
                client.post("/api/accounts/login", headers={"content-type": "application/json"},
                            content=_raw({"email": value, "password": value, "account": value})),
            ]
            for response in responses:
                assert response.status_code < 500, (repr(value), response.status_code, response.text)

        run()
    _assert_nothing_unsafe_stored(tenants.runtime)
    with tenants.runtime.db.transaction() as db:
        assert len(db.scalars(select(Group)).all()) > 5
