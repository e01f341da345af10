"""The admin console in headless Chromium, on the demo (real uvicorn, development IdP): an
Account Admin signs in with a password, maps a group to an IdP identifier on the Groups page,
creates an API token and revokes it (the token stops working at once), deactivates a user
whose next SSO login is then refused, and finds that refusal's reason in the login activity;
checks the health of a connector with "Check now";
an Account Member gets 403. With TRANSOM_SCREENSHOT_DIR set, every page is saved as a PNG.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_browser_login import _wait_for, demo, driver  # noqa: F401 - fixtures

from transom import directory
from transom.demo import ACCOUNT, OWNER_EMAIL, DemoSite

pytestmark = pytest.mark.browser
MEMBER_PASSWORD = "member password 1"


def shot(browser: Any, name: str) -> None:
    """A full-page PNG when TRANSOM_SCREENSHOT_DIR is set: the window grows to the page."""
    folder = os.environ.get("TRANSOM_SCREENSHOT_DIR")
    if not folder:
        return
    Path(folder).mkdir(parents=True, exist_ok=True)
    height = int(browser.execute_script("return document.documentElement.scrollHeight"))
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": 1280, "height": max(800, min(height, 4000)), "deviceScaleFactor": 1, "mobile": False})
    try:
        browser.save_screenshot(str(Path(folder) / f"admin-{name}.png"))
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def by_id(browser: Any, element_id: str) -> Any:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    return _wait_for(browser, ec.presence_of_element_located((By.ID, element_id)))


def flash_text(browser: Any) -> str:
    text: str = by_id(browser, "flash").text
    return text


def password_sign_in(browser: Any, base_url: str, email: str, password: str) -> None:
    browser.delete_all_cookies()
    browser.get(f"{base_url}/login?use=password&email={email}")
    by_id(browser, "password").send_keys(password)
    account = by_id(browser, "account")
    account.clear()
    account.send_keys(ACCOUNT)
    by_id(browser, "password-submit").click()
    by_id(browser, "welcome")


def sso_sign_in(browser: Any, base_url: str, email: str) -> None:
    """Through the development IdP's picker over OIDC (demo-okta), as the person ``email``."""
    from selenium.webdriver.support import expected_conditions as ec

    browser.delete_all_cookies()
    browser.get(f"{base_url}/login")
    by_id(browser, "email").send_keys(email)
    by_id(browser, "continue").click()
    _wait_for(browser, ec.url_contains("/dev-idp/"))
    by_id(browser, f"sign-in-as-{email}").click()


def submit_confirmed(browser: Any, button_id: str) -> None:
    """Press a button whose form asks for confirmation, and accept the dialog."""
    from selenium.webdriver.support import expected_conditions as ec

    by_id(browser, button_id).click()
    _wait_for(browser, ec.alert_is_present()).accept()


