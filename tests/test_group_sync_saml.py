"""Group sync end to end through the SAML ACS: Entra (groups attribute, groups.link overage
resolved through a fake Microsoft Graph) and Okta (group attribute statement with names, and
Okta brokering Entra with object ids), against FakeSamlIdp responses signed with xmlsec."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from conftest import client_for
from saml_support import ENTRA_GROUPS, OID, TENANT, entra_attributes, entra_connector, okta_attributes, okta_connector

from transom import directory
from transom.runtime import Runtime
from transom.testing.graph import FakeGraph
from transom.testing.saml import FakeSamlIdp, saml_login
from transom_azure_ad import graph

GROUPS_LINK = "http://schemas.microsoft.com/claims/groups.link"
G_DEV = "d0000000-0000-4000-8000-000000000001"
G_OPS = "d0000000-0000-4000-8000-000000000002"
G_SEC = "d0000000-0000-4000-8000-000000000003"


@pytest.fixture(autouse=True)
def _fresh_graph_tokens() -> Iterator[None]:
    graph.TOKENS.clear()
    yield
    graph.TOKENS.clear()


def setup(make_runtime: Any, connector: dict[str, Any], groups: dict[str, str | None], **kwargs: Any) -> Runtime:
    runtime: Runtime = make_runtime(connectors=[connector], **kwargs)
    with runtime.db.transaction() as db:
        account = directory.create_account(db, name="acme")
        for name, identifier in groups.items():
            directory.create_group(db, account=account, name=name, idp_identifier=identifier)
    return runtime


def login(
    runtime: Runtime,
    idp: FakeSamlIdp,
    connector: str,
    attributes: dict[str, list[str]],
    name_id: str = "ada@acme.example",
) -> dict[str, str]:
    with client_for(runtime) as client:
        response = saml_login(client, idp, connector_id=connector, name_id=name_id, attributes=attributes)
        assert response.status_code == 303, response.text
        me = client.get("/api/me").json()
    return {g["name"]: g["source"] for g in me["groups"]}


# -- Entra SAML --------------------------------------------------------------------------------


@pytest.fixture
def entra(make_runtime: Any) -> tuple[Runtime, FakeSamlIdp, FakeGraph]:
    idp = FakeSamlIdp(entity_id=f"https://sts.windows.net/{TENANT}/")
    fake_graph = FakeGraph(page_size=50)
    connector = entra_connector(
        idp,
        authority=fake_graph.authority,
        graph_url=fake_graph.graph_url,
        client_id=fake_graph.client_id,
        client_secret=fake_graph.client_secret,
    )
    runtime = setup(
        make_runtime,
        connector,
        {"Dev": G_DEV, "Ops": G_OPS, "Security": G_SEC, "Local": None},
        http=httpx.Client(transport=fake_graph.transport()),
    )
    return runtime, idp, fake_graph


def test_entra_saml_add_remove_sequence_and_absent(entra: tuple[Runtime, FakeSamlIdp, FakeGraph]) -> None:
    runtime, idp, _ = entra
    assert login(runtime, idp, "acme-entra", entra_attributes(**{ENTRA_GROUPS: [G_DEV, G_OPS, "x-unmapped"]})) == {
        "Dev": "idp",
        "Ops": "idp",
    }
    assert login(runtime, idp, "acme-entra", entra_attributes(**{ENTRA_GROUPS: [G_SEC]})) == {"Security": "idp"}
    # no groups attribute at all: memberships stay
    assert login(runtime, idp, "acme-entra", entra_attributes()) == {"Security": "idp"}


def test_entra_saml_overage_through_graph(entra: tuple[Runtime, FakeSamlIdp, FakeGraph]) -> None:
    runtime, idp, fake_graph = entra
    login(runtime, idp, "acme-entra", entra_attributes(**{ENTRA_GROUPS: [G_DEV]}))
    fake_graph.groups[OID] = [f"e{i:07d}-0000-4000-8000-000000000000" for i in range(160)] + [G_OPS, G_SEC]
    link = f"https://graph.windows.net/{TENANT}/users/{OID}/getMemberObjects"
    # the doc sample of Entra shows a leading blank in the attribute name
    overage = entra_attributes(**{" " + GROUPS_LINK: [link]})
    assert login(runtime, idp, "acme-entra", overage) == {"Ops": "idp", "Security": "idp"}
    assert fake_graph.graph_calls == 4 and fake_graph.token_calls == 1  # 162 groups / 50 per page
    assert fake_graph.tenants_asked == [TENANT]


def test_entra_saml_graph_failure_leaves_memberships(entra: tuple[Runtime, FakeSamlIdp, FakeGraph]) -> None:
    runtime, idp, fake_graph = entra
    login(runtime, idp, "acme-entra", entra_attributes(**{ENTRA_GROUPS: [G_DEV, G_OPS]}))
    fake_graph.graph_status = 403
    overage = entra_attributes(**{GROUPS_LINK: ["https://graph.windows.net/x"]})
    assert login(runtime, idp, "acme-entra", overage) == {"Dev": "idp", "Ops": "idp"}
    assert fake_graph.graph_calls == 1


# -- Okta SAML ---------------------------------------------------------------------------------


def test_okta_saml_group_names(make_runtime: Any) -> None:
    idp = FakeSamlIdp(entity_id="http://www.okta.com/exk1fake")
    runtime = setup(make_runtime, okta_connector(idp), {"Developers": "Engineering", "Operators": "Ops", "Local": None})
    assert login(runtime, idp, "acme-okta", okta_attributes(groups=["Everyone", "Engineering", "Ops"])) == {
        "Developers": "idp",
        "Operators": "idp",
    }
    assert login(runtime, idp, "acme-okta", okta_attributes(groups=["Everyone", "Ops"])) == {"Operators": "idp"}
    assert login(runtime, idp, "acme-okta", okta_attributes()) == {"Operators": "idp"}  # no statement: unchanged
    # an attribute statement without values: present and empty, so every mapped membership goes
    assert login(runtime, idp, "acme-okta", okta_attributes(groups=[])) == {}


def test_okta_saml_brokering_entra_object_ids(make_runtime: Any) -> None:
    """Entra -> Okta -> Transom: Okta passes Entra's group object ids through under the
    attribute name its admin chose (here Entra's own URI)."""
    idp = FakeSamlIdp(entity_id="http://www.okta.com/exk1fake")
    runtime = setup(make_runtime, okta_connector(idp, groups_attribute=ENTRA_GROUPS), {"Dev": G_DEV, "Ops": G_OPS})
    assert login(runtime, idp, "acme-okta", okta_attributes(**{ENTRA_GROUPS: [G_DEV, G_OPS]})) == {
        "Dev": "idp",
        "Ops": "idp",
    }
    assert login(runtime, idp, "acme-okta", okta_attributes(**{ENTRA_GROUPS: [G_OPS.upper()]})) == {"Ops": "idp"}
