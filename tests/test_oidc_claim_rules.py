"""The id_token header and claim rules as plain functions (no app, no signing): each refusal
names its rule (``reason``), and the accepting side of each rule is shown next to it. The same
rules through the app with signed tokens: tests/test_oidc_hardening.py. Listed first in the
``oidc-checks`` target of bench/mutate.py: these fail fastest."""

from __future__ import annotations

import base64
import dataclasses
import json
from typing import Any

import pytest

from transom.connector import OidcProvider
from transom.errors import LoginRefused
from transom.oidc.idtoken import check_claims, parse_header, verify_id_token

NOW = 1_800_000_000.0
SKEW = 120
CLIENT = "client-1"
PROVIDER = OidcProvider(issuers=("https://idp.example",), authorization_endpoint="https://idp.example/authorize",
                        token_endpoint="https://idp.example/token", jwks_uri="https://idp.example/keys",
                        client_id=CLIENT, client_secret=None)


def _claims(**changes: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {"iss": "https://idp.example", "aud": CLIENT, "sub": "user-1", "exp": NOW + 300,
                              "iat": NOW - 10, "nonce": "n-1"}
    claims.update(changes)
    return claims


def _refusal(claims: dict[str, Any], nonce: str | None = "n-1") -> LoginRefused:
    with pytest.raises(LoginRefused) as caught:
        check_claims(claims, provider=PROVIDER, nonce=nonce, clock_skew_seconds=SKEW, now=NOW)
    return caught.value


def test_valid_claims_pass() -> None:
    check_claims(_claims(), provider=PROVIDER, nonce="n-1", clock_skew_seconds=SKEW, now=NOW)


def test_no_stored_nonce_is_its_own_refusal() -> None:
    """A login always stores a nonce; the token inspection of the admin API passes the
    token's own (or none), so "nothing stored" must be told apart from "none received"."""
    for stored in (None, ""):
        assert _refusal(_claims(), nonce=stored).reason == "oidc.nonce_not_stored"
        assert _refusal(_claims(nonce=None), nonce=stored).reason == "oidc.nonce_not_stored"


def test_nonce_must_match_exactly() -> None:
    assert _refusal(_claims(nonce="n-2")).reason == "oidc.nonce"
    assert _refusal(_claims(nonce="n-1 ")).reason == "oidc.nonce"
    assert _refusal(_claims(nonce=None)).reason == "oidc.nonce_missing"


# -- the header ----------------------------------------------------------------------------


@pytest.mark.parametrize("token", ["", b"a.b.c", 5, None])
def test_an_empty_or_non_string_token_is_refused_as_such(token: Any) -> None:
    with pytest.raises(LoginRefused) as caught:
        parse_header(token)
    assert caught.value.reason == "oidc.malformed"
    assert caught.value.hint is not None and "empty id_token" in caught.value.hint


class _NoKeyLookup:
    """A JWKS cache that fails the test if asked: the header check must refuse first."""

    def key_for(self, *args: Any) -> Any:
        raise AssertionError("the key was looked up for a token the header check should refuse")


@pytest.mark.parametrize(("accepted", "alg"), [(("ES256",), "RS256"), (("RS256", "PS256"), "ES256"), ((), "ES256")])
def test_the_provider_algorithms_bind_the_header_alg(accepted: tuple[str, ...], alg: str) -> None:
    """The provider's own algorithms (RS256 when it names none), not the default, bind ``alg``."""
    header = base64.urlsafe_b64encode(json.dumps({"alg": alg, "kid": "k1"}).encode()).rstrip(b"=").decode()
    provider = dataclasses.replace(PROVIDER, signing_algorithms=accepted)
    with pytest.raises(LoginRefused) as caught:
        verify_id_token(f"{header}.e30.c2ln", provider=provider, jwks=_NoKeyLookup(),  # type: ignore[arg-type]
                        http=None, nonce="n-1", clock_skew_seconds=SKEW, now=NOW)  # type: ignore[arg-type]
    assert caught.value.reason == "oidc.alg"
    assert caught.value.hint is not None and f"accepts {', '.join(accepted or ('RS256',))}:" in caught.value.hint
