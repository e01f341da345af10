"""Every OIDC refusal of security-checklist §2, through HTTP: a 4xx (page or JSON), no
session cookie, no user, identity or session row, never a 500."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from conftest import client_for
from oidc_support import (
    AUTHORITY,
    OTHER_TENANT,
    TENANT,
    build,
    counts,
    entra_claims,
    entra_connector,
    entra_fake,
    okta_claims,
    okta_connector,
    okta_org_fake,
)

from transom.loginstate import BINDING_COOKIE
from transom.oidc import JwksCache
from transom.runtime import Runtime
from transom.sessions import COOKIE_NAME
from transom.testing.oidc import (
    OMIT,
    FakeOidcIdp,
    SigningKey,
    finish_login,
    hs256_signer,
    oidc_login,
    sign_jwt,
    start_login,
)

TokenBuilder = Callable[[FakeOidcIdp, Mapping[str, str]], str]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def assert_refused(runtime: Runtime, response: Any, *, status: int = 400, hint: str | None = None) -> None:
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    assert response.status_code == status, response.text
    assert COOKIE_NAME not in response.headers.get("set-cookie", "")
    body = response.json()
    assert body["error"] and body["detail"]
    if hint is not None:
        assert hint in body.get("hint", ""), body
    left = counts(runtime)
    assert (left["users"], left["identities"], left["sessions"]) == (0, 0, 0)


def okta(claims_extra: Mapping[str, Any] | None = None, **kw: Any) -> TokenBuilder:
    """A token for the okta fake built from the request's nonce, with overrides."""
    def build_token(fake: FakeOidcIdp, request: Mapping[str, str]) -> str:
        return fake.id_token({**okta_claims(), **(claims_extra or {})}, nonce=request["nonce"], **kw)
    return build_token


def _none_signature(_: bytes) -> bytes:
    return b""


CASES: dict[str, tuple[TokenBuilder, str]] = {
    "alg none": (okta(header={"alg": "none"}, signer=_none_signature), "alg 'none'"),
    "alg NoNe": (okta(header={"alg": "NoNe"}, signer=_none_signature), "alg 'NoNe'"),
    "null signature": (okta(signer=_none_signature), "signature"),
    "hs256 keyed with public PEM": (
        lambda f, r: f.id_token(okta_claims(), nonce=r["nonce"], header={"alg": "HS256"},
                                signer=hs256_signer(f.key.public_pem())), "alg 'HS256'"),
    "hs256 keyed with public DER": (
        lambda f, r: f.id_token(okta_claims(), nonce=r["nonce"], header={"alg": "HS256"},
                                signer=hs256_signer(f.key.public_der())), "alg 'HS256'"),
    "other key same kid": (lambda f, r: f.id_token(okta_claims(), nonce=r["nonce"], key=SigningKey(f.key.kid)),
                           "signature does not verify"),
    "tampered payload": (
        lambda f, r: _tamper(f.id_token(okta_claims(), nonce=r["nonce"])), "signature does not verify"),
    "header jku": (okta(header={"jku": "https://evil.example/jwks"}), "jku"),
    "header jwk": (okta(header={"jwk": {"kty": "RSA", "n": "AQAB", "e": "AQAB"}}), "jwk"),
    "header x5c": (okta(header={"x5c": ["MIIB"]}), "x5c"),
    "header x5u": (okta(header={"x5u": "https://evil.example/cert"}), "x5u"),
    "header crit": (okta(header={"crit": ["exp"]}), "crit"),
    "access token typ": (okta(header={"typ": "at+jwt"}), "typ 'at+jwt'"),
    "kid path traversal": (okta(header={"kid": "../../../../dev/null"}), "does not publish"),
    "kid sql": (okta(header={"kid": "x' OR '1'='1"}), "does not publish"),
    "expired": (okta({"exp": "now-3600"}), "expired"),
    "expired beyond skew": (okta({"exp": "now-200"}), "expired"),
    "future iat": (okta({"iat": "now+31536000"}), "in the future"),
    "absurdly old iat": (okta({"iat": "now-86400"}), "issued"),
    "not yet valid nbf": (okta({"nbf": "now+600"}), "nbf"),
    "missing exp": (okta({"exp": OMIT}), "exp"),
    "string exp": (okta({"exp": "now+3600 as string"}), "exp"),
    "missing iat": (okta({"iat": OMIT}), "iat"),
    "missing sub": (okta({"sub": OMIT}), "sub"),
    "empty sub": (okta({"sub": ""}), "sub"),
    "missing aud": (okta({"aud": OMIT}), "no aud"),
    "wrong aud": (okta({"aud": "someone-else"}), "client_id to the app's Application (client) ID"),
    "multi aud without azp": (okta({"aud": "multi"}), "azp"),
    "multi aud with foreign azp": (okta({"aud": "multi", "azp": "someone-else"}), "azp"),
    "wrong iss": (okta({"iss": "https://evil.example"}), "issuer"),
    "missing iss": (okta({"iss": OMIT}), "issuer"),
    "other nonce": (lambda f, r: f.id_token(okta_claims(), nonce="not-the-one"), "nonce does not match"),
    "missing nonce": (lambda f, r: f.id_token(okta_claims()), "no nonce"),
    "non-ascii nonce": (lambda f, r: f.id_token(okta_claims(), nonce="nönce-✓"), "nonce does not match"),
    "garbage": (lambda f, r: "not-a-jwt", "three"),
    "garbage segments": (lambda f, r: "a.b.c", "header"),
    "header not object": (lambda f, r: sign_jwt({"alg": "RS256"}, b"[]", f.key.sign).replace(
        sign_jwt({"alg": "RS256"}, b"[]", f.key.sign).split(".")[0], "WzFd"), "header"),
    "payload not object": (lambda f, r: sign_jwt({"alg": "RS256", "kid": f.key.kid}, b"[1]", f.key.sign),
                           "payload"),
    "oversized token": (lambda f, r: f.id_token({**okta_claims(), "pad": "x" * 70_000}, nonce=r["nonce"]),
                        "characters"),
    "encrypted (5 parts)": (lambda f, r: "a.b.c.d.e", "encrypted"),
}


