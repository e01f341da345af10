"""Headless Chromium through the demo: the login page, home-realm discovery, the development
IdP's picker, back to Transom logged in, over OIDC and over SAML.

Runs Debian's ``chromium`` + ``chromedriver`` (``apt-get install chromium chromium-driver``)
via Selenium with the driver path given explicitly, so Selenium Manager never downloads
anything. Skipped only when Chromium is missing outside CI; with ``CI`` set a missing
browser is a failure.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from transom.demo import ACCOUNT, ENTRA_ACCOUNT, ENTRA_TENANT_ID, OWNER_EMAIL, DemoSite, build_demo
from transom.testing.server import free_port, serve_in_thread

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("TRANSOM_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("TRANSOM_CHROMEDRIVER", "/usr/bin/chromedriver")
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--window-size=1000,1400",
)
WAIT_SECONDS = 20


def _browser_missing() -> str | None:
    for path in (CHROMIUM, CHROMEDRIVER):
        if not (Path(path).is_file() and os.access(path, os.X_OK)):
            return f"{path} not found (apt-get install chromium chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    return None


@pytest.fixture
def driver(tmp_path: Path) -> Iterator[Any]:
    missing = _browser_missing()
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"CI is set but the browser test cannot run: {missing}")
        pytest.skip(missing)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    profile = tmp_path / "chromium-profile"
    profile.mkdir()
    options.add_argument(f"--user-data-dir={profile}")
    browser = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    browser.set_page_load_timeout(WAIT_SECONDS)
    try:
        yield browser
    finally:
        browser.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def demo(database_url: str) -> Iterator[tuple[DemoSite, str]]:
    port = free_port()
    site = build_demo(base_url=f"http://127.0.0.1:{port}", database_url=database_url)
    try:
        with serve_in_thread(site.app, port=port) as base_url:
            yield site, base_url
    finally:
        site.runtime.close()


def _wait_for(driver: Any, condition: Any) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT_SECONDS).until(condition)


def _screenshot(driver: Any, name: str) -> None:
    """Save a screenshot when TRANSOM_SCREENSHOT_DIR is set (to look at the pages)."""
    folder = os.environ.get("TRANSOM_SCREENSHOT_DIR")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(Path(folder) / f"{name}.png"))


def _enter_email(driver: Any, base_url: str, email: str) -> None:
    from selenium.webdriver.common.by import By

    driver.get(f"{base_url}/login")
    assert driver.title == "Sign in · Transom"
    _screenshot(driver, "login")
    driver.find_element(By.ID, "email").send_keys(email)
    driver.find_element(By.ID, "continue").click()


def _me(driver: Any, base_url: str) -> dict[str, Any]:
    from selenium.webdriver.common.by import By

    driver.get(f"{base_url}/api/me")
    me: dict[str, Any] = json.loads(driver.find_element(By.TAG_NAME, "body").text)
    return me


def _sign_in_at_dev_idp(driver: Any, *, expected_path: str, timezone: str, email: str = "ada@demo.example") -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    _wait_for(driver, ec.url_contains(expected_path))
    assert "Development IdP" in driver.find_element(By.TAG_NAME, "body").text
    _screenshot(driver, "dev-idp-" + expected_path.strip("/").replace("/", "-"))
    field = driver.find_element(By.ID, "timezone-1")  # Ada is the first person
    field.clear()
    field.send_keys(timezone)
    driver.find_element(By.ID, f"sign-in-as-{email}").click()


def _assert_landed_home(driver: Any, base_url: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    _wait_for(driver, ec.url_to_be(f"{base_url}/"))
    welcome = _wait_for(driver, ec.presence_of_element_located((By.ID, "welcome")))
    assert welcome.text == "Signed in as Ada Lovelace"
    _screenshot(driver, "home")


def test_oidc_login_in_chromium(driver: Any, demo: tuple[DemoSite, str]) -> None:
    _site, base_url = demo
    _enter_email(driver, base_url, "ada@demo.example")
    _sign_in_at_dev_idp(driver, expected_path="/dev-idp/oauth2/default/v1/authorize", timezone="Asia/Tokyo")
    _assert_landed_home(driver, base_url)
    me = _me(driver, base_url)
    assert (me["account"], me["email"], me["timezone"]) == (ACCOUNT, "ada@demo.example", "Asia/Tokyo")
    assert me["spaces"] == [{"space": "DevOps", "role": "Space Developer"}, {"space": "Trial", "role": "Space Admin"}]
    assert [g["name"] for g in me["groups"]] == ["DevOps Engineers", "Trial Admins"]


def test_saml_login_in_chromium(driver: Any, demo: tuple[DemoSite, str]) -> None:
    _site, base_url = demo
    _enter_email(driver, base_url, "ada@saml.demo.example")
    # the dev IdP answers with a self-submitting form that POSTs the signed Response to the ACS
    _sign_in_at_dev_idp(driver, expected_path="/dev-idp/saml/sso", timezone="Pacific/Auckland")
    _assert_landed_home(driver, base_url)
    me = _me(driver, base_url)
    assert (me["account"], me["email"], me["timezone"]) == (ACCOUNT, "ada@demo.example", "Pacific/Auckland")
    assert me["spaces"] == [{"space": "DevOps", "role": "Space Developer"}, {"space": "Trial", "role": "Space Admin"}]


def test_entra_login_from_the_azure_button_in_chromium(driver: Any, demo: tuple[DemoSite, str]) -> None:
    from selenium.webdriver.common.by import By

    _site, base_url = demo
    driver.get(f"{base_url}/login")
    button = driver.find_element(By.ID, "sso-contoso-entra")
    assert button.text == "Sign in with Azure"
    button.click()
    _sign_in_at_dev_idp(driver, expected_path=f"/dev-idp/entra/{ENTRA_TENANT_ID}/oauth2/v2.0/authorize",
                        timezone="Europe/Berlin", email="ada@contoso.example")
    _assert_landed_home(driver, base_url)
    me = _me(driver, base_url)
    assert (me["account"], me["email"], me["timezone"]) == (ENTRA_ACCOUNT, "ada@contoso.example", "Europe/Berlin")
    assert [g["name"] for g in me["groups"]] == ["Engineering", "Trial Admins"]


def test_password_login_and_sign_out_in_chromium(driver: Any, demo: tuple[DemoSite, str]) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    site, base_url = demo
    driver.get(f"{base_url}/login")
    driver.find_element(By.ID, "email").send_keys(OWNER_EMAIL)
    driver.find_element(By.ID, "use-password").click()
    account = _wait_for(driver, ec.presence_of_element_located((By.ID, "account")))
    assert account.get_attribute("value") == ACCOUNT  # derived from the email's domain
    _screenshot(driver, "password")
    driver.find_element(By.ID, "password").send_keys(site.owner_password)
    driver.find_element(By.ID, "password-submit").click()
    welcome = _wait_for(driver, ec.presence_of_element_located((By.ID, "welcome")))
    assert welcome.text == "Signed in as Demo Owner"
    driver.find_element(By.CSS_SELECTOR, "form[action='/api/accounts/logout'] button").click()
    _wait_for(driver, ec.url_to_be(f"{base_url}/login"))
    driver.get(f"{base_url}/api/me")
    assert json.loads(driver.find_element(By.TAG_NAME, "body").text)["error"] == "unauthorized"