def test_admin_console_in_chromium(driver: Any, demo: tuple[DemoSite, str]) -> None:  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    site, base_url = demo
    driver.set_window_size(1280, 900)
    with site.runtime.db.transaction() as db:
        account = directory.get_account(db, name=ACCOUNT)
        directory.create_user(db, account=account, user_name="member@demo.example", email="member@demo.example",
                              password=MEMBER_PASSWORD, display_name="Mo Member")

    # two SSO logins to look at later: Ada (clean) and Alan (an unknown space, an invalid time zone)
    sso_sign_in(driver, base_url, "ada@demo.example")
    by_id(driver, "welcome")
    sso_sign_in(driver, base_url, "alan@demo.example")
    by_id(driver, "welcome")

    # the admin signs in with a password; the home page links the console
    password_sign_in(driver, base_url, OWNER_EMAIL, site.owner_password)
    shot(driver, "00-home")
    by_id(driver, "admin-console").click()
    _wait_for(driver, ec.url_to_be(f"{base_url}/admin/users"))
    assert "ada@demo.example" in by_id(driver, "users").text
    shot(driver, "01-users")

    # Groups page: map "Support" to an IdP group
    by_id(driver, "nav-groups").click()
    field = driver.find_element(By.CSS_SELECTOR, "input[data-group='Support']")
    field.clear()
    field.send_keys("00g-support-team")
    field.submit()
    assert flash_text(driver) == "group Support is mapped to IdP group 00g-support-team"
    assert driver.find_element(By.CSS_SELECTOR, "input[data-group='Support']").get_attribute(
        "value") == "00g-support-team"
    shot(driver, "02-groups")
    driver.find_element(By.LINK_TEXT, "DevOps Engineers").click()
    assert by_id(driver, "group-name").text == "DevOps Engineers"
    assert "ada@demo.example" in by_id(driver, "members").text
    shot(driver, "03-group")

    by_id(driver, "nav-spaces").click()
    assert "DevOps" in by_id(driver, "spaces").text
    shot(driver, "04-spaces")

    # API tokens: create one (the secret shows once), use it, revoke it, and it is refused at once
    by_id(driver, "nav-tokens").click()
    by_id(driver, "token-name").send_keys("okta-scim")
    by_id(driver, "create-token-submit").click()
    secret = by_id(driver, "token-secret").text
    assert secret.startswith("trn_")
    scim = {"authorization": f"Bearer {secret}"}
    assert httpx.get(f"{base_url}/api/scim/v2/Users", headers=scim).status_code == 200
    shot(driver, "05-token-created")
    revoke = driver.find_element(By.CSS_SELECTOR, "button[aria-label='Revoke okta-scim']")
    submit_confirmed(driver, revoke.get_attribute("id"))
    assert flash_text(driver) == "token okta-scim revoked: it is refused from now on"
    assert httpx.get(f"{base_url}/api/scim/v2/Users", headers=scim).status_code == 401
    assert "okta-scim" not in by_id(driver, "tokens").text
    shot(driver, "06-tokens")

    # deactivate Ada on her page
    by_id(driver, "nav-users").click()
    driver.find_element(By.LINK_TEXT, "ada@demo.example").click()
    assert "DevOps Engineers" in by_id(driver, "user-groups").text
    shot(driver, "07-user")
    submit_confirmed(driver, "deactivate")
    assert flash_text(driver) == "ada@demo.example is now deprovisioned"
    assert by_id(driver, "user-status").text == "deprovisioned"

    # Ada's next SSO login is refused...
    sso_sign_in(driver, base_url, "ada@demo.example")
    message = by_id(driver, "error-message").text
    assert message == "your access to this account has been removed"
    shot(driver, "08-refused-sso-login")

    # ...and the admin finds the reason in the login activity
    password_sign_in(driver, base_url, OWNER_EMAIL, site.owner_password)
    driver.get(f"{base_url}/admin/logins")
    rows = by_id(driver, "logins").find_elements(By.CSS_SELECTOR, "tbody tr")
    assert "refused" in rows[0].text and "your access to this account has been removed" in rows[0].text
    assert "does not exist in the account" in by_id(driver, "logins").text  # Alan's warnings
    shot(driver, "09-logins")
    rows[0].find_element(By.LINK_TEXT, "details").click()
    assert "your access to this account has been removed" in by_id(driver, "login-reason").text
    assert "deprovisioned" in by_id(driver, "login-hint").text
    assert "ada@demo.example" in by_id(driver, "received").text
    shot(driver, "10-login-refused-detail")
    driver.get(f"{base_url}/admin/logins?outcome=success")
    alan = [r for r in by_id(driver, "logins").find_elements(By.CSS_SELECTOR, "tbody tr") if "alan" in r.text]
    alan[0].find_element(By.LINK_TEXT, "details").click()
    assert by_id(driver, "login-warnings").text
    shot(driver, "11-login-success-detail")

    by_id(driver, "nav-connectors").click()
    assert "demo-okta" in by_id(driver, "connectors").text
    shot(driver, "12-connectors")
    # "Check now" runs the connector's probe (the development IdP's discovery and keys) and
    # shows it; the SAML one is checked from the keyboard (Enter on the focused button)
    by_id(driver, "check-demo-okta").click()
    assert by_id(driver, "health-demo-okta").text == "healthy"
    checked = by_id(driver, "probe-checks").text
    assert "discovery" in checked and "jwks" in checked and "fail" not in checked
    assert "Health of demo-okta: every check passed" in by_id(driver, "check-title").text
    shot(driver, "12a-connector-check")
    by_id(driver, "check-demo-saml").send_keys("\ue007")  # Enter
    assert by_id(driver, "health-demo-saml").text == "healthy"
    assert "certificate" in by_id(driver, "probe-checks").text
    shot(driver, "12b-connector-check-keyboard")
    driver.find_element(By.LINK_TEXT, "demo-okta").click()
    assert by_id(driver, "value-1").text == f"{base_url}/api/accounts/idp-callback"
    shot(driver, "13-connector-oidc")
    driver.get(f"{base_url}/admin/connectors/demo-saml")
    assert by_id(driver, "value-1").text == f"{base_url}/api/accounts/saml/demo-saml/acs"
    shot(driver, "14-connector-saml")

    by_id(driver, "nav-audit").click()
    assert "token.revoked" in by_id(driver, "audit").text
    shot(driver, "15-audit")

    # keyboard: the navigation is reachable with Tab, in order, and Enter follows a link
    driver.get(f"{base_url}/admin/users")
    active = driver.switch_to.active_element
    for _ in range(12):
        active.send_keys("\ue004")  # Tab
        active = driver.switch_to.active_element
        if active.get_attribute("id") == "nav-groups":
            break
    assert active.get_attribute("id") == "nav-groups"
    active.send_keys("\ue007")  # Enter
    _wait_for(driver, ec.url_to_be(f"{base_url}/admin/groups"))

    # an Account Member gets 403
    password_sign_in(driver, base_url, "member@demo.example", MEMBER_PASSWORD)
    assert not driver.find_elements(By.ID, "admin-console")
    driver.get(f"{base_url}/admin/groups")
    assert "for Account Admins" in by_id(driver, "error-message").text
    assert re.search(r"HTTP 403", by_id(driver, "error-reference").text)
    shot(driver, "16-member-403")
