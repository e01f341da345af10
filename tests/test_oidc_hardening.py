"""OIDC claim and header rules the mutation run found unpinned (issue 12), each through the
real app with a real signed id_token, each refusal asserting the rule that refused
(``reason``), and the accepting side of every time rule. Also case 10: a refusal while the
key set is cooling down after a refresh says the keys are being refreshed."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import pytest
from conftest import client_for
from oidc_support import build, counts, okta_claims, okta_connector, okta_org_fake

from transom.oidc import JwksCache
from transom.runtime import Runtime
from transom.sessions import COOKIE_NAME
from transom.testing.oidc import OMIT, FakeOidcIdp, oidc_login

SKEW = 120  # conftest default server.clock_skew_seconds
Claims = Callable[[FakeOidcIdp], Mapping[str, Any]]


def _login(make_runtime: Any, claims: Mapping[str, Any] | Claims, header: Mapping[str, Any] | None = None
           ) -> tuple[Runtime, Any]:
    fake = okta_org_fake()
    runtime = build(make_runtime, fake, okta_connector())
    body = claims(fake) if callable(claims) else claims

    def token(request: Mapping[str, str]) -> str:
        return fake.id_token({**okta_claims(), **body}, nonce=request["nonce"], header=header)

    with client_for(runtime) as client:
        response = oidc_login(client, fake, "acme-okta", id_token=token)
    return runtime, response


def assert_refused(runtime: Runtime, response: Any, reason: str) -> dict[str, Any]:
    assert response.status_code == 400, response.text
    assert COOKIE_NAME not in response.headers.get("set-cookie", "")
    body: dict[str, Any] = response.json()
    assert body.get("reason") == reason, body
    left = counts(runtime)
    assert (left["users"], left["identities"], left["sessions"]) == (0, 0, 0)
    return body


def assert_accepted(runtime: Runtime, response: Any) -> None:
    assert response.status_code == 303, response.text
    assert counts(runtime)["users"] == 1


def now_plus(seconds: int) -> int:
    return int(time.time()) + seconds


# -- azp and aud -------------------------------------------------------------------------------


def test_single_audience_with_a_foreign_azp_is_refused(make_runtime: Any) -> None:
    """OIDC Core 3.1.3.7 (5): when azp is present it must be our client id, one audience or many."""
    runtime, response = _login(make_runtime, {"azp": "some-other-client"})
    body = assert_refused(runtime, response, "oidc.azp")
    assert "some-other-client" in body["hint"]


@pytest.mark.parametrize("aud", ["single", "multi"])
def test_azp_naming_this_client_is_accepted(make_runtime: Any, aud: str) -> None:
    runtime, response = _login(make_runtime, lambda f: {
        "azp": f.client_id, "aud": f.client_id if aud == "single" else [f.client_id, "another-api"]})
    assert_accepted(runtime, response)


def test_multi_audience_without_azp_is_refused(make_runtime: Any) -> None:
    runtime, response = _login(make_runtime, lambda f: {"aud": [f.client_id, "another-api"]})
    assert_refused(runtime, response, "oidc.azp")


@pytest.mark.parametrize("aud", [
    pytest.param(lambda f: {f.client_id: True}, id="dict naming the client"),
    pytest.param(lambda f: [f.client_id, 5], id="list with a number"),
    pytest.param(lambda f: 5, id="number"),
    pytest.param(lambda f: [], id="empty list"),
    pytest.param(lambda f: "someone-else", id="another client"),
])
def test_malformed_or_foreign_aud_is_refused(make_runtime: Any, aud: Callable[[FakeOidcIdp], Any]) -> None:
    runtime, response = _login(make_runtime, lambda f: {"aud": aud(f)})
    assert_refused(runtime, response, "oidc.aud")


def test_missing_aud_is_refused(make_runtime: Any) -> None:
    runtime, response = _login(make_runtime, {"aud": OMIT})
    assert_refused(runtime, response, "oidc.aud_missing")


# -- dates: non-finite and boolean values, and the accepting side of every window --------------


@pytest.mark.parametrize(("claim", "value", "reason"), [
    ("exp", float("inf"), "oidc.exp"),
    ("exp", float("nan"), "oidc.exp"),
    ("exp", True, "oidc.exp"),
    ("exp", "4102444800", "oidc.exp"),
    ("iat", float("nan"), "oidc.iat"),
    ("iat", float("-inf"), "oidc.iat"),
    ("iat", True, "oidc.iat"),
    ("iat", False, "oidc.iat"),
    ("nbf", float("nan"), "oidc.nbf"),
    ("nbf", True, "oidc.nbf"),
    ("nbf", "0", "oidc.nbf"),
])
def test_non_numeric_dates_are_refused(make_runtime: Any, claim: str, value: Any, reason: str) -> None:
    """JSON has no NaN or Infinity, but Python's decoder reads them; a bool is not a number."""
    runtime, response = _login(make_runtime, {claim: value})
    assert_refused(runtime, response, reason)


