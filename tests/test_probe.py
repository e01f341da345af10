"""`check-config --probe` and GET /api/admin/connectors/{id}/check against the fake IdPs of
transom.testing served over real HTTP on 127.0.0.1, reachable and not."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import httpx
from conftest import RuntimeFactory, client_for
from ops_support import clean_env, run_cli, serve_handler, write_config

from transom import directory
from transom.idphttp import MeteredClient
from transom.metrics import REGISTRY
from transom.probe import probe_connector, table
from transom.testing.graph import FakeGraph
from transom.testing.oidc import FakeOidcIdp
from transom.testing.saml import FakeSamlIdp, SigningKey
from transom.testing.server import free_port

TENANT = "8eaef023-2b34-4da1-9baa-8bc8c9d6a490"
Handler = Callable[[httpx.Request], httpx.Response]


def with_discovery(fake: FakeOidcIdp, *, issuer: str | None = None) -> Handler:
    """The fake's JWKS and token endpoint plus a discovery document at the issuer."""

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/.well-known/openid-configuration"):
            return httpx.Response(200, json={"issuer": issuer or fake.issuer, "jwks_uri": fake.jwks_uri,
                                             "authorization_endpoint": fake.authorization_endpoint,
                                             "token_endpoint": fake.token_endpoint})
        return fake.handle(request)

    return handle


def okta(issuer: str, connector_id: str = "acme-okta", account: str = "acme") -> dict[str, Any]:
    return {"id": connector_id, "type": "okta", "account": account,
            "settings": {"issuer": issuer, "client_id": "app", "client_secret": {"env": "OKTA_SECRET"}}}


def bound(make_runtime: RuntimeFactory, connectors: list[dict[str, Any]]) -> Any:
    return make_runtime(connectors, http=MeteredClient(timeout=5))


def checks(result: Any) -> list[tuple[str, str]]:
    return [(c.kind, c.status) for c in result.checks]


def test_reachable_oidc_idp(make_runtime: RuntimeFactory, monkeypatch: Any) -> None:
    monkeypatch.setenv("OKTA_SECRET", "s3cret")
    holder: dict[str, FakeOidcIdp] = {}

    def make(base: str) -> Handler:
        holder["fake"] = FakeOidcIdp(issuer=f"{base}/oauth2/default", client_id="app")
        holder["fake"].rotate("key-2", keep_old=True)
        return with_discovery(holder["fake"])

    with serve_handler(make) as base:
        runtime = bound(make_runtime, [okta(f"{base}/oauth2/default")])
        before = REGISTRY.get_sample_value("transom_idp_requests_total",
                                           {"connector": "acme-okta", "kind": "jwks", "outcome": "ok"}) or 0
        result = probe_connector(runtime.plugins, runtime.http, runtime.connector("acme-okta"))
    assert result.ok
    assert checks(result) == [("discovery", "ok"), ("jwks", "ok"), ("clock", "ok")]
    assert result.issuer_match is True
    assert result.keys == 2
    assert result.clock_skew_seconds is not None and abs(result.clock_skew_seconds) < 5
    assert REGISTRY.get_sample_value("transom_idp_requests_total", {
        "connector": "acme-okta", "kind": "jwks", "outcome": "ok"}) == before + 1
    assert "acme-okta  okta/oidc  discovery  OK" in table([result])


def test_issuer_mismatch_and_skewed_clock(make_runtime: RuntimeFactory, monkeypatch: Any) -> None:
    monkeypatch.setenv("OKTA_SECRET", "s3cret")
    late = format_datetime(datetime.now(UTC) - timedelta(minutes=10), usegmt=True)

    def make(base: str) -> Handler:
        return with_discovery(FakeOidcIdp(issuer=f"{base}/oauth2/default", client_id="app"),
                              issuer="https://evil.example.test")

    with serve_handler(make, date=late) as base:
        runtime = bound(make_runtime, [okta(f"{base}/oauth2/default")])
        result = probe_connector(runtime.plugins, runtime.http, runtime.connector("acme-okta"))
    assert not result.ok
    assert checks(result) == [("discovery", "fail"), ("jwks", "ok"), ("clock", "fail")]
    assert result.issuer_match is False
    assert "'https://evil.example.test' is not the configured" in result.checks[0].detail
    assert result.clock_skew_seconds is not None and 590 <= result.clock_skew_seconds <= 610
    assert "beyond clock_skew_seconds=120" in result.checks[-1].detail


