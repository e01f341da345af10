"""``transom explain``: verification with the core's checks, the plugin's extraction, the
provisioning rules and the changes of a rolled-back login; nothing is ever written."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from oidc_support import (
    ENTRA_CLIENT,
    SECRET,
    build,
    entra_claims,
    entra_connector,
    entra_fake,
    okta_claims,
    okta_connector,
    okta_org_fake,
)
from saml_support import acs_url, generic_attributes, generic_connector, sp_entity_id
from saml_support import build as build_saml
from sqlalchemy import func, select

from transom import directory
from transom.explain import UNVERIFIED, VERIFIED, explain, read_id_token, read_saml_response
from transom.models import AuditEvent, ExternalIdentity, GroupMembership, SpaceMembership, User
from transom.runtime import Runtime
from transom.testing.graph import FakeGraph
from transom.testing.oidc import SigningKey
from transom.testing.saml import FakeSamlIdp, encode
from transom_azure_ad import graph


def table_counts(runtime: Runtime) -> dict[str, int]:
    with runtime.db.transaction() as db:
        return {
            model.__name__: int(db.scalar(select(func.count()).select_from(model)) or 0)
            for model in (User, ExternalIdentity, SpaceMembership, GroupMembership, AuditEvent)
        }


def setup(runtime: Runtime) -> None:
    with runtime.db.transaction() as db:
        account = directory.get_account(db, name="acme")
        for space in ("Trial", "DevOps"):
            directory.create_space(db, account=account, name=space)
        directory.create_group(
            db, account=account, name="Developers", idp_identifier="0b1c2d3e-0000-4000-8000-00000000000a"
        )


def test_verified_token_shows_claims_rules_and_changes_and_writes_nothing(make_runtime: Any) -> None:
    fake = entra_fake()
    runtime = build(make_runtime, fake, entra_connector())
    setup(runtime)
    token = fake.id_token(
        entra_claims(
            space_name="Trial,Sandbox",
            space_role="Space Admin,Space Admin",
            timezone="Mars/Base",
            groups=["0B1C2D3E-0000-4000-8000-00000000000A"],
        ),
        nonce="n-1",
    )
    before = table_counts(runtime)
    report = explain(runtime, connector_id="acme-entra", id_token=token)
    assert table_counts(runtime) == before
    assert report["verification"]["status"] == VERIFIED
    assert report["verification"]["login_now"].startswith("would be accepted")
    assert report["received"]["oid"] == entra_claims()["oid"]
    assert report["extracted"]["subject"].endswith(entra_claims()["oid"])
    assert report["extracted"]["groups"]["state"] == "present"
    assert report["rules"]["spaces"] == [{"space": "Trial", "role": "Space Admin"}]
    assert any("Sandbox" in w for w in report["rules"]["warnings"])
    assert any("Mars/Base" in w for w in report["rules"]["warnings"])
    assert report["login"]["outcome"] == "would create the user"
    assert report["login"]["user_after"]["spaces"] == [{"space": "Trial", "role": "Space Admin"}]
    assert [g["name"] for g in report["login"]["user_after"]["groups"]] == ["Developers"]
    actions = [c["action"] for c in report["changes"]]
    assert "user.created" in actions and "user.spaces_updated" in actions and "group.synced" in actions
    json.dumps(report, default=str)  # the --json output is plain JSON


def test_pending_user_would_be_linked_and_stays_pending(make_runtime: Any) -> None:
    fake = okta_org_fake()
    runtime = build(make_runtime, fake, okta_connector())
    setup(runtime)
    with runtime.db.transaction() as db:
        account = directory.get_account(db, name="acme")
        directory.create_user(
            db, account=account, user_name="ada@acme.example", email=None, status="pending", actor="scim:test"
        )
    report = explain(runtime, connector_id="acme-okta", id_token=fake.id_token(okta_claims(), nonce="n"))
    assert report["login"]["outcome"] == "would log in the user"
    assert "user.activated" in [c["action"] for c in report["changes"]]
    with runtime.db.transaction() as db:
        assert db.scalars(select(User.status)).one() == "pending"


def test_foreign_signature_is_unverified_but_decoded(make_runtime: Any) -> None:
    fake = okta_org_fake()
    runtime = build(make_runtime, fake, okta_connector())
    forged = fake.id_token(okta_claims(), nonce="n", key=SigningKey("key-1"))
    report = explain(runtime, connector_id="acme-okta", id_token=forged)
    assert report["verification"]["status"] == UNVERIFIED
    assert "signature" in report["verification"]["detail"]
    assert report["extracted"]["user_name"] == "ada@acme.example"


def test_expired_token_is_verified_but_would_be_refused_now(make_runtime: Any) -> None:
    fake = okta_org_fake()
    runtime = build(make_runtime, fake, okta_connector())
    old = int(time.time()) - 7200
    token = fake.id_token({**okta_claims(), "iat": old, "exp": old + 3600}, nonce="n")
    report = explain(runtime, connector_id="acme-okta", id_token=token)
    assert report["verification"]["status"] == VERIFIED
    assert report["verification"]["login_now"].startswith("would be refused now")
    assert "expired" in report["verification"]["login_now"]


def test_wrong_input_kind_is_a_clear_error(make_runtime: Any) -> None:
    fake = okta_org_fake()
    runtime = build(make_runtime, fake, okta_connector())
    for kwargs in ({"saml_response": "PHNhbWw+"}, {"id_token": "not-a-jwt"}):
        try:
            explain(runtime, connector_id="acme-okta", **kwargs)
        except Exception as exc:
            assert type(exc).__name__ == "BadRequest"
        else:
            raise AssertionError(f"explain accepted {kwargs}")


def test_input_formats() -> None:
    assert read_id_token("  a.b.c\n") == "a.b.c"
    assert read_id_token("code=x&id_token=a.b.c&state=s") == "a.b.c"
    assert read_saml_response("SAMLResponse=PHg%2B&RelayState=%2F") == "PHg+"
    assert read_saml_response("<x/>") == "PHgvPg=="


def test_cli_offline_says_unverified_loudly_and_json_is_pure(tmp_path: Path, database_url: str) -> None:
    """The CLI builds its own runtime: the JWKS URL points at a closed local port, so the
    signature cannot be checked and the report must say so."""
    fake = entra_fake()
    token_file = tmp_path / "id_token.txt"
    token_file.write_text(fake.id_token(entra_claims(space_name="Trial"), nonce="n"))
    config = tmp_path / "transom.toml"
    config.write_text(
        '[server]\nsession_secret = "' + "c" * 40 + '"\n'
        '[[connectors]]\nid = "acme-entra"\ntype = "azure_ad"\naccount = "acme"\n'
        "[connectors.settings]\n"
        f'tenant_id = "{entra_claims()["tid"]}"\nclient_id = "{fake.client_id}"\nclient_secret = "x"\n'
        'authority = "http://127.0.0.1:9"\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRANSOM_")}
    env["TRANSOM_DATABASE_URL"] = database_url

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "transom.cli", "--config", str(config), *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )

    assert run("accounts", "create", "acme").returncode == 0
    assert run("spaces", "create", "--account", "acme", "Trial").returncode == 0
    text = run("explain", "--connector", "acme-entra", "--id-token", str(token_file))
    assert text.returncode == 0, text.stderr
    assert "!! UNVERIFIED" in text.stdout
    assert "Trial (Space Member)" in text.stdout
    assert "nothing was written" in text.stdout
    as_json = run("explain", "--connector", "acme-entra", "--id-token", str(token_file), "--json")
    assert as_json.returncode == 0, as_json.stderr
    report = json.loads(as_json.stdout)
    assert report["verification"]["status"] == UNVERIFIED
    assert report["login"]["outcome"] == "would create the user"
    shown = run("users", "show", "--account", "acme", "ada@acme.example")
    assert shown.returncode == 1  # the dry run created nobody
    bad = run("explain", "--connector", "nope", "--id-token", str(token_file))
    assert bad.returncode == 1 and bad.stderr.startswith("error: ") and len(bad.stderr.strip().splitlines()) == 1
    both = run("explain", "--connector", "acme-entra")
    assert both.returncode == 1 and "exactly one" in both.stderr


def test_the_dry_run_session_cannot_commit(make_runtime: Any) -> None:
    from transom.login import rolled_back

    fake = okta_org_fake()
    runtime = build(make_runtime, fake, okta_connector())
    before = table_counts(runtime)
    try:
        with rolled_back(runtime) as db:
            account = directory.get_account(db, name="acme")
            directory.create_space(db, account=account, name="Leaked")
            db.commit()
    except RuntimeError as exc:
        assert "never commits" in str(exc)
    else:
        raise AssertionError("commit was allowed")
    assert table_counts(runtime) == before
    with runtime.db.transaction() as db:
        assert directory.list_spaces(db, account=directory.get_account(db, name="acme")) == []


# -- SAML ------------------------------------------------------------------------------------


def saml_runtime(make_runtime: Any) -> tuple[Runtime, FakeSamlIdp]:
    idp = FakeSamlIdp()
    runtime = build_saml(make_runtime, [generic_connector(idp, allow_idp_initiated=True)])
    setup(runtime)
    return runtime, idp


def test_saml_response_verified_and_dry_run(make_runtime: Any) -> None:
    runtime, idp = saml_runtime(make_runtime)
    root = idp.signed_response(
        acs_url=acs_url("acme-saml"),
        audience=sp_entity_id("acme-saml"),
        name_id="u-1",
        in_response_to=None,
        attributes=generic_attributes(space_name=["Trial", "DevOps"], space_role=["Space Admin"]),
    )
    before = table_counts(runtime)
    report = explain(runtime, connector_id="acme-saml", saml_response=encode(root))
    assert table_counts(runtime) == before
    assert report["verification"]["status"] == VERIFIED
    assert report["received"]["name_id"] == "u-1"
    assert report["rules"]["spaces"] == [
        {"space": "Trial", "role": "Space Admin"},
        {"space": "DevOps", "role": "Space Admin"},
    ]
    assert report["login"]["outcome"] == "would create the user"


def test_expired_saml_response_is_unverified_but_readable_also_as_xml(make_runtime: Any) -> None:
    runtime, idp = saml_runtime(make_runtime)
    long_ago = datetime.now(UTC) - timedelta(hours=3)
    root = idp.signed_response(
        acs_url=acs_url("acme-saml"),
        audience=sp_entity_id("acme-saml"),
        name_id="u-1",
        in_response_to=None,
        now=long_ago,
        attributes=generic_attributes(space_name=["DevOps"]),
    )
    xml = base64.b64decode(encode(root)).decode("utf-8")
    report = explain(runtime, connector_id="acme-saml", saml_response=xml)
    assert report["verification"]["status"] == UNVERIFIED
    assert "expired" in report["verification"]["detail"]
    assert report["received"]["attributes"]["space_name"] == ["DevOps"]
    assert report["rules"]["spaces"] == [{"space": "DevOps", "role": "Space Member"}]


# -- IdP APIs are called only for a verified payload -------------------------------------------


def _entra_with_graph(make_runtime: Any) -> tuple[Runtime, Any, FakeGraph]:
    fake = entra_fake()
    fake_graph = FakeGraph(authority="https://login.entra.test", client_id=ENTRA_CLIENT, client_secret=SECRET,
                           page_size=100, fallback=fake.handle)
    runtime: Runtime = make_runtime(connectors=[entra_connector(graph_url=fake_graph.graph_url)],
                                    http=httpx.Client(transport=fake_graph.transport()))
    with runtime.db.transaction() as db:
        directory.create_account(db, name="acme")
    setup(runtime)
    oid = entra_claims()["oid"]
    fake_graph.groups[oid] = ["0b1c2d3e-0000-4000-8000-00000000000a"]
    return runtime, fake, fake_graph


def _overage_claims() -> dict[str, Any]:
    claims = entra_claims()
    endpoint = f"https://graph.windows.net/{claims['tid']}/users/{claims['oid']}/getMemberObjects"
    return {**claims, "_claim_names": {"groups": "src1"}, "_claim_sources": {"src1": {"endpoint": endpoint}}}


def test_unverified_overage_token_never_reaches_the_idp_api(make_runtime: Any) -> None:
    """A forged token claiming a groups overage must not make the host call Graph on its
    behalf: the unverified dry run resolves groups from the payload alone and says why."""
    graph.TOKENS.clear()
    runtime, fake, fake_graph = _entra_with_graph(make_runtime)
    forged = fake.id_token(_overage_claims(), nonce="n", key=SigningKey("key-1"))
    report = explain(runtime, connector_id="acme-entra", id_token=forged)
    assert report["verification"]["status"] == UNVERIFIED
    assert report["extracted"]["groups"]["state"] == "overage"
    assert fake_graph.graph_calls == 0 and fake_graph.token_calls == 0
    assert any("not verified" in w for w in report["trace"]["warnings"])
    assert report["login"]["outcome"] == "would create the user"
    assert report["login"]["user_after"]["groups"] == []
    graph.TOKENS.clear()


def test_verified_overage_token_is_looked_up_in_the_dry_run(make_runtime: Any) -> None:
    """The control of the test above: the same overage, verified, is resolved through Graph
    (so a zero there means "not called", not "not set up")."""
    graph.TOKENS.clear()
    runtime, fake, fake_graph = _entra_with_graph(make_runtime)
    report = explain(runtime, connector_id="acme-entra", id_token=fake.id_token(_overage_claims(), nonce="n"))
    assert report["verification"]["status"] == VERIFIED
    assert fake_graph.graph_calls >= 1
    assert [g["name"] for g in report["login"]["user_after"]["groups"]] == ["Developers"]
    graph.TOKENS.clear()
