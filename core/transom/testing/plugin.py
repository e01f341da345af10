"""Transom's pytest plugin (entry point ``pytest11: transom``): the fixtures of the plugin kit.

Installed with Transom, so a connector plugin's tests get them with no conftest:

* ``transom_database_url`` — a migrated, empty database for one test (SQLite; PostgreSQL when
  ``TRANSOM_TEST_DATABASE_URL`` names a server);
* ``fake_oidc_idp`` — a :class:`~transom.testing.oidc.FakeOidcIdp` (real RSA keys, signed
  id_tokens, JWKS and token endpoint in process);
* ``served_oidc_idp`` — the same, answering over real HTTP on 127.0.0.1;
* ``fake_saml_idp`` — a :class:`~transom.testing.saml.FakeSamlIdp` (real signed assertions);
* ``transom_host`` — a factory of running hosts (:class:`~transom.testing.host.TransomHost`)
  configured with the connectors a test names, closed after the test.

Heavy imports happen inside the fixtures: every pytest run in an environment with Transom
installed loads this module.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import pytest

if TYPE_CHECKING:
    from transom.testing.host import TransomHost
    from transom.testing.oidc import FakeOidcIdp
    from transom.testing.saml import FakeSamlIdp

#: the fake OIDC IdP's client credentials (point a connector's settings at them)
FAKE_CLIENT_ID = "transom-test-client"
FAKE_CLIENT_SECRET = "transom-test-client-secret"


class HostFactory(Protocol):
    def __call__(self, connectors: list[dict[str, Any]], **options: Any) -> TransomHost: ...


@pytest.fixture(scope="session")
def _transom_sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transom.testing.database import migrated_sqlite_template

    return migrated_sqlite_template(tmp_path_factory.mktemp("transom-template"))


@pytest.fixture(scope="session")
def _transom_pg_database() -> Iterator[str]:
    from transom.testing.database import postgres_database, postgres_server_url

    server = postgres_server_url()
    assert server is not None
    with postgres_database(server) as url:
        yield url


@pytest.fixture
def transom_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated, empty database for one test."""
    from transom.testing.database import postgres_server_url, sqlite_copy, truncate_all

    if postgres_server_url():
        url: str = request.getfixturevalue("_transom_pg_database")
        yield url
        truncate_all(url)
    else:
        yield sqlite_copy(request.getfixturevalue("_transom_sqlite_template"), tmp_path)


@pytest.fixture
def fake_oidc_idp() -> FakeOidcIdp:
    """A fake OIDC IdP at ``https://idp.example.test`` for client ``transom-test-client``."""
    from transom.testing.oidc import FakeOidcIdp

    return FakeOidcIdp(issuer="https://idp.example.test", client_id=FAKE_CLIENT_ID,
                       client_secret=FAKE_CLIENT_SECRET)


@pytest.fixture
def served_oidc_idp() -> Iterator[FakeOidcIdp]:
    """A fake OIDC IdP answering discovery, JWKS and the token endpoint over real HTTP
    (``issuer`` is ``http://127.0.0.1:<port>``)."""
    from transom.testing.oidc import serve_oidc_idp

    with serve_oidc_idp(client_id=FAKE_CLIENT_ID, client_secret=FAKE_CLIENT_SECRET) as fake:
        yield fake


@pytest.fixture
def fake_saml_idp() -> FakeSamlIdp:
    """A fake SAML IdP with its own signing key and certificate."""
    from transom.testing.saml import FakeSamlIdp

    return FakeSamlIdp()


@pytest.fixture
def transom_host(transom_database_url: str) -> Iterator[HostFactory]:
    """``transom_host(connectors, plugins=..., idps=..., accounts=..., server=..., http=...)``
    starts a host on this test's database (see :meth:`TransomHost.start`); every host is
    closed when the test ends."""
    from transom.testing.host import TransomHost

    started: list[TransomHost] = []

    def start(connectors: list[dict[str, Any]], **options: Any) -> TransomHost:
        host = TransomHost.start(transom_database_url, connectors, **options)
        started.append(host)
        return host

    yield start
    for host in started:
        host.close()
