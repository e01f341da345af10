"""The ``generic_oidc`` connector type end to end through HTTP: host-side discovery (the
connector names only the issuer), UserInfo for the claims the id_token lacks, the asymmetric
algorithms the discovery document advertises (key type bound to the algorithm), and the
refusals (foreign issuer in discovery, UserInfo for another sub, a user with neither email
nor user name, none/HMAC, key/alg mismatch)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from conftest import client_for
from oidc_support import build, counts, okta_connector, okta_org_fake
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from transom import directory
from transom.connector import Claims, Connector, ConnectorType, OidcProvider, OidcSettings
from transom.errors import ConfigError
from transom.hookspecs import hookimpl
from transom.runtime import Runtime
from transom.testing.jws_keys import EcSigningKey, Ed25519SigningKey, JwsKey, RsaAlgSigningKey
from transom.testing.oidc import FakeOidcIdp, hs256_signer, oidc_login, sign_jwt, start_login
from transom.testing.server import free_port, serve_in_thread

ISSUER = "https://sso.example.test/realms/acme"
CLIENT = "transom-app"
SECRET = "generic-secret-value"


def discovery_only_fake(issuer: str = ISSUER) -> FakeOidcIdp:
    """Endpoints at paths no one could guess from the issuer: a login that works found them
    in the discovery document."""
    host = issuer.split("/realms/")[0]
    return FakeOidcIdp(issuer=issuer, client_id=CLIENT, client_secret=SECRET,
                       authorization_endpoint=f"{host}/x9/authorize-here",
                       token_endpoint=f"{host}/x9/tokens/exchange", jwks_uri=f"{host}/x9/published-keys",
                       userinfo_endpoint=f"{host}/x9/who-am-i")


def generic_connector(issuer: str = ISSUER, **settings: Any) -> dict[str, Any]:
    return {"id": "acme-oidc", "type": "generic_oidc", "account": "acme",
            "settings": {"issuer": issuer, "client_id": CLIENT, "client_secret": SECRET, **settings}}


def profile(sub: str = "u-123", **extra: Any) -> dict[str, Any]:
    return {"sub": sub, "email": "ada@acme.example", "email_verified": True,
            "preferred_username": "ada", "name": "Ada Lovelace", **extra}


def signed_with(fake: FakeOidcIdp, key: JwsKey, claims: Mapping[str, Any],
                **header: Any) -> Callable[[Mapping[str, str]], str]:
    """An id_token for the authorization request, signed with ``key`` (its own alg)."""
    return lambda request: fake.id_token(claims, nonce=request["nonce"], key=key, header=header or None)


def me(client: Any) -> dict[str, Any]:
    response = client.get("/api/me")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


# -- discovery ------------------------------------------------------------------------------


def test_logs_in_with_only_the_issuer_configured(make_runtime: Any) -> None:
    fake = discovery_only_fake()
    runtime = build(make_runtime, fake, generic_connector())
    with client_for(runtime) as client:
        location = start_login(client, "acme-oidc")
        assert location.startswith("https://sso.example.test/x9/authorize-here?")
        response = oidc_login(client, fake, "acme-oidc", claims=profile())
        assert response.status_code == 303, response.text
        user = me(client)
    assert (user["email"], user["user_name"], user["display_name"]) == ("ada@acme.example", "ada", "Ada Lovelace")
    assert fake.token_requests and fake.token_requests[-1]["code_verifier"]
    assert fake.discovery_fetches == 1  # cached: two login starts and a callback, one fetch
    assert fake.userinfo_requests == 0  # the id_token had every profile claim
    assert counts(runtime)["users"] == 1


def test_logs_in_over_real_http(make_runtime: Any) -> None:
    """The same against a fake IdP on 127.0.0.1 served by uvicorn, through the host's own
    HTTP client (no transport injected)."""
    with served_fake() as fake:
        runtime: Runtime = make_runtime(connectors=[generic_connector(fake.issuer)])
        with runtime.db.transaction() as db:
            directory.create_account(db, name="acme")
        with client_for(runtime) as client:
            response = oidc_login(client, fake, "acme-oidc", claims={"sub": "u-http"},
                                  userinfo=profile("u-http"))
            assert response.status_code == 303, response.text
            assert me(client)["email"] == "ada@acme.example"
    assert fake.discovery_fetches == 1 and fake.userinfo_requests == 1


@contextmanager
def served_fake() -> Iterator[FakeOidcIdp]:
    port = free_port()
    fake = FakeOidcIdp(issuer=f"http://127.0.0.1:{port}/realms/acme", client_id=CLIENT, client_secret=SECRET)

    async def handle(request: Request) -> Response:
        answer = fake.handle(httpx.Request(request.method, str(request.url), headers=request.headers.raw,
                                           content=await request.body()))
        return Response(answer.content, status_code=answer.status_code, headers=dict(answer.headers))

    app = Starlette(routes=[Route("/{path:path}", handle, methods=["GET", "POST"])])
    with serve_in_thread(app, port=port):  # type: ignore[arg-type]
        yield fake


def test_refuses_a_discovery_document_for_another_issuer(make_runtime: Any) -> None:
    fake = discovery_only_fake()
    fake.discovery_override = {**fake.discovery_document(), "issuer": "https://evil.example.test/realms/acme"}
    runtime = build(make_runtime, fake, generic_connector())
    with client_for(runtime) as client:
        response = client.get("/api/accounts/login/acme-oidc", headers={"accept": "application/json"})
    assert response.status_code == 502
    hint = response.json()["hint"]
    assert "https://evil.example.test/realms/acme" in hint and "character for character" in hint
    assert counts(runtime) == {"users": 0, "identities": 0, "sessions": 0, "login_states": 0}


def test_a_refused_discovery_document_is_fetched_again_after_the_cooldown(make_runtime: Any) -> None:
    fake = discovery_only_fake()
    fake.discovery_override = {**fake.discovery_document(), "issuer": "https://evil.example.test/realms/acme"}
    runtime = build(make_runtime, fake, generic_connector())
    runtime.discovery.cooldown = 0.0  # "the cooldown has passed" without waiting for it
    with client_for(runtime) as client:
        assert client.get("/api/accounts/login/acme-oidc").status_code == 502
        fake.discovery_override = None  # the provider fixed its document
        assert oidc_login(client, fake, "acme-oidc", claims=profile()).status_code == 303
    assert fake.discovery_fetches == 2


def test_issuer_match_is_exact_even_for_a_trailing_slash(make_runtime: Any) -> None:
    fake = discovery_only_fake()
    runtime = build(make_runtime, fake, generic_connector(ISSUER + "/"))
    with client_for(runtime) as client:
        response = client.get("/api/accounts/login/acme-oidc", headers={"accept": "application/json"})
    assert response.status_code == 502
    assert f"'{ISSUER}'" in response.json()["hint"]  # the hint names the issuer to configure


def test_refuses_plain_http_endpoints_for_an_https_issuer(make_runtime: Any) -> None:
    fake = discovery_only_fake()
    fake.discovery_override = {**fake.discovery_document(), "token_endpoint": "http://sso.example.test/token"}
    runtime = build(make_runtime, fake, generic_connector())
    with client_for(runtime) as client:
        response = client.get("/api/accounts/login/acme-oidc", headers={"accept": "application/json"})
    assert response.status_code == 502 and "token_endpoint" in response.json()["hint"]


@pytest.mark.parametrize("body", [b"not json", b"[]", b"{\"issuer\": \"" + ISSUER.encode() + b"\"}",
                                  b"{" + b" " * (70 * 1024) + b"}"])
def test_a_broken_discovery_document_is_a_502_with_a_hint(make_runtime: Any, body: bytes) -> None:
    fake = discovery_only_fake()

    def handle(request: httpx.Request) -> httpx.Response:
        if str(request.url) == fake.discovery_url:
            return httpx.Response(200, content=body)
        return fake.handle(request)

    runtime: Runtime = make_runtime(connectors=[generic_connector()],
                                    http=httpx.Client(transport=httpx.MockTransport(handle)))
    with client_for(runtime) as client:
        response = client.get("/api/accounts/login/acme-oidc", headers={"accept": "application/json"})
    assert response.status_code == 502
    assert "discovery document" in response.json()["hint"]


def test_an_unknown_kid_refetches_discovery_and_follows_a_moved_jwks_uri(make_runtime: Any) -> None:
    fake = discovery_only_fake()
    runtime = build(make_runtime, fake, generic_connector())
    runtime.discovery.cooldown = 0.0  # this test is about the refetch, not its rate limit
    with client_for(runtime) as client:
        assert oidc_login(client, fake, "acme-oidc", claims=profile()).status_code == 303
    fake.jwks_uri = "https://sso.example.test/x9/keys-v2"
    fake.rotate("key-2")
    with client_for(runtime) as client:
        assert oidc_login(client, fake, "acme-oidc", claims=profile()).status_code == 303, "new jwks_uri used"
    assert fake.discovery_fetches == 2


# -- UserInfo ---------------------------------------------------------------------------------


def test_profile_claims_come_from_userinfo_when_the_id_token_has_only_sub(make_runtime: Any) -> None:
    fake = discovery_only_fake()
    runtime = build(make_runtime, fake, generic_connector(groups_claim="groups"))
    with runtime.db.transaction() as db:
        account = directory.get_account(db, name="acme")
        directory.create_space(db, account=account, name="Research")
        directory.create_group(db, account=account, name="Developers", idp_identifier="g-1")
    info = profile(groups=["g-1"], iss="https://evil.example.test", nonce="forged", space_name="Research")
    with client_for(runtime) as client:
        response = oidc_login(client, fake, "acme-oidc", claims={"sub": "u-123"}, userinfo=info)
        assert response.status_code == 303, response.text
        user = me(client)
    assert (user["email"], user["user_name"], user["display_name"]) == ("ada@acme.example", "ada", "Ada Lovelace")
    assert [s["space"] for s in user["spaces"]] == ["Research"]  # host-owned attribute from UserInfo too
    assert [(g["name"], g["source"]) for g in user["groups"]] == [("Developers", "idp")]  # group sync
    assert fake.userinfo_requests == 1


def test_userinfo_never_overrides_the_id_token() -> None:
    from transom.oidc.userinfo import merge_userinfo

    provider = OidcProvider.discover(ISSUER, client_id=CLIENT, client_secret=None, subject_claim="oid")
    id_token = {"sub": "u-1", "iss": ISSUER, "aud": CLIENT, "nonce": "n", "name": "From Token"}
    info = {"sub": "u-1", "iss": "https://evil", "aud": "other", "nonce": "x", "oid": "someone-else",
            "name": "From UserInfo", "email": "ada@acme.example", "_claim_names": {"groups": "src1"}}
    merged = merge_userinfo(provider, id_token, info)
    assert merged == {**id_token, "email": "ada@acme.example"}


def test_refuses_a_userinfo_for_another_subject(make_runtime: Any) -> None:
    fake = discovery_only_fake()
    runtime = build(make_runtime, fake, generic_connector())
    with client_for(runtime) as client:
        response = oidc_login(client, fake, "acme-oidc", claims={"sub": "u-123"}, userinfo=profile("u-999"),
                              headers={"accept": "application/json"})
    assert response.status_code == 400
    assert "sub" in response.json()["hint"] and "§5.3.2" in response.json()["hint"]
    assert counts(runtime) == {"users": 0, "identities": 0, "sessions": 0, "login_states": 0}


def test_userinfo_that_refuses_the_token_is_a_502(make_runtime: Any) -> None:
    fake = discovery_only_fake()
    runtime = build(make_runtime, fake, generic_connector())
    with client_for(runtime) as client:  # no userinfo registered for the code: the fake answers 401
        response = oidc_login(client, fake, "acme-oidc", claims={"sub": "u-123"},
                              headers={"accept": "application/json"})
    assert response.status_code == 502 and "who-am-i" in response.json()["hint"]
    assert counts(runtime)["users"] == 0


@pytest.mark.parametrize("kind", ["generic_oidc", "okta"])
def test_refuses_to_create_a_user_without_email_or_user_name(make_runtime: Any, kind: str) -> None:
    """Host logic for every OIDC type: an id_token with only ``sub`` and nothing from UserInfo
    would create an empty duplicate of the person's real user."""
    fake, connector, connector_id = ((discovery_only_fake(), generic_connector(), "acme-oidc") if kind == "generic_oidc"
                                     else (okta_org_fake(), okta_connector(), "acme-okta"))
    runtime = build(make_runtime, fake, connector)
    with client_for(runtime) as client:
        response = oidc_login(client, fake, connector_id, claims={"sub": "u-empty"}, userinfo={"sub": "u-empty"},
                              headers={"accept": "application/json"})
    assert response.status_code == 400
    assert "neither" in response.json()["hint"] and "no user was created" in response.json()["hint"]
    assert counts(runtime) == {"users": 0, "identities": 0, "sessions": 0, "login_states": 0}


