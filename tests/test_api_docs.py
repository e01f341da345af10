"""API docs: /docs is Swagger UI from assets Transom serves (no CDN), rendered offline in
headless Chromium; the OpenAPI schema lists the SCIM paths and says 400 where the API does."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient
from test_browser_login import WAIT_SECONDS, driver  # noqa: F401 - the shared Chromium fixture

from transom.runtime import Runtime
from transom.testing.server import free_port, serve_in_thread
from transom.web.app import create_app


def test_docs_page_uses_local_assets_only(client: TestClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200
    assert "/docs/assets/swagger-ui-bundle.js" in page.text
    assert "/docs/assets/swagger-ui.css" in page.text
    assert "cdn" not in page.text.lower() and "https://" not in page.text
    script = client.get("/docs/assets/swagger-ui-bundle.js")
    assert script.status_code == 200 and len(script.content) > 100_000
    assert client.get("/redoc").status_code == 404  # ReDoc would need a CDN: off


def test_openapi_says_400_not_422_and_lists_scim(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    text = str(schema)
    assert "'422'" not in text and "HTTPValidationError" not in text
    admin = schema["paths"]["/api/admin/groups"]["post"]["responses"]
    assert "400" in admin and "422" not in admin
    users = schema["paths"]["/api/scim/v2/Users"]
    assert set(users["post"]["responses"]) == {"201", "400", "401", "409", "413"}
    assert set(schema["paths"]["/api/scim/v2/Users/{user_id}"]) == {"get", "put", "patch", "delete"}
    assert schema["paths"]["/api/scim/v2/Users"]["get"]["responses"]["400"]["content"][
        "application/scim+json"]["schema"] == {"$ref": "#/components/schemas/ScimError"}
    assert "/api/admin/connectors/{connector_id}/check" in schema["paths"]


def test_a_scim_bad_request_really_is_400(client: TestClient, runtime: Runtime) -> None:
    from transom import directory

    with runtime.db.transaction() as db:
        token = directory.create_token(db, account=directory.create_account(db, name="acme"),
                                       permissions=["manage-users"])
    answer = client.get("/api/scim/v2/Users?filter=userName%20zz%20%22x%22",
                        headers={"authorization": f"Bearer {token}"})
    assert answer.status_code == 400  # as the schema says


@pytest.fixture
def served(runtime: Runtime) -> Iterator[str]:
    with serve_in_thread(create_app(runtime), port=free_port()) as base:
        yield base


@pytest.mark.browser
def test_docs_render_offline_in_chromium(driver: Any, served: str) -> None:  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    # Everything must come from Transom: block every other host.
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd("Network.setBlockedURLs", {"urls": ["https://*"]})
    driver.get(f"{served}/docs")
    WebDriverWait(driver, WAIT_SECONDS).until(ec.presence_of_element_located((By.CSS_SELECTOR, ".opblock-tag")))
    tags = {e.text.split("\n")[0] for e in driver.find_elements(By.CSS_SELECTOR, ".opblock-tag")}
    assert "scim" in tags and "admin" in tags
