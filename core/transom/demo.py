"""``transom demo``: the host on a local SQLite file with a demo account and the built-in
development IdP (``transom.devidp``), so a newcomer can walk through a whole SSO login on
localhost with no external tenant. Re-running it reuses the database (idempotent).

What it sets up (docs/demo.md):

* account ``demo`` with spaces Trial and DevOps, groups mapped to the dev IdP's group ids plus
  an unmapped one, and a password user ``owner@demo.example`` (new random password each run);
* connector ``demo-okta``: the real ``okta`` type over OIDC, pointed at the dev IdP's
  Okta-style custom authorization server; ``@demo.example`` emails go there;
* connector ``demo-saml``: the real ``generic_saml`` type, pinned to the dev IdP's entity ID,
  SSO URL and (freshly generated) certificate; ``@saml.demo.example`` emails go there;
* account ``contoso`` with connector ``contoso-entra``: the real ``azure_ad`` type (button
  "Sign in with Azure"), its ``authority`` pointed at the dev IdP's Entra-shaped v2
  endpoints for one tenant GUID; ``@contoso.example`` emails go there.
"""

from __future__ import annotations

import ipaddress
import logging
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click
from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session
from starlette.middleware.base import RequestResponseEndpoint

from transom import directory
from transom.config import Config, parse_config
from transom.devidp import DevIdp, OidcClient, SamlServiceProvider, SigningKey, build_router
from transom.devidp.people import DEMO_PEOPLE, GROUP_DEVOPS, GROUP_TRIAL_ADMINS, entra_object_id
from transom.errors import NotFound
from transom.migrate import upgrade
from transom.models import Account
from transom.runtime import Runtime
from transom.saml.endpoints import ACS_PATH, METADATA_PATH
from transom.security import hash_password
from transom.web.app import create_app

log = logging.getLogger("transom.demo")

ACCOUNT = "demo"
SPACES = ("Trial", "DevOps")
#: Transom group name -> the dev IdP group id it is mapped to (None: unmapped, manual only)
GROUPS: dict[str, str | None] = {
    "DevOps Engineers": GROUP_DEVOPS,
    "Trial Admins": GROUP_TRIAL_ADMINS,
    "Support": None,
}
OWNER_EMAIL = "owner@demo.example"
OKTA_CONNECTOR = "demo-okta"
SAML_CONNECTOR = "demo-saml"
OKTA_DOMAIN = "demo.example"
SAML_DOMAIN = "saml.demo.example"
OKTA_CLIENT_ID = "transom-demo"

#: a second organisation, signing in through Entra ID: ids are GUIDs there
ENTRA_ACCOUNT = "contoso"
ENTRA_CONNECTOR = "contoso-entra"
ENTRA_DOMAIN = "contoso.example"
ENTRA_TENANT_ID = entra_object_id("demo tenant")
ENTRA_CLIENT_ID = entra_object_id("demo app registration")
ENTRA_GROUPS: dict[str, str | None] = {
    "Engineering": entra_object_id(GROUP_DEVOPS),
    "Trial Admins": entra_object_id(GROUP_TRIAL_ADMINS),
}


@dataclass(frozen=True)
class DemoSite:
    """Everything a running demo needs: the app to serve and what to tell the person."""

    app: FastAPI
    runtime: Runtime
    idp: DevIdp
    base_url: str
    owner_password: str


def _sp_urls(base_url: str, connector_id: str) -> tuple[str, str]:
    """The SP entity ID and ACS URL the host derives for a SAML connector."""
    return (
        base_url + METADATA_PATH.format(connector_id=connector_id),
        base_url + ACS_PATH.format(connector_id=connector_id),
    )


