"""`check-config --probe` and GET /api/admin/connectors/{id}/check against the fake IdPs of
transom.testing served over real HTTP on 127.0.0.1, reachable and not."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import RuntimeFactory, client_for
from ops_support import clean_env, run_cli, serve_handler, write_config
from pydantic import BaseModel, ConfigDict

from transom import directory
from transom.connector import Claims, Connector, ConnectorType, OidcProvider, ProbeCheck
from transom.errors import UpstreamError
from transom.hookspecs import hookimpl
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
    assert "'https://evil.example.test' is none of the configured" in result.checks[0].detail
    assert result.clock_skew_seconds is not None and 590 <= result.clock_skew_seconds <= 610
    assert "beyond clock_skew_seconds=120" in result.checks[-1].detail


def test_unreachable_oidc_idp(make_runtime: RuntimeFactory, monkeypatch: Any) -> None:
    monkeypatch.setenv("OKTA_SECRET", "s3cret")
    issuer = f"http://127.0.0.1:{free_port()}/oauth2/default"  # nothing listens there
    runtime = bound(make_runtime, [okta(issuer)])
    result = probe_connector(runtime.plugins, runtime.http, runtime.connector("acme-okta"))
    assert not result.ok
    # okta names its endpoints: the login needs no discovery document, the JWKS it needs
    assert checks(result) == [("discovery", "info"), ("jwks", "fail")]
    assert result.checks[1].detail == "unreachable (ConnectError)"
    assert "unreachable (ConnectError)); not needed" in result.checks[0].detail
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
    assert refused.checks[2].detail == ("no app token for Graph: the Entra token endpoint answered HTTP 401 "
                                        "(invalid_client)")
    assert "graph-secret" not in json.dumps([ok.as_json(), refused.as_json()])


def test_discovery_based_provider_uses_the_documents_jwks_uri(make_runtime: RuntimeFactory) -> None:
    """generic_oidc names no endpoints: the probe, like the login, needs the document, whose
    issuer must equal the configured one exactly, and fetches the JWKS it names."""
    holder: dict[str, FakeOidcIdp] = {}

    def make(base: str) -> Handler:
        holder["fake"] = FakeOidcIdp(issuer=f"{base}/realms/acme", client_id="app")
        return holder["fake"].handle

    with serve_handler(make) as base:
        generic = {"id": "acme-kc", "type": "generic_oidc", "account": "acme",
                   "settings": {"issuer": f"{base}/realms/acme", "client_id": "app"}}
        wrong = {"id": "acme-kc-slash", "type": "generic_oidc", "account": "acme",
                 "settings": {"issuer": f"{base}/realms/acme/", "client_id": "app"}}
        runtime = bound(make_runtime, [generic, wrong])
        good = probe_connector(runtime.plugins, runtime.http, runtime.connector("acme-kc"))
        slash = probe_connector(runtime.plugins, runtime.http, runtime.connector("acme-kc-slash"))
    assert checks(good) == [("discovery", "ok"), ("jwks", "ok"), ("clock", "ok")]
    assert good.ok and good.keys == 1 and good.checks[1].url == holder["fake"].jwks_uri
    # "…/acme/" is not "…/acme": the login would refuse the document, so the probe fails it
    assert checks(slash)[0] == ("discovery", "fail") and not slash.ok
    assert "is not the configured" in slash.checks[0].detail


class EntraV1Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    authority: str


class EntraV1Plugin:
    """An IdP that, like Entra's v1 endpoint, names its endpoints and has an issuer
    (``https://sts.windows.net/{tid}/``) that publishes no discovery document."""

    def __init__(self, *, with_v2: bool) -> None:
        self.with_v2 = with_v2

    @hookimpl
    def transom_connector_type(self) -> ConnectorType:
        return ConnectorType(name="entra_v1", protocols=("oidc",), settings_model=EntraV1Settings)

    @hookimpl
    def transom_oidc_provider(self, connector: Connector[EntraV1Settings]) -> OidcProvider:
        base = connector.settings.authority
        v1, v2 = f"{base}/sts/{TENANT}/", f"{base}/{TENANT}/v2.0"
        return OidcProvider(issuers=(v1, v2) if self.with_v2 else (v1,),
                            authorization_endpoint=f"{base}/{TENANT}/oauth2/v2.0/authorize",
                            token_endpoint=f"{base}/{TENANT}/oauth2/v2.0/token",
                            jwks_uri=f"{base}/{TENANT}/discovery/v2.0/keys", client_id="app", client_secret=None)

    @hookimpl
    def transom_extract_claims(self, connector: Connector, payload: Mapping[str, Any]) -> Claims:
        return Claims(subject=str(payload["oid"]))


@pytest.mark.parametrize("with_v2", [True, False], ids=["v2 issuer listed too", "v1 issuer only"])
def test_entra_v1_issuer_without_discovery_is_not_a_failure(make_runtime: RuntimeFactory, with_v2: bool) -> None:
    def make(base: str) -> Handler:
        # discovery only at the v2 issuer, as Entra: sts.windows.net publishes none
        return FakeOidcIdp(issuer=f"{base}/{TENANT}/v2.0", client_id="app",
                           jwks_uri=f"{base}/{TENANT}/discovery/v2.0/keys").handle

    with serve_handler(make) as base:
        connector = {"id": "acme-v1", "type": "entra_v1", "account": "acme", "settings": {"authority": base}}
        runtime = make_runtime([connector], http=MeteredClient(timeout=5),
                               extra_plugins={"entra_v1": EntraV1Plugin(with_v2=with_v2)})
        result = probe_connector(runtime.plugins, runtime.http, runtime.connector("acme-v1"))
    assert result.ok, result.checks
    if with_v2:
        # the v1 issuer's missing document is skipped; the v2 document checks the tenant
        assert checks(result) == [("discovery", "ok"), ("jwks", "ok"), ("clock", "ok")]
        assert result.issuer_match is True and result.checks[0].detail == f"issuer {base}/{TENANT}/v2.0 matches"
    else:
        assert checks(result) == [("discovery", "info"), ("jwks", "ok"), ("clock", "ok")]
        assert result.issuer_match is None
        assert f"no discovery document for {base}/sts/{TENANT}/ (HTTP 404); not needed" in result.checks[0].detail
        assert "acme-v1    entra_v1/oidc  discovery  INFO" in table([result])


class ProbingPlugin(EntraV1Plugin):
    """Adds its own checks through transom_probe: good ones, nonsense, or a refusal."""

    def __init__(self, answer: Any) -> None:
        super().__init__(with_v2=True)
        self.answer = answer
        self.seen: list[str] = []

    @hookimpl
    def transom_probe(self, connector: Connector, http: httpx.Client) -> list[ProbeCheck] | None:
        self.seen.append(connector.id)
        if isinstance(self.answer, Exception):
            raise self.answer
        result: list[ProbeCheck] | None = self.answer
        return result


@pytest.mark.parametrize(("answer", "expected"), [
    ([ProbeCheck("licence", "warn", "expires in 9 days")], ("licence", "warn", "expires in 9 days")),
    (None, None),
    ([ProbeCheck("licence", "great", "?")], ("plugin", "fail", "connector 'acme-v1' returned invalid probe checks")),
    (["not a check"], ("plugin", "fail", "connector 'acme-v1' returned invalid probe checks")),
    (UpstreamError("the licence server is down"), ("plugin", "fail", "the licence server is down")),
    (RuntimeError("boom"), ("plugin", "fail", "connector plugin failed in transom_probe for connector 'acme-v1'")),
], ids=["own check", "nothing to add", "unknown status", "not a ProbeCheck", "TransomError", "crash"])
def test_transom_probe_hook_adds_the_plugins_checks(make_runtime: RuntimeFactory, answer: Any,
                                                    expected: tuple[str, str, str] | None) -> None:
    plugin = ProbingPlugin(answer)

    def make(base: str) -> Handler:
        return FakeOidcIdp(issuer=f"{base}/{TENANT}/v2.0", client_id="app",
                           jwks_uri=f"{base}/{TENANT}/discovery/v2.0/keys").handle

    with serve_handler(make) as base:
        connector = {"id": "acme-v1", "type": "entra_v1", "account": "acme", "settings": {"authority": base}}
        runtime = make_runtime([connector], http=MeteredClient(timeout=5), extra_plugins={"entra_v1": plugin})
        result = probe_connector(runtime.plugins, runtime.http, runtime.connector("acme-v1"))
    assert plugin.seen == ["acme-v1"]
    # the host's checks come first and are unaffected by what the plugin does
    assert checks(result)[:2] == [("discovery", "ok"), ("jwks", "ok")]
    own = [(c.kind, c.status, c.detail) for c in result.checks if c.kind not in ("discovery", "jwks", "clock")]
    assert own == ([expected] if expected else [])
    assert result.ok is (expected is None or expected[1] != "fail")


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
    assert any(r.split()[:5] == ["acme-dead", "okta/oidc", "jwks", "FAIL", "unreachable"] for r in rows)
    assert any(r.split()[:4] == ["acme-dead", "okta/oidc", "discovery", "INFO"] for r in rows)
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


def test_entra_without_client_secret_warns_that_overage_cannot_be_looked_up(make_runtime: RuntimeFactory) -> None:
    """azure_ad's transom_probe: group sync on, no client secret, so no Graph token to ask for."""
    fake = FakeOidcIdp(issuer=f"https://login.entra.test/{TENANT}/v2.0", client_id="graph-client",
                       jwks_uri=f"https://login.entra.test/{TENANT}/discovery/v2.0/keys")
    entra = {"id": "acme-entra", "type": "azure_ad", "account": "acme",
             "settings": {"tenant_id": TENANT, "client_id": "graph-client", "authority": "https://login.entra.test"}}
    runtime = make_runtime([entra], http=httpx.Client(transport=fake.transport()))
    result = probe_connector(runtime.plugins, runtime.http, runtime.connector("acme-entra"))
    assert checks(result) == [("discovery", "ok"), ("jwks", "ok"), ("graph", "warn")]
    assert result.ok and "overage cannot be looked up" in result.checks[2].detail
