"""Entra groups overage through a fake Microsoft Graph: app-only token cached, every page
followed, failures raised as UpstreamError (the host then leaves memberships alone)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from transom.connector import Claims, GroupsClaim
from transom.errors import UpstreamError
from transom.runtime import Runtime
from transom.testing.graph import FakeGraph
from transom_azure_ad import graph

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
OID = "5d2c1f3a-1111-4222-8333-444455556666"


@pytest.fixture(autouse=True)
def _fresh_token_cache() -> Iterator[None]:
    graph.TOKENS.clear()
    yield
    graph.TOKENS.clear()


def group_ids(n: int, prefix: str = "a") -> list[str]:
    return [f"{prefix}{i:07x}-0000-4000-8000-000000000000" for i in range(n)]


@pytest.fixture
def fake() -> FakeGraph:
    return FakeGraph(page_size=999)


def creds(fake: FakeGraph, tenant: str = TENANT) -> graph.GraphCredentials:
    return graph.GraphCredentials(
        authority=fake.authority,
        graph_url=fake.graph_url,
        tenant=tenant,
        client_id=fake.client_id,
        client_secret=fake.client_secret,
    )


def lookup(fake: FakeGraph, oid: str = OID) -> list[str]:
    with httpx.Client(transport=fake.transport()) as http:
        return graph.transitive_group_ids(creds(fake), object_id=oid, http=http)


def test_all_pages_are_followed_and_roles_dropped(fake: FakeGraph) -> None:
    fake.groups[OID] = group_ids(2500)
    fake.other_objects[OID] = ["role-1", "unit-1"]
    ids = lookup(fake)
    assert ids == group_ids(2500)
    assert fake.graph_calls == 3  # 999 + 999 + 502 (+2 roles filtered)
    assert fake.token_calls == 1
    assert fake.tenants_asked == [TENANT]


def test_app_token_is_cached_until_expiry(fake: FakeGraph) -> None:
    fake.groups[OID] = group_ids(3)
    for _ in range(4):
        assert lookup(fake) == group_ids(3)
    assert fake.token_calls == 1 and fake.graph_calls == 4


def test_short_lived_token_is_renewed(fake: FakeGraph) -> None:
    fake.groups[OID] = group_ids(3)
    fake.expires_in = 60  # inside the renewal margin
    lookup(fake)
    lookup(fake)
    assert fake.token_calls == 2


def test_revoked_token_gets_one_fresh_token(fake: FakeGraph) -> None:
    fake.groups[OID] = group_ids(3)
    lookup(fake)
    fake.graph_unauthorized = 1
    assert lookup(fake) == group_ids(3)
    assert fake.token_calls == 2


def test_persistent_401_fails(fake: FakeGraph) -> None:
    fake.groups[OID] = group_ids(3)
    fake.graph_unauthorized = 5
    with pytest.raises(UpstreamError, match="401"):
        lookup(fake)
    assert fake.token_calls == 2


def test_graph_error_names_the_code(fake: FakeGraph) -> None:
    fake.groups[OID] = group_ids(3)
    fake.graph_status = 403
    with pytest.raises(UpstreamError, match=r"403 \(Authorization_RequestDenied\).*GroupMember.Read.All"):
        lookup(fake)


def test_token_endpoint_error_never_echoes_the_secret(fake: FakeGraph) -> None:
    fake.token_status = 401
    with pytest.raises(UpstreamError) as info:
        lookup(fake)
    assert "invalid_client" in info.value.message
    assert fake.client_secret not in info.value.message
    assert fake.graph_calls == 0


def test_next_link_to_another_host_is_refused(fake: FakeGraph) -> None:
    fake.page_size = 2
    fake.groups[OID] = group_ids(5)
    fake.foreign_next_link = "https://evil.example"
    with pytest.raises(UpstreamError, match="nextLink outside"):
        lookup(fake)
    assert fake.graph_calls == 1


def test_network_failure_is_upstream_error(fake: FakeGraph) -> None:
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    with httpx.Client(transport=httpx.MockTransport(down)) as http, pytest.raises(UpstreamError, match="ConnectError"):
        graph.transitive_group_ids(creds(fake), object_id=OID, http=http)


def test_unreadable_page_is_upstream_error(fake: FakeGraph) -> None:
    def weird(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/token"):
            return httpx.Response(200, json={"access_token": "t", "expires_in": 3600})
        return httpx.Response(200, content=b"<html>")

    with httpx.Client(transport=httpx.MockTransport(weird)) as http, pytest.raises(UpstreamError, match="unreadable"):
        graph.transitive_group_ids(creds(fake), object_id=OID, http=http)


def test_object_id_must_be_a_guid(fake: FakeGraph) -> None:
    with pytest.raises(UpstreamError, match="not a GUID"):
        lookup(fake, oid="../../groups")
    assert fake.token_calls == 0


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"oid": OID, "tid": TENANT}, (OID, TENANT)),
        ({"oid": OID}, (OID, "11111111-2222-4333-8444-555555555555")),
        (
            {
                "attributes": {
                    "http://schemas.microsoft.com/identity/claims/objectidentifier": [OID],
                    "http://schemas.microsoft.com/identity/claims/tenantid": [TENANT],
                }
            },
            (OID, TENANT),
        ),
    ],
)
def test_user_and_tenant_from_oidc_and_saml(payload: dict[str, Any], expected: tuple[str, str]) -> None:
    assert graph.user_and_tenant(payload, default_tenant="11111111-2222-4333-8444-555555555555") == expected


def test_user_and_tenant_needs_an_object_id() -> None:
    with pytest.raises(UpstreamError, match="object id"):
        graph.user_and_tenant({"tid": TENANT}, default_tenant=TENANT)
    with pytest.raises(UpstreamError, match="tenant id"):
        graph.user_and_tenant({"oid": OID}, default_tenant="organizations")


# -- through the plugin host -------------------------------------------------------------


def azure_runtime(make_runtime: Any, fake: FakeGraph, **settings: Any) -> Runtime:
    base = {
        "tenant_id": TENANT,
        "client_id": fake.client_id,
        "client_secret": fake.client_secret,
        "authority": fake.authority,
        "graph_url": fake.graph_url,
    }
    base.update(settings)
    runtime: Runtime = make_runtime(
        [{"id": "entra", "type": "azure_ad", "account": "acme", "settings": base}],
        http=httpx.Client(transport=fake.transport()),
    )
    return runtime


def test_hook_resolves_overage_for_the_users_tenant(make_runtime: Any, fake: FakeGraph) -> None:
    fake.groups[OID] = group_ids(250)
    runtime = azure_runtime(make_runtime, fake)
    claims = Claims(subject=f"{TENANT}:{OID}", groups=GroupsClaim.overage("https://graph.windows.net/x"))
    ids = runtime.plugins.lookup_group_ids(
        runtime.connector("entra"), claims, {"oid": OID, "tid": TENANT}, runtime.http
    )
    assert ids == group_ids(250)


def test_hook_without_client_secret_is_upstream_error(make_runtime: Any, fake: FakeGraph) -> None:
    runtime = azure_runtime(make_runtime, fake, client_secret=None)
    claims = Claims(subject="x", groups=GroupsClaim.overage())
    with pytest.raises(UpstreamError, match="client_secret"):
        runtime.plugins.lookup_group_ids(runtime.connector("entra"), claims, {"oid": OID, "tid": TENANT}, runtime.http)
    assert fake.token_calls == 0
