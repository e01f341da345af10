"""A Transom host for tests: the real app (FastAPI, sessions, the protocol checks, the
plugin host) on a real database, configured with the connectors a test names, and a login
helper that drives a whole sign-in through HTTP.

    host = TransomHost.start(database_url, connectors=[{...}], plugins={"acme": transom_acme},
                             idps=[fake_oidc_idp])
    result = host.login("acme-oidc", fake_oidc_idp, claims={"uid": "u-1", "mail": "ada@acme.example"})
    assert result.ok and result.user["email"] == "ada@acme.example"

The fixtures of :mod:`transom.testing.plugin` build these for pytest (``transom_host``).
"""

from __future__ import annotations

import secrets
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

with warnings.catch_warnings():
    # Starlette deprecates its httpx-based client in favour of a package Transom does not need.
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from transom import directory
from transom.config import parse_config
from transom.runtime import Runtime
from transom.sessions import COOKIE_NAME
from transom.testing.oidc import FakeOidcIdp, oidc_login
from transom.testing.saml import FakeSamlIdp, saml_login
from transom.web.app import create_app

#: the base URL the host believes it serves (TestClient's default host)
BASE_URL = "http://testserver"
#: one strong session secret per test process
SESSION_SECRET = secrets.token_urlsafe(32)

FakeIdp = FakeOidcIdp | FakeSamlIdp


def server_table(database_url: str, **extra: Any) -> dict[str, Any]:
    """A ``[server]`` table for tests: base URL, database, session secret, then ``extra``."""
    return {"base_url": BASE_URL, "database_url": database_url, "session_secret": SESSION_SECRET, **extra}


def build_runtime(
    database_url: str,
    connectors: Sequence[Mapping[str, Any]] = (),
    *,
    server: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> Runtime:
    """A :class:`~transom.runtime.Runtime` exactly as ``transom serve`` builds one, from
    ``[[connectors]]`` tables; ``kwargs`` go to :meth:`Runtime.build` (``extra_plugins``,
    ``http``)."""
    raw = {"server": server_table(database_url, **(server or {})), "connectors": [dict(c) for c in connectors]}
    return Runtime.build(parse_config(raw), **kwargs)


def client_for(runtime: Runtime) -> TestClient:
    """A TestClient on the real app that shows redirects and 5xx answers instead of following
    or raising them: tests assert on what a browser would get."""
    return TestClient(create_app(runtime), base_url=BASE_URL, raise_server_exceptions=False,
                      follow_redirects=False)


def transport_for(idps: Iterable[FakeIdp]) -> httpx.MockTransport:
    """One in-process transport answering for every fake OIDC IdP in ``idps`` (the first that
    knows the URL answers; any other URL is a 404, never the network)."""
    oidc = [idp for idp in idps if isinstance(idp, FakeOidcIdp)]

    def handle(request: httpx.Request) -> httpx.Response:
        for idp in oidc:
            response = idp.handle(request)
            if response.status_code != 404:
                return response
        return httpx.Response(404, json={"error": "no fake IdP serves this URL"})

    return httpx.MockTransport(handle)


@dataclass(frozen=True)
class LoginResult:
    """What a sign-in through HTTP ended with: the callback's (or ACS's) answer and who
    ``/api/me`` says is signed in afterwards."""

    response: httpx.Response
    #: ``/api/me`` after the login; None when nobody is signed in
    user: dict[str, Any] | None

    @property
    def ok(self) -> bool:
        return self.response.status_code == 303 and self.user is not None

    @property
    def error(self) -> dict[str, Any]:
        """The JSON error body of a refused login (``{"error": ..., "hint": ...}``)."""
        body: dict[str, Any] = self.response.json()
        return body


class TransomHost:
    """A running host: ``runtime`` (config, plugins, database, HTTP client) and ``client`` (a
    TestClient on the real app, cookies kept between requests like a browser)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.client = client_for(runtime)
        self.client.__enter__()

    @classmethod
    def start(
        cls,
        database_url: str,
        connectors: Sequence[Mapping[str, Any]],
        *,
        plugins: Mapping[str, object] | None = None,
        idps: Iterable[FakeIdp] = (),
        accounts: Iterable[str] | None = None,
        server: Mapping[str, Any] | None = None,
        http: httpx.Client | None = None,
    ) -> TransomHost:
        """Build and start a host.

        :param connectors: ``[[connectors]]`` tables, as an operator writes them.
        :param plugins: connector type -> plugin object, registered as if installed (omit to
            load installed plugins through their entry points, as production does).
        :param idps: fake IdPs whose back channel (JWKS, token endpoint) the host's HTTP
            client reaches in process; ignored when ``http`` is given.
        :param accounts: accounts to create; default: every account the connectors name.
        :param http: the host's HTTP client (default: one wired to ``idps``, or, with no
            ``idps``, an ordinary client for fakes served over real HTTP).
        """
        idps = list(idps)
        if http is None and idps:
            http = httpx.Client(transport=transport_for(idps))
        runtime = build_runtime(database_url, connectors, server=server, extra_plugins=plugins, http=http)
        names = list(accounts) if accounts is not None else list(dict.fromkeys(str(c["account"]) for c in connectors))
        with runtime.db.transaction() as db:
            for name in names:
                directory.create_account(db, name=name)
        return cls(runtime)

    # -- signing in ------------------------------------------------------------------------

    def login(self, connector_id: str, idp: FakeIdp, **options: Any) -> LoginResult:
        """A whole SP-initiated sign-in through HTTP: ``/api/accounts/login/{connector_id}``,
        the fake IdP's answer, the callback or ACS. OIDC options: ``claims`` (the id_token's,
        over the defaults ``iss``/``aud``/``iat``/``exp``/``nonce``), ``id_token``,
        ``next_path``, ``form_post``. SAML options: ``name_id`` (required), ``attributes``,
        ``next_path``, ``tamper`` and the response-building knobs of
        :meth:`FakeSamlIdp.signed_response`."""
        if isinstance(idp, FakeOidcIdp):
            response = oidc_login(self.client, idp, connector_id, **options)
        else:
            response = saml_login(self.client, idp, connector_id=connector_id, **options)
        return LoginResult(response=response, user=self.me())

    def me(self) -> dict[str, Any] | None:
        """``GET /api/me`` with the client's cookies: the signed-in user, or None."""
        answer = self.client.get("/api/me")
        if answer.status_code == 401:
            return None
        answer.raise_for_status()
        user: dict[str, Any] = answer.json()
        return user

    def create_space(self, account: str, name: str) -> None:
        """A space in ``account`` (logins place users only in spaces that exist)."""
        with self.runtime.db.transaction() as db:
            directory.create_space(db, account=directory.get_account(db, name=account), name=name)

    def create_group(self, account: str, name: str, *, idp_identifier: str | None = None) -> None:
        """A Transom group in ``account``; with ``idp_identifier`` it is *mapped*, so group
        sync keeps its memberships equal to what the IdP sends (docs/group-sync.md)."""
        with self.runtime.db.transaction() as db:
            directory.create_group(db, account=directory.get_account(db, name=account), name=name,
                                   idp_identifier=idp_identifier)

    def logout(self) -> None:
        """Forget the session cookie (a new browser)."""
        self.client.cookies.delete(COOKIE_NAME)

    def close(self) -> None:
        self.client.__exit__(None, None, None)
        self.runtime.close()