# -- algorithms -------------------------------------------------------------------------------


@pytest.mark.parametrize("make_key", [
    lambda: EcSigningKey("ec-256", "ES256"),
    lambda: EcSigningKey("ec-384", "ES384"),
    lambda: Ed25519SigningKey("ed-1"),
    lambda: RsaAlgSigningKey("ps-1", "PS256"),
    lambda: RsaAlgSigningKey("rs384-1", "RS384", publish_alg=False),
    lambda: RsaAlgSigningKey("rs512-1", "RS512"),
], ids=["ES256", "ES384", "EdDSA", "PS256", "RS384", "RS512"])
def test_verifies_the_advertised_asymmetric_algorithms(make_runtime: Any, make_key: Callable[[], Any]) -> None:
    key = make_key()
    fake = discovery_only_fake()
    fake.signing_algorithms = [key.alg, "RS256"]
    fake.jwks_override = {"keys": [fake.key.public_jwk(), key.public_jwk()]}
    runtime = build(make_runtime, fake, generic_connector())
    with client_for(runtime) as client:
        response = oidc_login(client, fake, "acme-oidc", id_token=signed_with(fake, key, profile()))
        assert response.status_code == 303, response.text
    assert counts(runtime)["users"] == 1


def test_an_algorithm_the_provider_does_not_advertise_is_refused(make_runtime: Any) -> None:
    key = EcSigningKey("ec-256")
    fake = discovery_only_fake()  # advertises RS256 only
    fake.jwks_override = {"keys": [key.public_jwk()]}
    runtime = build(make_runtime, fake, generic_connector())
    with client_for(runtime) as client:
        response = oidc_login(client, fake, "acme-oidc", id_token=signed_with(fake, key, profile()),
                              headers={"accept": "application/json"})
    assert response.status_code == 400 and "alg 'ES256'" in response.json()["hint"]
    assert counts(runtime)["users"] == 0