def demo_config(
    *, base_url: str, database_url: str, idp: DevIdp, okta_client_secret: str, entra_client_secret: str
) -> Config:
    """The config ``transom demo`` runs with, built in memory (nothing to edit or leak)."""
    raw: dict[str, Any] = {
        "server": {
            "base_url": base_url,
            "database_url": database_url,
            "session_secret": secrets.token_urlsafe(32),
        },
        "connectors": [
            {
                "id": OKTA_CONNECTOR,
                "type": "okta",
                "account": ACCOUNT,
                "name": "Sign in with Okta (development IdP)",
                "email_domains": [OKTA_DOMAIN],
                "settings": {
                    "protocol": "oidc",
                    "issuer": idp.issuer,
                    "client_id": OKTA_CLIENT_ID,
                    "client_secret": okta_client_secret,
                },
                "provisioning": {"default_space": "Trial"},
            },
            {
                "id": SAML_CONNECTOR,
                "type": "generic_saml",
                "account": ACCOUNT,
                "name": "Sign in with SAML (development IdP)",
                "email_domains": [SAML_DOMAIN],
                "settings": {
                    "idp_entity_id": idp.saml_entity_id,
                    "idp_sso_url": idp.saml_sso_url,
                    "idp_certificates": [idp.key.certificate_pem],
                    "groups_attribute": "groups",
                },
            },
            {
                # no name: the login button shows the azure_ad type's default, "Sign in with Azure"
                "id": ENTRA_CONNECTOR,
                "type": "azure_ad",
                "account": ENTRA_ACCOUNT,
                "email_domains": [ENTRA_DOMAIN],
                "settings": {
                    "tenant_id": ENTRA_TENANT_ID,
                    "client_id": ENTRA_CLIENT_ID,
                    "client_secret": entra_client_secret,
                    "authority": idp.entra_authority,
                },
            },
        ],
    }
    return parse_config(raw)


def _seed_account(db: Session, *, name: str, groups: dict[str, str | None]) -> Account:
    """Create what is missing of an account, its spaces and groups; leave what exists."""
    try:
        account = directory.get_account(db, name=name)
    except NotFound:
        account = directory.create_account(db, name=name)
    existing_spaces = {s.name for s in directory.list_spaces(db, account=account)}
    for space in SPACES:
        if space not in existing_spaces:
            directory.create_space(db, account=account, name=space)
    for group_name, idp_id in groups.items():
        try:
            directory.get_group(db, account=account, name=group_name)
        except NotFound:
            directory.create_group(db, account=account, name=group_name, idp_identifier=idp_id)
    return account


def seed_demo_account(db: Session, *, owner_password: str) -> None:
    """Create what is missing of the demo accounts; leave what exists (re-runs keep users
    and their memberships). The owner's password is reset to ``owner_password``."""
    account = _seed_account(db, name=ACCOUNT, groups=GROUPS)
    _seed_account(db, name=ENTRA_ACCOUNT, groups=ENTRA_GROUPS)
    owner = directory.find_user(db, account=account, email_or_user_name=OWNER_EMAIL)
    if owner is None:
        owner = directory.create_user(
            db, account=account, user_name=OWNER_EMAIL, email=OWNER_EMAIL, password=owner_password,
            display_name="Demo Owner", account_role="Account Admin", actor="demo",
        )
        support = directory.get_group(db, account=account, name="Support")
        directory.add_group_member(db, account=account, group=support, user=owner, actor="demo", idp_owned=False)
    else:
        owner.password_hash = hash_password(owner_password)


def _canonical_host(app: FastAPI, base_url: str) -> None:
    """Cookies are per host: a browser on ``localhost`` would lose its login binding when the
    IdP sends it back to ``127.0.0.1``. Send every page view to the base URL's host first."""
    canonical = urlsplit(base_url).netloc.lower()

    @app.middleware("http")
    async def _redirect(request: Request, call_next: RequestResponseEndpoint) -> Response:
        host = request.headers.get("host", "").lower()
        if request.method in ("GET", "HEAD") and host and host != canonical:
            target = base_url + request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(target, status_code=307)
        return await call_next(request)


