"""Each way a UserInfo endpoint can fail is its own refusal (502 with a hint naming what went
wrong), pinned one by one: ``fetch_userinfo`` over an httpx transport that plays the IdP.
The happy paths and the ``sub`` rules run end to end in tests/test_generic_oidc.py."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace

import httpx
import pytest

from transom.connector import OidcProvider
from transom.errors import LoginRefused, UpstreamError
from transom.oidc.userinfo import MAX_USERINFO_BYTES, fetch_userinfo, merge_userinfo

ENDPOINT = "https://idp.example/userinfo"
PROVIDER = OidcProvider(issuers=("https://idp.example",), authorization_endpoint="https://idp.example/authorize",
                        token_endpoint="https://idp.example/token", jwks_uri="https://idp.example/keys",
                        client_id="client", client_secret=None, userinfo_endpoint=ENDPOINT)


def _fetch(answer: Callable[[httpx.Request], httpx.Response]) -> dict[str, object]:
    with httpx.Client(transport=httpx.MockTransport(answer)) as http:
        return fetch_userinfo(http, PROVIDER, "access-token")


def _refusal(answer: Callable[[httpx.Request], httpx.Response]) -> str:
    with pytest.raises(UpstreamError) as refused:
        _fetch(answer)
    assert refused.value.status == 502
    assert refused.value.hint is not None and refused.value.hint.startswith(f"the UserInfo endpoint {ENDPOINT} ")
    return refused.value.hint


def test_a_plain_json_object_is_returned_with_the_bearer_token_sent() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"sub": "u1", "email": "ada@example.com"})

    assert _fetch(answer) == {"sub": "u1", "email": "ada@example.com"}
    assert seen[0].headers["authorization"] == "Bearer access-token"
    assert seen[0].headers["accept"] == "application/json"


@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_access_token_says_which_scope_is_needed(status: int) -> None:
    hint = _refusal(lambda _r: httpx.Response(status, json={"error": "invalid_token"}))
    assert f"refused the access token (HTTP {status})" in hint and "'openid' scope" in hint


@pytest.mark.parametrize("status", [400, 402, 404, 500])
def test_any_other_status_is_named(status: int) -> None:
    hint = _refusal(lambda _r: httpx.Response(status, json={"sub": "u1"}))
    assert hint.endswith(f"answered HTTP {status}")


def test_a_redirect_is_not_followed() -> None:
    """A redirect would send the access token to wherever the IdP's answer points."""
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/userinfo":
            return httpx.Response(302, headers={"location": "https://elsewhere.example/me"})
        return httpx.Response(200, json={"sub": "u1"})

    assert _refusal(answer).endswith("answered HTTP 302")


def test_an_answer_over_the_size_cap_is_refused() -> None:
    padding = "x" * (MAX_USERINFO_BYTES + 1)
    hint = _refusal(lambda _r: httpx.Response(200, json={"sub": "u1", "padding": padding}))
    assert f"answered more than {MAX_USERINFO_BYTES} bytes" in hint


def test_an_unreachable_endpoint_names_the_error_class() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    assert _refusal(answer).endswith("could not be reached (ConnectError)")


def test_a_jwt_answer_asks_for_plain_json() -> None:
    hint = _refusal(lambda _r: httpx.Response(200, content=b"eyJ.eyJ.sig",
                                              headers={"content-type": "application/jwt; charset=utf-8"}))
    assert "answered a signed or encrypted JWT" in hint


@pytest.mark.parametrize(("body", "why"), [(b"<html>", "did not answer JSON"),
                                           (b"[1, 2]", "did not answer a JSON object"),
                                           (b"\"sub\"", "did not answer a JSON object")])
def test_a_body_that_is_not_a_json_object_is_refused(body: bytes, why: str) -> None:
    hint = _refusal(lambda _r: httpx.Response(200, content=body, headers={"content-type": "application/json"}))
    assert hint.endswith(why)


@pytest.mark.parametrize(("info", "wording"), [({"email": "a@example.com"}, "sub is missing"),
                                               ({"sub": "u2"}, "sub is different from the id_token sub")])
def test_a_userinfo_sub_that_is_not_the_tokens_says_which(info: dict[str, object], wording: str) -> None:
    with pytest.raises(LoginRefused) as refused:
        merge_userinfo(PROVIDER, {"sub": "u1"}, info)
    assert refused.value.hint is not None and f"the UserInfo response's {wording};" in refused.value.hint


def test_userinfo_never_supplies_the_tenant_claim() -> None:
    """The tenant is an authorization decision made on the signed id_token: an unsigned
    UserInfo answer must not fill it in when the token lacks it."""
    provider = replace(PROVIDER, tenant_claim="tid", allowed_tenants=("t1",))
    merged = merge_userinfo(provider, {"sub": "u1"}, {"sub": "u1", "tid": "t1", "email": "a@example.com"})
    assert merged == {"sub": "u1", "email": "a@example.com"}


def test_the_log_line_names_the_claims_added_or_none(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="transom.oidc")
    merge_userinfo(PROVIDER, {"sub": "u1", "email": "a@example.com"}, {"sub": "u1", "email": "b@example.com"})
    merge_userinfo(PROVIDER, {"sub": "u1"}, {"sub": "u1", "name": "Ada", "email": "a@example.com"})
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("UserInfo added claims")]
    assert lines == ["UserInfo added claims: none", "UserInfo added claims: email, name"]