def _none_signature(data: bytes) -> bytes:
    return b""


@pytest.mark.parametrize("case", ["none", "HS256 with the public key", "HS256 with the client secret", "ES512"])
def test_none_and_hmac_are_refused_even_when_advertised(make_runtime: Any, case: str) -> None:
    fake = discovery_only_fake()
    fake.signing_algorithms = ["none", "HS256", "ES512", "RS256"]
    ec512 = EcSigningKey("ec-512", "ES512")
    tokens: dict[str, Callable[[Mapping[str, str]], str]] = {
        "none": lambda r: fake.id_token(profile(), nonce=r["nonce"], header={"alg": "none"}, signer=_none_signature),
        "HS256 with the public key": lambda r: fake.id_token(profile(), nonce=r["nonce"], header={"alg": "HS256"},
                                                             signer=hs256_signer(fake.key.public_pem())),
        "HS256 with the client secret": lambda r: fake.id_token(profile(), nonce=r["nonce"], header={"alg": "HS256"},
                                                                signer=hs256_signer(SECRET.encode())),
        "ES512": signed_with(fake, ec512, profile()),
    }
    fake.jwks_override = {"keys": [fake.key.public_jwk(), ec512.public_jwk()]}
    runtime = build(make_runtime, fake, generic_connector())
    with client_for(runtime) as client:
        response = oidc_login(client, fake, "acme-oidc", id_token=tokens[case], headers={"accept": "application/json"})
    assert response.status_code == 400, response.text
    assert "this connector accepts RS256" in response.json()["hint"]
    assert counts(runtime)["users"] == 0