def test_unreachable_oidc_idp(make_runtime: RuntimeFactory, monkeypatch: Any) -> None:
    monkeypatch.setenv("OKTA_SECRET", "s3cret")
    issuer = f"http://127.0.0.1:{free_port()}/oauth2/default"  # nothing listens there
    runtime = bound(make_runtime, [okta(issuer)])
    result = probe_connector(runtime.plugins, runtime.http, runtime.connector("acme-okta"))
    assert not result.ok
    assert checks(result) == [("discovery", "fail"), ("jwks", "fail")]
    assert result.checks[0].detail == "unreachable (ConnectError)"
    assert result.clock_skew_seconds is None
    assert REGISTRY.get_sample_value("transom_idp_requests_total", {
        "connector": "acme-okta", "kind": "discovery", "outcome": "unreachable"}) >= 1  # type: ignore[operator]


def test_saml_metadata_url_with_expiring_certificate(make_runtime: RuntimeFactory) -> None:
    soon = SigningKey.generate("Rolling IdP", not_valid_after=datetime.now(UTC) + timedelta(days=12))
    idp = FakeSamlIdp(key=soon)

    def make(base: str) -> Handler:
        def handle(request: httpx.Request) -> httpx.Response:
            if request.url.path == "/md":
                return httpx.Response(200, text=idp.metadata_xml(), headers={"content-type": "application/xml"})
            return httpx.Response(404)
        return handle

    with serve_handler(make) as base:
        connectors = [
            {"id": "acme-saml", "type": "generic_saml", "account": "acme",
             "settings": {"idp_metadata_url": f"{base}/md"}},
            {"id": "acme-other", "type": "generic_saml", "account": "acme",
             "settings": {"idp_metadata_url": f"{base}/md", "idp_entity_id": "https://other.example.test"}},
            {"id": "acme-gone", "type": "generic_saml", "account": "acme",
             "settings": {"idp_metadata_url": f"{base}/missing"}},
        ]
        runtime = bound(make_runtime, connectors)
        good, other, gone = (probe_connector(runtime.plugins, runtime.http, runtime.connector(c["id"]))
                             for c in connectors)
    assert checks(good) == [("metadata", "ok"), ("certificate", "warn"), ("clock", "ok")]
    assert good.ok and good.issuer_match is True and good.keys == 1
    assert good.certificates[0]["subject"] == "CN=Rolling IdP"
    assert good.certificates[0]["days_left"] in (11, 12)
    assert checks(other)[0] == ("metadata", "fail") and other.issuer_match is False
    assert checks(gone) == [("metadata", "fail"), ("certificate", "fail"), ("clock", "ok")]
    assert gone.checks[0].detail == "HTTP 404"


def test_entra_graph_app_token_when_overage_lookup_is_on(make_runtime: RuntimeFactory, monkeypatch: Any) -> None:
    monkeypatch.setenv("ENTRA_SECRET", "graph-secret")
    graphs: dict[str, FakeGraph] = {}

    def make(base: str) -> Handler:
        oidc = FakeOidcIdp(issuer=f"{base}/{TENANT}/v2.0", client_id="graph-client",
                           jwks_uri=f"{base}/{TENANT}/discovery/v2.0/keys")
        graphs["g"] = FakeGraph(authority=base, graph_url=f"{base}/graph", fallback=with_discovery(oidc))
        return graphs["g"].handler

    with serve_handler(make) as base:
        entra = {"id": "acme-entra", "type": "azure_ad", "account": "acme",
                 "settings": {"tenant_id": TENANT, "client_id": "graph-client",
                              "client_secret": {"env": "ENTRA_SECRET"}, "authority": base,
                              "graph_url": f"{base}/graph"}}
        runtime = bound(make_runtime, [entra])
        ok = probe_connector(runtime.plugins, runtime.http, runtime.connector("acme-entra"))
        graphs["g"].token_status = 401
        refused = probe_connector(runtime.plugins, runtime.http, runtime.connector("acme-entra"))
    assert checks(ok) == [("discovery", "ok"), ("jwks", "ok"), ("graph", "ok"), ("clock", "ok")]
    assert checks(refused)[2] == ("graph", "fail")
    assert refused.checks[2].detail == "no app token for Graph: HTTP 401 invalid_client"
    assert "graph-secret" not in json.dumps([ok.as_json(), refused.as_json()])


