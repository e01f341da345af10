"""Health, password login, /api/me and logout through the real app."""

from __future__ import annotations

from starlette.testclient import TestClient

from transom import directory
from transom.runtime import Runtime
from transom.sessions import COOKIE_NAME


def seed_password_user(runtime: Runtime, email: str = "ada@acme.example", password: str = "correct horse") -> None:
    with runtime.db.transaction() as db:
        account = directory.create_account(db, name="acme")
        space = directory.create_space(db, account=account, name="Trial")
        assert space.name == "Trial"
        directory.create_user(db, account=account, user_name=email, email=email, password=password)


def test_healthz_reports_database(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok"}


def test_password_login_sets_session_and_me_returns_user_shape(runtime: Runtime, client: TestClient) -> None:
    seed_password_user(runtime)
    response = client.post(
        "/api/accounts/login",
        data={"email": "ADA@acme.example", "password": "correct horse", "account": "acme", "next": "/dashboard"},
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/dashboard"
    cookie = response.headers["set-cookie"]
    assert COOKIE_NAME in cookie and "HttpOnly" in cookie and "samesite=lax" in cookie.lower()
    me = client.get("/api/me")
    assert me.status_code == 200
    body = me.json()
    assert body["email"] == "ada@acme.example"
    assert body["account"] == "acme"
    assert body["status"] == "active"
    assert body["account_role"] == "Account Member"
    assert body["spaces"] == [] and body["groups"] == []
    assert set(body) == {"id", "account", "email", "user_name", "display_name", "timezone", "status",
                         "account_role", "spaces", "groups"}


def test_password_login_json_body(runtime: Runtime, client: TestClient) -> None:
    seed_password_user(runtime)
    response = client.post("/api/accounts/login",
                           json={"email": "ada@acme.example", "password": "correct horse", "account": "acme"})
    assert response.status_code == 303
    assert response.headers["location"] == "/"


def test_wrong_password_is_refused_without_session(runtime: Runtime, client: TestClient) -> None:
    seed_password_user(runtime)
    for data in (
        {"email": "ada@acme.example", "password": "wrong", "account": "acme"},
        {"email": "nobody@acme.example", "password": "correct horse", "account": "acme"},
        {"email": "ada@acme.example", "password": "correct horse", "account": "other"},
    ):
        response = client.post("/api/accounts/login", data=data, headers={"accept": "application/json"})
        assert response.status_code == 400
        assert response.json()["detail"] == "wrong email, password or account"
        assert "set-cookie" not in response.headers
    assert client.get("/api/me").status_code == 401


def test_malformed_login_body_is_400(runtime: Runtime, client: TestClient) -> None:
    response = client.post("/api/accounts/login", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert "Traceback" not in response.text


def test_next_is_only_a_relative_path(runtime: Runtime, client: TestClient) -> None:
    seed_password_user(runtime)
    for evil in ("https://evil.example/", "//evil.example/x", "/\\evil.example", "javascript:alert(1)"):
        form = {"email": "ada@acme.example", "password": "correct horse", "account": "acme", "next": evil}
        response = client.post("/api/accounts/login", data=form)
        assert response.status_code == 303
        assert response.headers["location"] == "/"


def test_logout_revokes_the_session(runtime: Runtime, client: TestClient) -> None:
    seed_password_user(runtime)
    client.post("/api/accounts/login",
                data={"email": "ada@acme.example", "password": "correct horse", "account": "acme"})
    stolen = client.cookies.get(COOKIE_NAME)
    assert client.get("/api/me").status_code == 200
    assert client.post("/api/accounts/logout").status_code == 303
    client.cookies.set(COOKIE_NAME, stolen)
    assert client.get("/api/me").status_code == 401


def test_forged_cookie_is_401(client: TestClient) -> None:
    client.cookies.set(COOKIE_NAME, "abc.def")
    assert client.get("/api/me").status_code == 401


def test_body_over_the_cap_is_413(client: TestClient) -> None:
    response = client.post("/api/accounts/login", content=b"x" * (300 * 1024),
                           headers={"content-type": "application/x-www-form-urlencoded"})
    assert response.status_code == 413