def test_a_provider_advertising_only_hmac_is_refused_with_a_hint(make_runtime: Any) -> None:
    fake = discovery_only_fake()
    fake.signing_algorithms = ["HS256", "none"]
    runtime = build(make_runtime, fake, generic_connector())
    with client_for(runtime) as client:
        response = client.get("/api/accounts/login/acme-oidc", headers={"accept": "application/json"})
    assert response.status_code == 502
    assert "HS256" in response.json()["hint"] and "never none or HMAC" in response.json()["hint"]


@pytest.mark.parametrize("case", [
    "ES256 header, RSA key", "RS256 header, EC key", "ES384 header, P-256 key", "EdDSA header, EC key",
    "PS256 header, key published for RS256",
])
def test_the_key_type_is_bound_to_the_algorithm(make_runtime: Any, case: str) -> None:
    fake = discovery_only_fake()
    fake.signing_algorithms = ["RS256", "PS256", "ES256", "ES384", "EdDSA"]
    ec256 = EcSigningKey("ec-256", "ES256")
    fake.jwks_override = {"keys": [fake.key.public_jwk(), ec256.public_jwk()]}
    rsa_kid, ec_kid = fake.key.kid, ec256.kid
    tokens: dict[str, Callable[[Mapping[str, str]], str]] = {
        # the header names the right kid, the wrong algorithm for its key type (and a
        # signature made by that key with the header's algorithm where one exists)
        "ES256 header, RSA key": signed_with(fake, EcSigningKey("x", "ES256"), profile(), kid=rsa_kid),
        "RS256 header, EC key": lambda r: fake.id_token(profile(), nonce=r["nonce"], header={"kid": ec_kid}),
        "ES384 header, P-256 key": signed_with(fake, EcSigningKey("x", "ES384"), profile(), kid=ec_kid),
        "EdDSA header, EC key": signed_with(fake, Ed25519SigningKey("x"), profile(), kid=ec_kid),
        "PS256 header, key published for RS256": lambda r: fake.id_token(
            profile(), nonce=r["nonce"], header={"alg": "PS256"},
            signer=RsaAlgSigningKey(rsa_kid, "PS256", private_key=fake.key.private_key).sign),
    }
    runtime = build(make_runtime, fake, generic_connector())
    with client_for(runtime) as client:
        response = oidc_login(client, fake, "acme-oidc", id_token=tokens[case], headers={"accept": "application/json"})
    assert response.status_code == 400, response.text
    assert "does not publish" in response.json()["hint"]
    assert counts(runtime)["users"] == 0