def test_cli_probe_table_and_json(tmp_path: Path) -> None:
    def make(base: str) -> Handler:
        return with_discovery(FakeOidcIdp(issuer=f"{base}/oauth2/default", client_id="app"))

    with serve_handler(make) as base:
        dead = f"http://127.0.0.1:{free_port()}/oauth2/default"
        config = write_config(tmp_path / "t.toml", {"session_secret": {"env": "S"}},
                              [okta(f"{base}/oauth2/default"), okta(dead, "acme-dead")])
        env = clean_env(S="s" * 40, OKTA_SECRET="x")
        text = run_cli("check-config", "--probe", "--no-database", "--config", str(config), env=env)
        as_json = run_cli("check-config", "--probe", "--json", "--no-database", "--config", str(config), env=env)
    assert text.returncode == 1  # an unreachable IdP fails the probe
    rows = text.stdout.splitlines()
    assert rows[0].split() == ["CONNECTOR", "TYPE", "CHECK", "STATUS", "DETAIL"]
    assert any(r.split()[:4] == ["acme-okta", "okta/oidc", "jwks", "OK"] for r in rows)
    assert any(r.split()[:5] == ["acme-dead", "okta/oidc", "discovery", "FAIL", "unreachable"] for r in rows)
    data = json.loads(as_json.stdout)
    assert as_json.returncode == 1 and data["ok"] is False and data["findings"] == []
    assert [(p["connector"], p["ok"], p["issuer_match"], p["keys"]) for p in data["probes"]] == [
        ("acme-okta", True, True, 1), ("acme-dead", False, None, None)]


def test_admin_check_endpoint(make_runtime: RuntimeFactory, monkeypatch: Any) -> None:
    monkeypatch.setenv("OKTA_SECRET", "s3cret")

    def make(base: str) -> Handler:
        return with_discovery(FakeOidcIdp(issuer=f"{base}/oauth2/default", client_id="app"))

    with serve_handler(make) as base:
        runtime = bound(make_runtime, [okta(f"{base}/oauth2/default"),
                                       okta(f"{base}/oauth2/default", "globex-okta", "globex")])
        with runtime.db.transaction() as db:
            acme = directory.create_account(db, name="acme")
            directory.create_account(db, name="globex")
            token = directory.create_token(db, account=acme, permissions=["admin"], name="ops")
            scim_only = directory.create_token(db, account=acme, permissions=["manage-users"], name="scim")
        with client_for(runtime) as client:
            auth = {"authorization": f"Bearer {token}"}
            answer = client.get("/api/admin/connectors/acme-okta/check", headers=auth)
            foreign = client.get("/api/admin/connectors/globex-okta/check", headers=auth)
            anonymous = client.get("/api/admin/connectors/acme-okta/check")
            weak = client.get("/api/admin/connectors/acme-okta/check", headers={"authorization": f"Bearer {scim_only}"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["ok"] is True and body["connector"] == "acme-okta" and body["keys"] == 1
    assert [c["kind"] for c in body["checks"]] == ["discovery", "jwks", "clock"]
    assert foreign.status_code == 404  # another account's connector does not exist for this token
    assert anonymous.status_code == 401
    assert weak.status_code == 403