def _tamper(token: str) -> str:
    head, payload, sig = token.split(".")
    import base64

    data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    data["sub"] = "00u-admin"
    forged = base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()
    return f"{head}.{forged}.{sig}"


def _timed(builder: TokenBuilder) -> TokenBuilder:
    """Resolve "now±N" placeholders and the "multi" audience at signing time."""
    import time

    def resolve(value: Any, fake: FakeOidcIdp) -> Any:
        if value == "multi":
            return [fake.client_id, "another-api"]
        if isinstance(value, str) and value.startswith("now"):
            if value.endswith("as string"):
                return str(int(time.time()) + 3600)
            return int(time.time()) + int(value[3:])
        return value

    def wrapped(fake: FakeOidcIdp, request: Mapping[str, str]) -> str:
        original = fake.id_token

        def patched(claims: Mapping[str, Any] | None = None, **kw: Any) -> str:
            return original({k: resolve(v, fake) for k, v in (claims or {}).items()}, **kw)

        fake.id_token = patched  # type: ignore[method-assign]
        try:
            return builder(fake, request)
        finally:
            fake.id_token = original  # type: ignore[method-assign]

    return wrapped


def bound(fake: FakeOidcIdp, builder: TokenBuilder) -> Callable[[Mapping[str, str]], str]:
    """What FakeOidcIdp.authorize wants: a function of the authorization request."""
    return lambda request: _timed(builder)(fake, request)


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_id_token_is_refused(make_runtime: Any, case: str) -> None:
    builder, hint = CASES[case]
    fake = okta_org_fake()
    runtime = build(make_runtime, fake, okta_connector())
    with client_for(runtime) as client:
        response = oidc_login(client, fake, "acme-okta", id_token=bound(fake, builder))
    assert_refused(runtime, response, hint=hint)


@pytest.mark.parametrize("case", ["alg none", "wrong aud", "garbage", "missing nonce"])
def test_bad_id_token_in_form_post_is_refused(make_runtime: Any, case: str) -> None:
    builder, hint = CASES[case]
    fake = okta_org_fake()
    runtime = build(make_runtime, fake, okta_connector())
    with client_for(runtime) as client:
        location = start_login(client, "acme-okta")
        request = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
        token = _timed(builder)(fake, request)
        response = finish_login(client, {"state": request["state"], "id_token": token}, form_post=True)
    assert_refused(runtime, response, hint=hint)