@pytest.mark.parametrize("claims", [
    pytest.param(lambda f: {"exp": now_plus(-60)}, id="exp 60 s ago (inside the skew)"),
    pytest.param(lambda f: {"iat": now_plus(60)}, id="iat 60 s ahead (inside the skew)"),
    pytest.param(lambda f: {"iat": now_plus(-3000), "exp": now_plus(600)}, id="iat 50 min old"),
    pytest.param(lambda f: {"nbf": now_plus(-10)}, id="nbf in the past"),
    pytest.param(lambda f: {"nbf": now_plus(60)}, id="nbf 60 s ahead (inside the skew)"),
    pytest.param(lambda f: {"nbf": float(now_plus(-10)), "exp": float(now_plus(600))}, id="float dates"),
])
def test_dates_inside_their_windows_are_accepted(make_runtime: Any, claims: Claims) -> None:
    runtime, response = _login(make_runtime, claims)
    assert_accepted(runtime, response)


@pytest.mark.parametrize(("claims", "reason"), [
    (lambda f: {"exp": now_plus(-200)}, "oidc.expired"),
    (lambda f: {"iat": now_plus(200)}, "oidc.iat_future"),
    (lambda f: {"iat": now_plus(-4000), "exp": now_plus(600)}, "oidc.iat_too_old"),
    (lambda f: {"nbf": now_plus(200)}, "oidc.nbf"),
], ids=["expired", "iat future", "iat too old", "nbf future"])
def test_dates_outside_their_windows_are_refused(make_runtime: Any, claims: Claims, reason: str) -> None:
    runtime, response = _login(make_runtime, claims)
    assert_refused(runtime, response, reason)


# -- the header ------------------------------------------------------------------------------


@pytest.mark.parametrize("kid", ["", 7, ["key-1"], "k" * 257], ids=["empty", "number", "list", "too long"])
def test_invalid_kid_is_refused(make_runtime: Any, kid: Any) -> None:
    runtime, response = _login(make_runtime, {}, header={"kid": kid})
    assert_refused(runtime, response, "oidc.kid")


def test_longest_kid_is_looked_up(make_runtime: Any) -> None:
    runtime, response = _login(make_runtime, {}, header={"kid": "k" * 256})
    assert_refused(runtime, response, "oidc.kid_unknown")


@pytest.mark.parametrize("typ", [1, True, ["JWT"], {"v": "JWT"}, "at+jwt"], ids=["number", "bool", "list", "dict",
                                                                              "access token"])
def test_bad_typ_is_refused(make_runtime: Any, typ: Any) -> None:
    runtime, response = _login(make_runtime, {}, header={"typ": typ})
    assert_refused(runtime, response, "oidc.typ")


@pytest.mark.parametrize("typ", ["JWT", "jwt", "application/jwt", OMIT])
def test_id_token_types_are_accepted(make_runtime: Any, typ: Any) -> None:
    runtime, response = _login(make_runtime, {}, header={"typ": typ})
    assert_accepted(runtime, response)


@pytest.mark.parametrize("name", ["jku", "x5u", "jwk", "x5c", "crit"])
def test_header_supplied_keys_are_refused(make_runtime: Any, name: str) -> None:
    runtime, response = _login(make_runtime, {}, header={name: "x"})
    body = assert_refused(runtime, response, "oidc.header_keys")
    assert name in body["hint"]


@pytest.mark.parametrize("alg", ["none", "HS256", "RS384", "rs256", None])
def test_other_algorithms_are_refused(make_runtime: Any, alg: Any) -> None:
    runtime, response = _login(make_runtime, {}, header={"alg": alg})
    assert_refused(runtime, response, "oidc.alg")


# -- the other claims ------------------------------------------------------------------------


@pytest.mark.parametrize(("claims", "reason"), [
    ({"iss": "https://evil.example"}, "oidc.iss"),
    ({"iss": ["https://acme.okta.test"]}, "oidc.iss"),
    ({"sub": 5}, "oidc.sub"),
    ({"sub": ""}, "oidc.sub"),
], ids=["foreign iss", "iss list", "number sub", "empty sub"])
def test_other_claims_are_refused(make_runtime: Any, claims: dict[str, Any], reason: str) -> None:
    runtime, response = _login(make_runtime, claims)
    assert_refused(runtime, response, reason)


