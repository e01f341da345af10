"""Concurrent first logins of one person (issue 12, case 4): a double-click or two tabs send
several callbacks for the same subject before any user exists. Every one of them must end
signed in as the same single user, with one external identity.

The host runs as a real ``transom serve`` subprocess (two workers on PostgreSQL, where the
race between processes is real; one worker on SQLite, whose writer lock serialises the
logins). The fake OIDC provider is served over real HTTP from this process (the server
calls its token endpoint and JWKS); the fake SAML IdP signs real responses here. Each login
uses its own HTTP client (its own browser binding cookie) and all callbacks of a round are
released at once by a barrier.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import PG_URL
from fastapi import FastAPI, Request
from fastapi.responses import Response
from sqlalchemy import func, select

from transom import directory
from transom.db import Database
from transom.migrate import upgrade
from transom.models import ExternalIdentity, User
from transom.testing.oidc import FakeOidcIdp
from transom.testing.saml import FakeSamlIdp, parse_authn_request
from transom.testing.server import free_port, serve_in_thread

CONCURRENT = 20
ROUNDS = 2
WORKERS = 2 if PG_URL else 1
SECRET = "fake-secret-value"


def _fake_oidc_app(fake: FakeOidcIdp) -> FastAPI:
    """The fake's back channel (token endpoint, JWKS) over real HTTP."""
    app = FastAPI()

    @app.api_route("/{path:path}", methods=["GET", "POST"])
    async def handle(request: Request) -> Response:
        forwarded = httpx.Request(request.method, str(request.url), headers=request.headers.raw,
                                  content=await request.body())
        answer = fake.handle(forwarded)
        keep = {k: v for k, v in answer.headers.items() if k in ("content-type", "cache-control")}
        return Response(answer.content, status_code=answer.status_code, headers=keep)

    return app


def _toml(value: Any) -> str:
    """JSON strings and lists are valid TOML basic strings and arrays."""
    return json.dumps(value)


def _config(base_url: str, idp_url: str, saml_idp: FakeSamlIdp) -> str:
    return "\n".join([
        "[server]",
        f"base_url = {_toml(base_url)}",
        'session_secret = { env = "TRANSOM_TEST_SESSION_SECRET" }',
        # INFO: the refusal lines (transom.observe) land in serve.log, for a failure to quote
        'log_level = "INFO"',
        "",
        "[[connectors]]",
        'id = "acme-okta"',
        'type = "okta"',
        'account = "acme"',
        "[connectors.settings]",
        'protocol = "oidc"',
        f"domain = {_toml(idp_url)}",
        'client_id = "0oa1okta"',
        f"client_secret = {_toml(SECRET)}",
        "",
        "[[connectors]]",
        'id = "acme-saml"',
        'type = "generic_saml"',
        'account = "acme"',
        "[connectors.settings]",
        f"idp_entity_id = {_toml(saml_idp.entity_id)}",
        f"idp_sso_url = {_toml(saml_idp.sso_url)}",
        f"idp_certificates = {_toml([saml_idp.key.certificate_pem])}",
        "[connectors.settings.attributes]",
        'email = "mail"',
        'user_name = "mail"',
        'display_name = "displayName"',
        "",
    ])


@dataclass
class Served:
    base_url: str
    oidc: FakeOidcIdp
    saml: FakeSamlIdp
    database_url: str
    log_path: Path

    def refusal_lines(self) -> list[str]:
        """The server's refusal lines so far (with their ``detail``: what an assertion
        message needs to say why a request was refused)."""
        return [line for line in self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
                if "refused " in line]


@contextmanager
def _transom_serve(tmp_path: Path, database_url: str) -> Iterator[Served]:
    idp_port = free_port()
    idp_url = f"http://127.0.0.1:{idp_port}"
    oidc = FakeOidcIdp(issuer=idp_url, client_id="0oa1okta", client_secret=SECRET,
                       authorization_endpoint=f"{idp_url}/oauth2/v1/authorize",
                       token_endpoint=f"{idp_url}/oauth2/v1/token", jwks_uri=f"{idp_url}/oauth2/v1/keys")
    saml_idp = FakeSamlIdp()
    database = Database(database_url)
    try:
        upgrade(database.engine)
        with database.transaction() as db:
            directory.create_account(db, name="acme")
    finally:
        database.dispose()
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    config = tmp_path / "transom.toml"
    config.write_text(_config(base_url, idp_url, saml_idp), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRANSOM_")}
    env.update({"TRANSOM_TEST_SESSION_SECRET": "s" * 40, "TRANSOM_DATABASE_URL": database_url})
    log_path = tmp_path / "serve.log"
    with serve_in_thread(_fake_oidc_app(oidc), port=idp_port), log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "transom.cli", "--config", str(config), "serve", "--port", str(port),
             "--workers", str(WORKERS)],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )
        try:
            _wait_healthy(base_url, proc, log_path)
            yield Served(base_url, oidc, saml_idp, database_url, log_path)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
    server_log = log_path.read_text(encoding="utf-8", errors="replace")
    assert "Traceback" not in server_log, server_log[-4000:]


def _wait_healthy(base_url: str, proc: subprocess.Popen[bytes], log_path: Path) -> None:
    # generous: two workers importing the app on a loaded two-core CI machine (not a timing assertion)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError("transom serve exited:\n" + log_path.read_text(errors="replace")[-4000:])
        try:
            if httpx.get(f"{base_url}/healthz", timeout=2).status_code == 200:
                # every worker must be up, not only the first: ask a few times
                for _ in range(4):
                    httpx.get(f"{base_url}/healthz", timeout=5)
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError("transom serve did not answer /healthz:\n" + log_path.read_text(errors="replace")[-4000:])