def test_refusal_is_an_html_page_for_browsers(make_runtime: Any) -> None:
    fake = okta_org_fake()
    runtime = build(make_runtime, fake, okta_connector())
    with client_for(runtime) as client:
        response = oidc_login(client, fake, "acme-okta", claims=okta_claims(aud="someone-else"),
                              headers={"Accept": "text/html"})
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("text/html")
    assert "Application (client) ID" in response.text and "someone-else" in response.text
    assert COOKIE_NAME not in response.headers.get("set-cookie", "")


def test_entra_other_tenant_is_refused(make_runtime: Any) -> None:
    fake = entra_fake()
    runtime = build(make_runtime, fake, entra_connector())
    with client_for(runtime) as client:
        response = oidc_login(client, fake, "acme-entra", claims=entra_claims(
            tid=OTHER_TENANT, iss=f"{AUTHORITY}/{OTHER_TENANT}/v2.0"))
        assert_refused(runtime, response, hint=f"tid is {OTHER_TENANT}; add it to the connector's allowed_tenants")
        # right issuer but a foreign tid claim: still refused
        response = oidc_login(client, fake, "acme-entra", claims=entra_claims(tid=OTHER_TENANT))
        assert_refused(runtime, response, hint="allowed_tenants")
        response = oidc_login(client, fake, "acme-entra", claims=entra_claims(tid=OMIT))
        assert_refused(runtime, response, hint="tid is missing")


def test_entra_common_tenant_accepts_only_listed_tenants(make_runtime: Any) -> None:
    fake = entra_fake("common")
    runtime = build(make_runtime, fake, entra_connector(tenant_id="common", allowed_tenants=[TENANT]))
    with client_for(runtime) as client:
        response = oidc_login(client, fake, "acme-entra", claims=entra_claims(
            tid=OTHER_TENANT, iss=f"{AUTHORITY}/{OTHER_TENANT}/v2.0"))
    assert_refused(runtime, response, hint="allowed_tenants")


def test_entra_token_without_oid_is_refused(make_runtime: Any) -> None:
    fake = entra_fake()
    runtime = build(make_runtime, fake, entra_connector())
    with client_for(runtime) as client:
        response = oidc_login(client, fake, "acme-entra", claims=entra_claims(oid=OMIT))
    assert_refused(runtime, response, hint="no oid claim")
    assert response.json()["reason"] == "oidc.entra_ids_missing"  # azure_ad's rule, not the host's


# -- state, browser binding, IdP errors ----------------------------------------------------


def test_reused_state_is_refused(make_runtime: Any) -> None:
    fake = okta_org_fake()
    runtime = build(make_runtime, fake, okta_connector())
    with client_for(runtime) as client:
        location = start_login(client, "acme-okta")
        params = fake.authorize(location, okta_claims())
        assert finish_login(client, params).status_code == 303
        # the same callback again (replayed from history or a log)
        again = finish_login(client, params)
        assert again.status_code == 400 and COOKIE_NAME not in again.headers.get("set-cookie", "")
        assert "already used" in again.json()["detail"]
    assert counts(runtime)["users"] == 1  # only the first login


def test_state_from_another_browser_is_refused(make_runtime: Any) -> None:
    fake = okta_org_fake()
    runtime = build(make_runtime, fake, okta_connector())
    with client_for(runtime) as victim:
        location = start_login(victim, "acme-okta")
        params = fake.authorize(location, okta_claims())
        with client_for(runtime) as attacker:  # no binding cookie
            response = finish_login(attacker, params)
        assert_refused(runtime, response)
        with client_for(runtime) as attacker:  # someone else's binding cookie
            attacker.cookies.set(BINDING_COOKIE, secrets.token_urlsafe(32), path="/api/accounts")
            response = finish_login(attacker, params)
        assert_refused(runtime, response)
        # the refused attempts did not burn the state: the browser that started can finish
        assert finish_login(victim, params).status_code == 303


def test_missing_state_is_refused(make_runtime: Any) -> None:
    fake = okta_org_fake()
    runtime = build(make_runtime, fake, okta_connector())
    with client_for(runtime) as client:
        location = start_login(client, "acme-okta")
        params = fake.authorize(location, okta_claims())
        response = finish_login(client, {"code": params["code"]})
        assert_refused(runtime, response, hint="without the state")
        response = finish_login(client, {"code": params["code"], "state": "made-up"})
        assert_refused(runtime, response)
        response = finish_login(client, {}, form_post=True)
        assert_refused(runtime, response)