# -- key refresh cooldown (case 10) ------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_refusal_inside_the_refresh_cooldown_says_the_keys_are_being_refreshed(make_runtime: Any) -> None:
    fake = okta_org_fake()
    runtime = build(make_runtime, fake, okta_connector())
    clock = Clock()
    runtime.jwks = JwksCache(cooldown=30, clock=clock)
    with client_for(runtime) as client:
        assert oidc_login(client, fake, "acme-okta", claims=okta_claims()).status_code == 303
        assert fake.jwks_fetches == 1
        # The IdP rotates 10 s later: Transom may not fetch again yet and says so.
        clock.now += 10
        fake.rotate("key-2")
        response = oidc_login(client, fake, "acme-okta", claims=okta_claims())
        assert response.status_code == 400
        body = response.json()
        assert body["reason"] == "oidc.kid_refreshing", body
        assert "being refreshed" in body["hint"] and "does not publish" not in body["hint"]
        assert fake.jwks_fetches == 1
        # After the cooldown the new key is fetched and the login succeeds.
        clock.now += 30
        assert oidc_login(client, fake, "acme-okta", claims=okta_claims()).status_code == 303
        assert fake.jwks_fetches == 2
        # A kid missing from the document fetched just now is not published.
        clock.now += 31
        response = oidc_login(client, fake, "acme-okta", claims=okta_claims(),
                              id_token=lambda r: fake.id_token(okta_claims(), nonce=r["nonce"],
                                                               header={"kid": "never-published"}))
        body = response.json()
        assert body["reason"] == "oidc.kid_unknown", body
        assert "does not publish" in body["hint"]
        assert fake.jwks_fetches == 3


# -- hints: which value, cut where ------------------------------------------------------------


def _long(keep: int) -> str:
    """A value whose first ``keep`` characters differ from the rest, to see where a hint cuts."""
    return "a" * keep + "b" * 40


@pytest.mark.parametrize(("claims", "header", "keep"), [
    ({}, {"alg": _long(20)}, 20),
    ({}, {"typ": _long(30)}, 30),
    ({"iss": _long(100)}, None, 100),
    ({"aud": _long(100)}, None, 100),
    ({"azp": _long(60)}, None, 60),
], ids=["alg", "typ", "iss", "aud", "azp"])
def test_hints_show_the_offending_value_cut_to_a_fixed_length(
    make_runtime: Any, claims: dict[str, Any], header: dict[str, Any] | None, keep: int
) -> None:
    _, response = _login(make_runtime, claims, header=header)
    body = response.json()
    assert response.status_code == 400, body
    assert "a" * keep + "..." in body["hint"], body


@pytest.mark.parametrize(("iss", "shown"), [("https://evil.example", "https://evil.example"), (OMIT, "missing")])
def test_hint_names_the_foreign_issuer_or_says_it_is_missing(make_runtime: Any, iss: Any, shown: str) -> None:
    _, response = _login(make_runtime, {"iss": iss})
    assert f"token issuer is '{shown}'" in response.json()["hint"]


def test_hint_of_a_foreign_tenant_is_cut_to_60_characters(make_runtime: Any) -> None:
    from oidc_support import entra_claims, entra_connector, entra_fake

    fake = entra_fake()
    runtime = build(make_runtime, fake, entra_connector())
    with client_for(runtime) as client:
        response = oidc_login(client, fake, "acme-entra", claims=entra_claims(tid=_long(60)))
    assert response.json()["reason"] == "oidc.tenant"
    assert f"tid is {'a' * 60}..." in response.json()["hint"]


def test_signature_hint_names_the_kid_cut_to_60_characters(make_runtime: Any) -> None:
    from transom.testing.oidc import SigningKey

    fake = okta_org_fake()
    fake.keys = [SigningKey(_long(60))]
    runtime = build(make_runtime, fake, okta_connector())
    impostor = SigningKey(_long(60))  # same kid, another key
    with client_for(runtime) as client:
        response = oidc_login(client, fake, "acme-okta",
                              id_token=lambda r: fake.id_token(okta_claims(), nonce=r["nonce"], key=impostor))
    body = assert_refused(runtime, response, "oidc.signature")
    assert f"(kid {'a' * 60}...)" in body["hint"]


@pytest.mark.parametrize("nonce", [5, ["n"], ""], ids=["number", "list", "empty"])
def test_non_string_or_empty_nonce_is_refused(make_runtime: Any, nonce: Any) -> None:
    runtime, response = _login(make_runtime, {"nonce": nonce})
    assert_refused(runtime, response, "oidc.nonce_missing")


def test_a_second_published_key_is_chosen_by_kid(make_runtime: Any) -> None:
    fake = okta_org_fake()
    fake.rotate("key-2", keep_old=True)
    runtime = build(make_runtime, fake, okta_connector())
    with client_for(runtime) as client:
        first = oidc_login(client, fake, "acme-okta",
                           id_token=lambda r: fake.id_token(okta_claims(), nonce=r["nonce"], key=fake.keys[0]))
        assert first.status_code == 303, first.text
        second = oidc_login(client, fake, "acme-okta", claims=okta_claims())
        assert second.status_code == 303, second.text