def build_demo(*, base_url: str, database_url: str) -> DemoSite:
    """Keys, dev IdP, config, migrations, seed data and the app: the demo, ready to serve."""
    base_url = base_url.rstrip("/")
    okta_client_secret = secrets.token_urlsafe(32)
    entra_client_secret = secrets.token_urlsafe(32)
    callback = f"{base_url}/api/accounts/idp-callback"
    saml_entity_id, saml_acs = _sp_urls(base_url, SAML_CONNECTOR)
    idp = DevIdp(
        base_url=base_url,
        key=SigningKey.generate("Transom development IdP"),
        oidc_clients=(
            OidcClient(
                client_id=OKTA_CLIENT_ID,
                client_secret=okta_client_secret,
                redirect_uris=(callback,),
                label=f"Transom (connector {OKTA_CONNECTOR})",
            ),
            OidcClient(
                client_id=ENTRA_CLIENT_ID,
                client_secret=entra_client_secret,
                redirect_uris=(callback,),
                label=f"Transom (connector {ENTRA_CONNECTOR}, tenant {ENTRA_TENANT_ID})",
                flavor="entra",
            ),
        ),
        saml_service_providers=(
            SamlServiceProvider(
                entity_id=saml_entity_id, acs_url=saml_acs, label=f"Transom (connector {SAML_CONNECTOR})"
            ),
        ),
        entra_tenant_id=ENTRA_TENANT_ID,
        entra_email_domain=ENTRA_DOMAIN,
    )
    config = demo_config(
        base_url=base_url, database_url=database_url, idp=idp, okta_client_secret=okta_client_secret,
        entra_client_secret=entra_client_secret,
    )
    runtime = Runtime.build(config)
    upgrade(runtime.db.engine)
    owner_password = secrets.token_urlsafe(12)
    with runtime.db.transaction() as db:
        seed_demo_account(db, owner_password=owner_password)
    app = create_app(runtime, extra_routers=[build_router(idp)])
    _canonical_host(app, base_url)
    return DemoSite(app=app, runtime=runtime, idp=idp, base_url=base_url, owner_password=owner_password)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def welcome_text(site: DemoSite, *, database_path: Path) -> str:
    people = "\n".join(f"    {p.display_name:<15} {p.email:<22} {p.shows}" for p in DEMO_PEOPLE)
    return f"""
Transom demo: {site.base_url}/login

  Account "{ACCOUNT}" with spaces {", ".join(SPACES)} and groups {", ".join(GROUPS)} (Support is not mapped
  to any IdP group). Database: {database_path}

  Try:
  1. Open {site.base_url}/login and enter any @{OKTA_DOMAIN} email: Transom sends you to the
     development IdP over OIDC (connector {OKTA_CONNECTOR}, the real okta type).
  2. Pick a person, change the claims if you like, and sign in. You land on Transom's home page
     with the spaces, roles and groups the login gave you; GET {site.base_url}/api/me shows the JSON.
  3. Sign out and enter an @{SAML_DOMAIN} email: the same over SAML 2.0 (connector {SAML_CONNECTOR},
     generic_saml: no group sync for generic SAML IdPs).
  4. Enter an @{ENTRA_DOMAIN} email (or press "Sign in with Azure"): the real azure_ad type against the
     development IdP's Entra-shaped endpoints, into a second account, "{ENTRA_ACCOUNT}"; users are keyed on
     tid + oid and groups arrive as object-id GUIDs (mapped to Engineering and Trial Admins there).
  5. Password login: {OWNER_EMAIL} in account "{ACCOUNT}", password {site.owner_password}
     (new each run; use "Sign in with a password" on the login page).

  Demo people at the development IdP ({site.base_url}/dev-idp):
{people}

  The development IdP signs in whoever you pick, with keys made at start-up. Never expose it.
"""


def _check_port_free(host: str, port: int) -> None:
    """Before the banner: a taken port would otherwise fail after the demo users were shown."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise click.ClickException(
                f"cannot listen on {host}:{port} ({exc.strerror}); is another server running? "
                f"Try: transom demo --port {port + 1 if port < 65535 else 8001}"
            ) from None


@click.command("demo")
@click.option("--host", default="127.0.0.1", show_default=True, help="interface to listen on")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535), help="TCP port")
@click.option("--data-dir", default="transom-demo", show_default=True,
              type=click.Path(file_okay=False, path_type=Path), help="where the SQLite file lives")
@click.option("--base-url", default=None, help="public URL, when not http://HOST:PORT")
def command(host: str, port: int, data_dir: Path, base_url: str | None) -> None:
    """Run the host with a demo account and a built-in development IdP (OIDC and SAML) on a
    local SQLite file; prints the URL and the demo users. Ignores --config."""
    import uvicorn

    _check_port_free(host, port)
    from transom import logs

    logs.configure("INFO", "text")
    if not _is_loopback(host):
        click.echo(f"warning: listening on {host}: anyone who can reach it can sign in through the "
                   "development IdP", err=True)
    if base_url is None:
        shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host  # noqa: S104
        base_url = f"http://{shown}:{port}"
    data_dir.mkdir(parents=True, exist_ok=True)
    database_path = (data_dir / "transom.db").resolve()
    try:
        site = build_demo(base_url=base_url, database_url=f"sqlite:///{database_path}")
    except Exception as exc:
        raise click.ClickException(f"{type(exc).__name__}: {exc}".splitlines()[0]) from exc
    click.echo(welcome_text(site, database_path=database_path))
    try:
        uvicorn.run(site.app, host=host, port=port, log_level="info", log_config=logs.logging_config("INFO", "text"))
    finally:
        site.runtime.close()