def test_idp_error_callback_after_state_check(make_runtime: Any) -> None:
    fake = okta_org_fake()
    runtime = build(make_runtime, fake, okta_connector())
    with client_for(runtime) as client:
        location = start_login(client, "acme-okta")
        state = parse_qs(urlsplit(location).query)["state"][0]
        response = finish_login(client, {"state": state, "error": "access_denied",
                                         "error_description": "User is not assigned to the client application."},
                                headers={"Accept": "text/html"})
        assert response.status_code == 400
        assert "access_denied" in response.text and "not assigned to the client application" in response.text
        # an error callback without a valid state is refused as a state problem, not shown
        forged = finish_login(client, {"state": "forged", "error": "access_denied",
                                       "error_description": "<script>alert(1)</script>"})
        assert forged.status_code == 400 and "<script>" not in forged.text
        # the state was consumed by the error callback
        again = finish_login(client, {"state": state, "error": "access_denied"})
        assert "already used" in again.json()["detail"]
    assert counts(runtime)["users"] == 0 and counts(runtime)["sessions"] == 0


def test_code_for_another_login_fails_pkce(make_runtime: Any) -> None:
    """Code injection: a code issued for one login flow, replayed with another flow's state."""
    fake = okta_org_fake()
    runtime = build(make_runtime, fake, okta_connector())
    with client_for(runtime) as client:
        first = fake.authorize(start_login(client, "acme-okta"), okta_claims())
        second_location = start_login(client, "acme-okta")
        state = parse_qs(urlsplit(second_location).query)["state"][0]
        response = finish_login(client, {"code": first["code"], "state": state})
    assert_refused(runtime, response, hint="refused the authorization code")


def test_wrong_client_secret_is_a_clear_upstream_error(make_runtime: Any) -> None:
    fake = okta_org_fake()
    runtime = build(make_runtime, fake, okta_connector(client_secret="wrong"))
    with client_for(runtime) as client:
        response = oidc_login(client, fake, "acme-okta", claims=okta_claims())
    assert response.status_code == 502
    assert "client_secret" in response.json()["hint"]
    assert counts(runtime)["users"] == 0 and COOKIE_NAME not in response.headers.get("set-cookie", "")


def test_rfc9207_iss_parameter_mismatch_is_refused(make_runtime: Any) -> None:
    fake = okta_org_fake()
    runtime = build(make_runtime, fake, okta_connector())
    with client_for(runtime) as client:
        params = fake.authorize(start_login(client, "acme-okta"), okta_claims())
        response = finish_login(client, {**params, "iss": "https://evil.example"})
    assert_refused(runtime, response, hint="iss parameter")


def test_oversized_callback_parameter_is_refused(make_runtime: Any) -> None:
    fake = okta_org_fake()
    runtime = build(make_runtime, fake, okta_connector())
    with client_for(runtime) as client:
        response = finish_login(client, {"state": "s" * 5000, "code": "c"})
    assert response.status_code == 400


# -- keys: unknown kid, rotation, refetch limits --------------------------------------------


def _with_clock(runtime: Runtime) -> Clock:
    clock = Clock()
    runtime.jwks = JwksCache(cooldown=30, clock=clock)
    return clock


def test_unknown_kid_triggers_exactly_one_refetch_and_bursts_are_rate_limited(make_runtime: Any) -> None:
    fake = okta_org_fake()
    runtime = build(make_runtime, fake, okta_connector())
    clock = _with_clock(runtime)
    with client_for(runtime) as client:
        assert oidc_login(client, fake, "acme-okta", claims=okta_claims()).status_code == 303
        assert fake.jwks_fetches == 1
        clock.now += 31
        response = oidc_login(client, fake, "acme-okta", id_token=bound(fake, okta(header={"kid": "unknown-1"})))
        assert response.status_code == 400 and "does not publish" in response.json()["hint"]
        assert fake.jwks_fetches == 2  # exactly one refetch
        for _ in range(20):  # a burst of random kids inside the cooldown: no fetch at all
            response = oidc_login(client, fake, "acme-okta",
                                  id_token=bound(fake, okta(header={"kid": secrets.token_hex(8)})))
            assert response.status_code == 400
        assert fake.jwks_fetches == 2
        clock.now += 31
        for _ in range(5):
            oidc_login(client, fake, "acme-okta", id_token=bound(fake, okta(header={"kid": secrets.token_hex(8)})))
        assert fake.jwks_fetches == 3  # at most one per cooldown
    assert counts(runtime)["users"] == 1