def test_okta_stays_pinned_to_rs256(make_runtime: Any) -> None:
    key = EcSigningKey("ec-256")
    fake = okta_org_fake()
    fake.jwks_override = {"keys": [key.public_jwk()]}
    runtime = build(make_runtime, fake, okta_connector())
    with client_for(runtime) as client:
        response = oidc_login(client, fake, "acme-okta", id_token=signed_with(fake, key, profile()),
                              headers={"accept": "application/json"})
    assert response.status_code == 400 and "accepts RS256:" in response.json()["hint"]
    assert fake.discovery_fetches == 0


# -- settings, capabilities and the OidcSettings base -------------------------------------------


def test_a_tenant_claim_restricts_who_may_sign_in(make_runtime: Any) -> None:
    """Google Workspace: any Google account can get a token for a public app; ``hd`` names
    the user's Workspace domain."""
    fake = discovery_only_fake()
    runtime = build(make_runtime, fake, generic_connector(tenant_claim="hd", allowed_tenants=["acme.example"]))
    with client_for(runtime) as client:
        refused = oidc_login(client, fake, "acme-oidc", claims=profile("u-gmail", hd=None),
                             headers={"accept": "application/json"})
        assert refused.status_code == 400 and "hd is missing" in refused.json()["hint"]
        assert oidc_login(client, fake, "acme-oidc", claims=profile(hd="acme.example")).status_code == 303
    with pytest.raises(ConfigError, match="tenant_claim"):
        make_runtime(connectors=[generic_connector(tenant_claim="hd")])


