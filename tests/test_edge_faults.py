"""Faults at the edge: a database that cannot be reached answers 503 with Retry-After on
SCIM, login and the admin API, with one log line per failure and no traceback (issue 12
case 6), and the body cap answers 413 with or without Content-Length (case 3)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import PG_URL, client_for, server_table
from oidc_support import entra_connector
from scim_support import SCIM, auth, make_tenants, new_user
from sqlalchemy.engine import make_url
from tcp_proxy import TcpProxy

from transom.config import parse_config
from transom.runtime import Runtime
from transom.testing.server import free_port

TOKEN = "tsm_" + "x" * 40  # never looked up: the database is down


def _down_url(tmp_path: Path) -> str:
    """A database that cannot be opened: a closed port on PostgreSQL, a file in a directory
    that does not exist on SQLite."""
    if PG_URL:
        return make_url(PG_URL).set(port=free_port()).render_as_string(hide_password=False)
    return f"sqlite:///{tmp_path / 'gone' / 'transom.db'}"


@pytest.fixture
def down_runtime(tmp_path: Path) -> Iterator[Runtime]:
    runtime = Runtime.build(parse_config({"server": server_table(_down_url(tmp_path))}))
    yield runtime
    runtime.close()


REQUESTS: list[tuple[str, str, dict[str, Any]]] = [
    ("GET", f"{SCIM}/Users", {"headers": auth(TOKEN)}),
    ("POST", f"{SCIM}/Users", {"headers": auth(TOKEN), "json": new_user("ada@acme.example")}),
    ("POST", "/api/accounts/login", {"data": {"email": "ada@acme.example", "password": "pw", "account": "acme"}}),
    ("GET", "/api/admin/groups", {"headers": {"Authorization": f"Bearer {TOKEN}"}}),
    ("POST", "/api/accounts/login", {"data": {"email": "ada@acme.example", "password": "pw", "account": "acme"},
                                     "headers": {"accept": "text/html"}}),
]


@pytest.mark.parametrize(("method", "path", "kwargs"), REQUESTS,
                         ids=["scim-list", "scim-create", "login-json", "admin", "login-page"])
def test_database_down_answers_503_with_retry_after(down_runtime: Runtime, caplog: pytest.LogCaptureFixture,
                                                     method: str, path: str, kwargs: dict[str, Any]) -> None:
    caplog.set_level(logging.INFO)
    with client_for(down_runtime) as client:
        responses = [client.request(method, path, **kwargs) for _ in range(3)]
    for response in responses:
        assert response.status_code == 503, response.text
        assert response.headers["retry-after"] == "5"
        if path.startswith(SCIM):
            assert response.json()["status"] == "503"
            assert response.json()["reason"] == "database_unavailable"
            assert response.headers["content-type"].startswith("application/scim+json")
        elif "text/html" not in response.headers["content-type"]:
            assert response.json() == {"error": "unavailable", "reason": "database_unavailable",
                                       "detail": "the database is unavailable; nothing was changed, retry shortly"}
        else:
            assert "database_unavailable" in response.text
    # one line per failed request: its refusal line, naming the driver's error class
    unavailable = [r for r in caplog.records if "unavailable" in r.getMessage()]
    assert [r.name for r in unavailable] == ["transom.refusal"] * 3
    assert all("code=database_unavailable detail=error=" in r.getMessage() for r in unavailable)
    assert all(r.exc_info is None for r in caplog.records)  # and never a traceback
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_sso_login_start_answers_503_when_the_database_is_down(tmp_path: Path) -> None:
    """Starting an SSO login stores its state: the same 503, as a page for the browser."""
    runtime = Runtime.build(parse_config({"server": server_table(_down_url(tmp_path)),
                                          "connectors": [entra_connector()]}))
    try:
        with client_for(runtime) as client:
            page = client.get("/api/accounts/login/acme-entra", headers={"accept": "text/html"})
    finally:
        runtime.close()
    assert page.status_code == 503
    assert page.headers["retry-after"] == "5"
    assert "database_unavailable" in page.text


def test_healthz_says_503_when_the_database_is_down(down_runtime: Runtime) -> None:
    with client_for(down_runtime) as client:
        assert client.get("/healthz").status_code == 503


@pytest.mark.postgres_only
@pytest.mark.skipif(not PG_URL, reason="needs PostgreSQL (a proxy in front of a real server)")
def test_postgres_outage_answers_503_then_recovers_without_restart(
        database_url: str, caplog: pytest.LogCaptureFixture) -> None:
    real = make_url(database_url)
    proxy = TcpProxy(real.host or "127.0.0.1", real.port or 5432)
    proxy.start()
    proxied = real.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    tenants = make_tenants(lambda **kw: Runtime.build(parse_config({"server": server_table(proxied)})))
    try:
        with client_for(tenants.runtime) as client:
            created = client.post(f"{SCIM}/Users", json=new_user("a@acme.example"), headers=auth(tenants.token))
            assert created.status_code == 201
            proxy.stop()
            caplog.set_level(logging.INFO)
            during = [client.get(f"{SCIM}/Users", headers=auth(tenants.token)) for _ in range(4)]
            assert [r.status_code for r in during] == [503] * 4
            assert all(r.headers["retry-after"] == "5" for r in during)
            assert all(r.exc_info is None for r in caplog.records)
            proxy.start()  # same port: the database is back
            after = client.get(f"{SCIM}/Users", headers=auth(tenants.token))
            assert after.status_code == 200, after.text
            assert after.json()["totalResults"] == 1
    finally:
        proxy.stop()
        tenants.runtime.close()


def _chunks(total: int) -> Iterator[bytes]:
    sent = 0
    while sent < total:
        yield b"x" * 8192
        sent += 8192


@pytest.mark.parametrize("path", [f"{SCIM}/Users", "/api/admin/groups", "/api/accounts/login",
                                  "/api/accounts/login/some-connector/callback"])
def test_body_over_the_cap_is_413_with_and_without_content_length(make_runtime: Any, path: str) -> None:
    tenants = make_tenants(make_runtime, server={"max_request_bytes": 4096})
    headers = {**auth(tenants.token), "content-type": "application/json"}
    with client_for(tenants.runtime) as client:
        sized = client.post(path, content=b"x" * 5000, headers=headers)
        chunked = client.post(path, content=_chunks(5000), headers=headers)
        small = client.post(path, content=b"{}", headers=headers)
    for response in (sized, chunked):
        assert response.status_code == 413, response.text
        assert response.json()["reason"] == "body_too_large"
        if path.startswith(SCIM):
            assert response.json()["status"] == "413"
    assert small.status_code != 413