def test_key_rotation_is_accepted_after_one_refetch(make_runtime: Any) -> None:
    fake = okta_org_fake()
    runtime = build(make_runtime, fake, okta_connector())
    clock = _with_clock(runtime)
    with client_for(runtime) as client:
        assert oidc_login(client, fake, "acme-okta", claims=okta_claims()).status_code == 303
        clock.now += 60
        fake.rotate("key-2")
        response = oidc_login(client, fake, "acme-okta", claims=okta_claims())
        assert response.status_code == 303, response.text
        assert fake.jwks_fetches == 2
        # cached from now on
        assert oidc_login(client, fake, "acme-okta", claims=okta_claims()).status_code == 303
        assert fake.jwks_fetches == 2


def test_kid_absent_single_key_is_accepted_several_keys_refused(make_runtime: Any) -> None:
    fake = okta_org_fake()
    fake.keys = [SigningKey(None)]
    runtime = build(make_runtime, fake, okta_connector())
    clock = _with_clock(runtime)
    with client_for(runtime) as client:
        assert oidc_login(client, fake, "acme-okta", claims=okta_claims()).status_code == 303
    fake.keys = [SigningKey(None), SigningKey(None)]
    clock.now += 4000  # past the cache TTL: the two-key document is loaded
    with client_for(runtime) as client:
        response = oidc_login(client, fake, "acme-okta", claims=okta_claims(sub="00u-other"))
    assert response.status_code == 400 and "exactly one" in response.json()["hint"]


def test_foreign_and_unusable_keys_in_jwks_are_skipped(make_runtime: Any) -> None:
    fake = okta_org_fake()
    good = fake.key.public_jwk()
    fake.jwks_override = {"keys": [
        {"kty": "AKP", "kid": "pq", "alg": "ML-DSA-44", "pub": "AAAA"},
        {"kty": "EC", "kid": "ec", "crv": "P-256", "x": "AA", "y": "AA"},
        {**good, "kid": "enc", "use": "enc"},
        {"kty": "RSA", "kid": "broken", "n": "!!", "e": "AQAB"},
        "not a key",
        good,
    ]}
    runtime = build(make_runtime, fake, okta_connector())
    with client_for(runtime) as client:
        assert oidc_login(client, fake, "acme-okta", claims=okta_claims()).status_code == 303
        response = oidc_login(client, fake, "acme-okta", id_token=bound(fake, okta(header={"kid": "enc"})))
        assert response.status_code == 400


def test_jwks_unreachable_is_an_upstream_error_not_a_500(make_runtime: Any) -> None:
    fake = okta_org_fake()
    fake.jwks_override = {"not": "a jwks"}
    runtime = build(make_runtime, fake, okta_connector())
    with client_for(runtime) as client:
        response = oidc_login(client, fake, "acme-okta", claims=okta_claims())
    assert response.status_code == 502
    assert "JWKS" in response.json()["hint"]
    assert counts(runtime)["users"] == 0


def test_no_jwt_decode_without_pinned_algorithms() -> None:
    """Every jwt.decode in the code base pins algorithms (security-checklist §2.1): a literal
    list, or ``pinned(alg)``, which returns exactly one allow-listed asymmetric algorithm."""
    import re
    from pathlib import Path

    from transom.oidc.algorithms import ALLOWED_ALGORITHMS, pinned

    for bad in ("none", "NoNe", "HS256", "HS384", "HS512", "ES512", ""):
        with pytest.raises(ValueError):
            pinned(bad)
    assert all(pinned(alg) == [alg] for alg in ALLOWED_ALGORITHMS)
    assert not any(alg.startswith("HS") or alg.lower() == "none" for alg in ALLOWED_ALGORITHMS)

    root = Path(__file__).resolve().parents[1]
    calls = 0
    for path in [*root.joinpath("core").rglob("*.py"), *root.joinpath("plugins").rglob("*.py")]:
        text = path.read_text(encoding="utf-8")
        for match in re.finditer(r"jwt\.decode\(", text):
            calls += 1
            window = text[match.end(): match.end() + 400]
            assert ("algorithms=ALLOWED_ALGORITHMS" in window or 'algorithms=["RS256"]' in window
                    or "algorithms=pinned(" in window), path
        assert "verify_signature\": False" not in text, path
        assert "get_unverified_claims" not in text, path
    assert calls >= 1