def test_group_sync_only_when_groups_claim_is_set(make_runtime: Any) -> None:
    fake = discovery_only_fake()
    plain = build(make_runtime, fake, generic_connector())
    assert not plain.connector("acme-oidc").syncs_groups
    with_groups: Runtime = make_runtime(connectors=[generic_connector(groups_claim="groups")])
    assert with_groups.connector("acme-oidc").syncs_groups


def test_settings_refuse_unknown_keys_and_take_the_secret_by_reference(
        make_runtime: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="authorization_endpoint"):
        make_runtime(connectors=[generic_connector(authorization_endpoint="https://x.test/a")])
    with pytest.raises(ConfigError, match="issuer"):
        make_runtime(connectors=[generic_connector("ftp://sso.example.test")])
    monkeypatch.setenv("ACME_OIDC_SECRET", "from-the-environment")
    runtime: Runtime = make_runtime(connectors=[generic_connector(client_secret={"env": "ACME_OIDC_SECRET"})])
    settings = runtime.connector("acme-oidc").settings
    assert "from-the-environment" not in repr(settings)
    assert runtime.plugins.oidc_provider(runtime.connector("acme-oidc")).client_secret == "from-the-environment"


def test_oidc_settings_validate_scopes_and_client() -> None:
    with pytest.raises(ValidationError):
        OidcSettings(issuer=ISSUER, client_id=" ")
    with pytest.raises(ValidationError):
        OidcSettings(issuer=ISSUER, client_id="c", scopes=["profile"])
    with pytest.raises(ValidationError):
        OidcSettings(issuer=ISSUER, client_id="c", unknown="x")  # type: ignore[call-arg]


class ThirdPartySettings(OidcSettings):
    login_claim: str = "login"


class ThirdPartyPlugin:
    """A third-party OIDC plugin: it names no URL, the host discovers everything."""

    @hookimpl
    def transom_connector_type(self) -> ConnectorType:
        return ConnectorType(name="thirdparty", protocols=("oidc",), settings_model=ThirdPartySettings)

    @hookimpl
    def transom_oidc_provider(self, connector: Connector[ThirdPartySettings]) -> OidcProvider:
        return connector.settings.oidc_provider(profile_claims=("mail", connector.settings.login_claim))

    @hookimpl
    def transom_extract_claims(self, connector: Connector[ThirdPartySettings], payload: Mapping[str, Any]) -> Claims:
        return Claims(subject=payload["sub"], email=payload.get("mail"),
                      user_name=payload.get(connector.settings.login_claim))


def test_a_third_party_plugin_gets_discovery_and_userinfo_from_oidc_settings(make_runtime: Any) -> None:
    fake = discovery_only_fake()
    connector = {"id": "acme-3p", "type": "thirdparty", "account": "acme",
                 "settings": {"issuer": ISSUER, "client_id": CLIENT, "client_secret": SECRET}}
    runtime = build(make_runtime, fake, connector, extra_plugins={"thirdparty": ThirdPartyPlugin()})
    with client_for(runtime) as client:
        response = oidc_login(client, fake, "acme-3p", claims={"sub": "tp-1"},
                              userinfo={"sub": "tp-1", "mail": "grace@acme.example", "login": "grace"})
        assert response.status_code == 303, response.text
        assert me(client)["user_name"] == "grace"


def test_a_token_signed_by_someone_else_with_a_forged_kid_is_refused(make_runtime: Any) -> None:
    """ES256 with the published kid but another EC key: the signature check fails."""
    published, forger = EcSigningKey("ec-256"), EcSigningKey("ec-256")
    fake = discovery_only_fake()
    fake.signing_algorithms = ["ES256"]
    fake.jwks_override = {"keys": [published.public_jwk()]}
    runtime = build(make_runtime, fake, generic_connector())
    psychic = lambda r: sign_jwt({"alg": "ES256", "kid": "ec-256"},  # noqa: E731 - CVE-2022-21449 shape
                                 {**fake.default_claims(nonce=r["nonce"]), **profile()}, lambda _: b"\0" * 64)
    for token in (signed_with(fake, forger, profile()), psychic):
        with client_for(runtime) as client:
            response = oidc_login(client, fake, "acme-oidc", id_token=token, headers={"accept": "application/json"})
        assert response.status_code == 400 and "signature does not verify" in response.json()["hint"]
    assert counts(runtime)["users"] == 0