def _race(clients: list[httpx.Client], send: Callable[[httpx.Client, Any], httpx.Response],
          prepared: list[Any]) -> list[httpx.Response]:
    """Send every prepared callback at the same moment (one thread each)."""
    barrier = threading.Barrier(len(clients))

    def one(index: int) -> httpx.Response:
        barrier.wait(timeout=60)
        return send(clients[index], prepared[index])

    with ThreadPoolExecutor(max_workers=len(clients)) as pool:
        return list(pool.map(one, range(len(clients))))


def _assert_all_signed_in_as_one_user(
    served: Served, clients: list[httpx.Client], answers: list[httpx.Response], *, connector_id: str, subject: str
) -> None:
    statuses = [a.status_code for a in answers]
    refusals = [a.text[:300] for a in answers if a.status_code != 303]
    assert statuses == [303] * len(answers), refusals
    user_ids = {c.get(f"{served.base_url}/api/me", timeout=30).json()["id"] for c in clients}
    assert len(user_ids) == 1, user_ids
    database = Database(served.database_url)
    try:
        with database.transaction() as db:
            identities = list(db.scalars(select(ExternalIdentity).where(
                ExternalIdentity.connector_id == connector_id, ExternalIdentity.subject == subject)))
            assert len(identities) == 1
            assert identities[0].user_id in user_ids
            owners = db.scalar(select(func.count()).select_from(ExternalIdentity).where(
                ExternalIdentity.user_id == identities[0].user_id))
            assert owners == 1
    finally:
        database.dispose()


@pytest.fixture
def served(tmp_path: Path, database_url: str) -> Iterator[Served]:
    with _transom_serve(tmp_path, database_url) as running:
        yield running


def test_concurrent_first_oidc_logins_of_one_person_all_sign_in(served: Served) -> None:
    for round_ in range(ROUNDS):
        subject = f"00u-race-{round_}"
        claims = {"sub": subject, "preferred_username": f"race{round_}@acme.example",
                  "email": f"race{round_}@acme.example", "email_verified": True, "name": "Race Condition"}
        clients = [httpx.Client(follow_redirects=False, timeout=60) for _ in range(CONCURRENT)]
        try:
            prepared = []
            for client in clients:
                started = client.get(f"{served.base_url}/api/accounts/login/acme-okta")
                assert started.status_code in (302, 303), started.text
                params = served.oidc.authorize(started.headers["location"], claims)
                prepared.append({"code": params["code"], "state": params["state"]})

            def send(client: httpx.Client, params: dict[str, str]) -> httpx.Response:
                return client.get(f"{served.base_url}/api/accounts/idp-callback", params=params)

            answers = _race(clients, send, prepared)
            _assert_all_signed_in_as_one_user(served, clients, answers, connector_id="acme-okta", subject=subject)
        finally:
            for client in clients:
                client.close()
    database = Database(served.database_url)
    try:
        with database.transaction() as db:
            assert db.scalar(select(func.count()).select_from(User)) == ROUNDS
    finally:
        database.dispose()


def test_concurrent_first_saml_logins_of_one_person_all_sign_in(served: Served) -> None:
    for round_ in range(ROUNDS):
        name_id = f"saml-race-{round_}"
        attributes = {"mail": [f"samlrace{round_}@acme.example"], "displayName": ["Race Condition"]}
        clients = [httpx.Client(follow_redirects=False, timeout=60) for _ in range(CONCURRENT)]
        try:
            prepared = []
            for client in clients:
                started = client.get(f"{served.base_url}/api/accounts/login/acme-saml")
                assert started.status_code in (302, 303), started.text
                request = parse_authn_request(started.headers["location"])
                prepared.append(served.saml.response(request, name_id=name_id, attributes=attributes))

            def send(client: httpx.Client, saml_response: str) -> httpx.Response:
                return client.post(f"{served.base_url}/api/accounts/saml/acme-saml/acs",
                                   data={"SAMLResponse": saml_response}, headers={"accept": "application/json"})

            answers = _race(clients, send, prepared)
            _assert_all_signed_in_as_one_user(served, clients, answers, connector_id="acme-saml", subject=name_id)
        finally:
            for client in clients:
                client.close()


def test_one_assertion_posted_concurrently_signs_in_at_most_once(served: Served) -> None:
    """The same signed response posted from many browsers at once (a replay racing the
    original): the primary key of the replay cache lets at most one through; the others are
    refused with a 400, never a 500."""
    clients = [httpx.Client(follow_redirects=False, timeout=60) for _ in range(CONCURRENT)]
    try:
        started = clients[0].get(f"{served.base_url}/api/accounts/login/acme-saml")
        request = parse_authn_request(started.headers["location"])
        encoded = served.saml.response(request, name_id="saml-replay-race",
                                       attributes={"mail": ["replay@acme.example"]})

        def send(client: httpx.Client, saml_response: str) -> httpx.Response:
            return client.post(f"{served.base_url}/api/accounts/saml/acme-saml/acs",
                               data={"SAMLResponse": saml_response}, headers={"accept": "application/json"})

        answers = _race(clients, send, [encoded] * CONCURRENT)
    finally:
        for client in clients:
            client.close()
    statuses = [a.status_code for a in answers]
    assert all(s in (303, 400) for s in statuses), [a.text[:200] for a in answers if a.status_code not in (303, 400)]
    assert statuses.count(303) <= 1
    reasons = {a.json()["reason"] for a in answers if a.status_code == 400}
    assert reasons <= {"saml.replay", "login.state"}, served.refusal_lines()
