"""The admin console: server-rendered pages under ``/admin`` for an Account Admin's browser
session (users, groups, spaces and roles, API tokens, login activity, connectors with their
setup sheets and an on-demand health check, the audit log).

* Not signed in: redirect to the login page, back here afterwards. Signed in without the
  Account Admin role: 403. The admin API (``/api/admin``) is the same functionality for
  tokens and scripts; both call the same services, scoped to the admin's own account.
* Every form POSTs with a CSRF token (``transom.web.csrf``); a change answers 303 back to the
  page with a one-shot message, a refusal (an IdP-owned membership, a taken name) shows its
  reason there instead of an error page.
* Assets (one stylesheet, one small script for the copy buttons) are served from here.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import FileResponse, RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from transom import admin_service, directory, login_activity, tokens
from transom.directory import ACCOUNT_ADMIN, PERMISSIONS, name_key
from transom.errors import Forbidden, NotFound, TransomError
from transom.groups import user_is_group_synced
from transom.models import Account, Group, GroupMembership, User
from transom.probe import probe_connector
from transom.sessions import COOKIE_NAME, session_user
from transom.web.csrf import check_csrf, clear_flash, csrf_token, pop_flash, set_flash
from transom.web.deps import DbSession, RowId, RuntimeDep, session_secret
from transom.web.setup_sheet import build_sheet
from transom.web.templates import templates

router = APIRouter(prefix="/admin", include_in_schema=False)
#: claims that are Unix times: the detail page shows them as dates too
TIME_CLAIMS = frozenset({"exp", "iat", "nbf", "auth_time", "updated_at"})
STATIC = Path(__file__).with_name("static")
NAV = (
    ("users", "Users"), ("groups", "Groups"), ("spaces", "Spaces and roles"), ("tokens", "API tokens"),
    ("logins", "Login activity"), ("connectors", "Connectors"), ("audit", "Audit log"),
)


class SignInRequired(Exception):
    """Raised by :func:`_console` for a browser without a session: answered with a redirect
    to the login page (installed in ``create_app``)."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


@dataclass(frozen=True)
class Console:
    user: User
    account: Account
    secret: str
    request: Request

    @property
    def actor(self) -> str:
        return f"user:{self.user.id}"


def _console(request: Request, runtime: RuntimeDep, db: DbSession) -> Console:
    secret = session_secret(runtime)
    user = session_user(db, cookie=request.cookies.get(COOKIE_NAME), secret=secret)
    if user is None:
        path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise SignInRequired(path if request.method == "GET" else "/admin")
    if user.account_role is None or user.account_role.name_key != name_key(ACCOUNT_ADMIN):
        raise Forbidden("the admin console is for Account Admins; ask one of your account's admins")
    account = db.get_one(Account, user.account_id)
    return Console(user=user, account=account, secret=secret, request=request)


def sign_in_redirect(next_path: str) -> Response:
    return RedirectResponse("/login?" + urlencode({"next": next_path}), status_code=303)


def _page(console: Console, template: str, section: str, **context: Any) -> Response:
    flash = pop_flash(console.request, console.secret)
    response = templates.TemplateResponse(console.request, template, {
        "me": console.user, "account": console.account, "nav": NAV, "section": section,
        "csrf": csrf_token(console.secret, console.request), "flash": flash, **context,
    }, headers={"cache-control": "no-store"})
    if flash is not None:
        clear_flash(response)
    return response


def _done(console: Console, to: str, message: str, *, kind: str = "ok") -> Response:
    response = RedirectResponse(to, status_code=303)
    set_flash(response, console.secret, kind=kind, message=message)
    return response


def _change(console: Console, db: Session, csrf: str | None, back: str, work: Callable[[], str]) -> Response:
    """Check the CSRF token, run ``work`` (which returns the success message) and redirect
    back; a refusal is shown on the page it came from. ``work`` runs in a savepoint, so a
    refusal half-way (a group created, then its identifier taken) leaves nothing behind."""
    check_csrf(console.secret, console.request, csrf)
    try:
        with db.begin_nested():
            message = work()
    except TransomError as exc:
        return _done(console, back, exc.message, kind="error")
    return _done(console, back, message)


# -- assets and home ----------------------------------------------------------------------------


@router.get("/static/{name}")
def static(name: str) -> Response:
    if name not in ("admin.css", "admin.js"):
        raise NotFound("no such asset")
    media = "text/css" if name.endswith(".css") else "text/javascript"
    return FileResponse(STATIC / name, media_type=media, headers={"cache-control": "max-age=300"})


@router.get("")
def console_home(request: Request, runtime: RuntimeDep, db: DbSession) -> Response:
    _console(request, runtime, db)
    return RedirectResponse("/admin/users", status_code=303)


# -- users ----------------------------------------------------------------------------------------


@router.get("/users")
def users_page(
    request: Request, runtime: RuntimeDep, db: DbSession,
    q: Annotated[str | None, Query(max_length=320)] = None,
    status: Annotated[str | None, Query(max_length=20)] = None,
    connector: Annotated[str | None, Query(max_length=63)] = None,
) -> Response:
    c = _console(request, runtime, db)
    status = status or None
    if status not in (None, *admin_service.STATUSES):
        status = None
    users = admin_service.search_users(db, account=c.account, q=q, status=status, connector=connector or None)
    return _page(c, "admin_users.html", "users", users=users, q=q or "", status=status or "",
                 connector=connector or "", statuses=admin_service.STATUSES,
                 connectors=runtime.connectors_of_account(c.account.name))


@router.get("/users/{user_id}")
def user_page(user_id: str, request: Request, runtime: RuntimeDep, db: DbSession) -> Response:
    c = _console(request, runtime, db)
    user = admin_service.get_user_by_id(db, account=c.account, user_id=user_id)
    detail = admin_service.user_detail(db, account=c.account, user=user)
    member_of = set(db.scalars(select(GroupMembership.group_id).where(
        GroupMembership.account_id == c.account.id, GroupMembership.user_id == user.id)))
    groups = list(db.scalars(select(Group).where(Group.account_id == c.account.id).order_by(Group.name_key)))
    synced = user_is_group_synced(db, user=user, connectors=runtime.connectors_of_account(c.account.name))
    attempts = login_activity.list_attempts(db, account_id=c.account.id, user_id=user.id, limit=10)
    return _page(c, "admin_user.html", "users", user=user, detail=detail, synced=synced,
                 groups_by_name={g.name: g for g in groups},
                 addable=[g for g in groups if g.id not in member_of and not (synced and g.idp_identifier)],
                 attempts=[login_activity.attempt_json(a) for a in attempts])


@router.post("/users/{user_id}/active")
def user_set_active(
    user_id: str, request: Request, runtime: RuntimeDep, db: DbSession,
    active: Annotated[str, Form(max_length=5)], csrf: Annotated[str | None, Form(max_length=200)] = None,
) -> Response:
    c = _console(request, runtime, db)
    user = admin_service.get_user_by_id(db, account=c.account, user_id=user_id)
    want = active == "true"

    def work() -> str:
        admin_service.set_user_active(db, account=c.account, user=user, active=want, actor=c.actor)
        return f"{user.user_name} is now {user.status}"

    return _change(c, db, csrf, f"/admin/users/{user.id}", work)


@router.post("/users/{user_id}/groups")
def user_group_membership(
    user_id: str, request: Request, runtime: RuntimeDep, db: DbSession,
    group_id: Annotated[str, Form(max_length=32)], action: Annotated[str, Form(max_length=10)],
    back: Annotated[str, Form(max_length=200)] = "", csrf: Annotated[str | None, Form(max_length=200)] = None,
) -> Response:
    """Add or remove a manual membership; refused (with the reason) when the IdP owns it.
    ``back``: the console page to return to (the user's or the group's)."""
    c = _console(request, runtime, db)
    user = admin_service.get_user_by_id(db, account=c.account, user_id=user_id)

    def work() -> str:
        group = admin_service.get_group_by_id(db, account=c.account, group_id=group_id)
        owned = user_is_group_synced(db, user=user, connectors=runtime.connectors_of_account(c.account.name))
        if action == "remove":
            directory.remove_group_member(db, account=c.account, group=group, user=user, actor=c.actor,
                                          idp_owned=owned)
            return f"{user.user_name} removed from {group.name}"
        directory.add_group_member(db, account=c.account, group=group, user=user, actor=c.actor, idp_owned=owned)
        return f"{user.user_name} added to {group.name}"

    return _change(c, db, csrf, back if back.startswith("/admin/") else f"/admin/users/{user.id}", work)


# -- groups ---------------------------------------------------------------------------------------


def _groups_with_counts(db: Session, account: Account) -> list[dict[str, Any]]:
    from transom.web.admin_routes import list_groups
    from transom.web.deps import AdminPrincipal

    return [g.model_dump() for g in list_groups(db, AdminPrincipal(account_id=account.id, actor=""))]


@router.get("/groups")
def groups_page(request: Request, runtime: RuntimeDep, db: DbSession) -> Response:
    c = _console(request, runtime, db)
    return _page(c, "admin_groups.html", "groups", groups=_groups_with_counts(db, c.account))


@router.post("/groups")
def group_create(
    request: Request, runtime: RuntimeDep, db: DbSession,
    name: Annotated[str, Form(max_length=200)], idp_identifier: Annotated[str, Form(max_length=512)] = "",
    csrf: Annotated[str | None, Form(max_length=200)] = None,
) -> Response:
    c = _console(request, runtime, db)

    def work() -> str:
        group = directory.create_group(db, account=c.account, name=name)
        if idp_identifier.strip():
            directory.set_group_idp_identifier(db, account=c.account, group=group, idp_identifier=idp_identifier,
                                               actor=c.actor)
        return f"group {group.name} created"

    return _change(c, db, csrf, "/admin/groups", work)


@router.get("/groups/{group_id}")
def group_page(group_id: str, request: Request, runtime: RuntimeDep, db: DbSession) -> Response:
    c = _console(request, runtime, db)
    group = admin_service.get_group_by_id(db, account=c.account, group_id=group_id)
    members = directory.group_members(db, account=c.account, group=group)
    return _page(c, "admin_group.html", "groups", group=group, members=members)


@router.post("/groups/{group_id}/idp-identifier")
def group_set_identifier(
    group_id: str, request: Request, runtime: RuntimeDep, db: DbSession,
    idp_identifier: Annotated[str, Form(max_length=512)] = "", back: Annotated[str, Form(max_length=200)] = "",
    csrf: Annotated[str | None, Form(max_length=200)] = None,
) -> Response:
    """An empty identifier clears the mapping (its IdP-owned memberships become manual)."""
    c = _console(request, runtime, db)
    group = admin_service.get_group_by_id(db, account=c.account, group_id=group_id)

    def work() -> str:
        directory.set_group_idp_identifier(db, account=c.account, group=group,
                                           idp_identifier=idp_identifier or None, actor=c.actor)
        if group.idp_identifier:
            return f"group {group.name} is mapped to IdP group {group.idp_identifier}"
        return f"group {group.name} is no longer mapped to an IdP group"

    return _change(c, db, csrf, back if back.startswith("/admin/") else "/admin/groups", work)


@router.post("/groups/{group_id}/name")
def group_rename(
    group_id: str, request: Request, runtime: RuntimeDep, db: DbSession,
    name: Annotated[str, Form(max_length=200)], csrf: Annotated[str | None, Form(max_length=200)] = None,
) -> Response:
    c = _console(request, runtime, db)
    group = admin_service.get_group_by_id(db, account=c.account, group_id=group_id)

    def work() -> str:
        old = group.name
        admin_service.rename_group(db, account=c.account, group=group, name=name, actor=c.actor)
        return f"group {old} renamed to {group.name}"

    return _change(c, db, csrf, f"/admin/groups/{group.id}", work)


# -- spaces and roles -----------------------------------------------------------------------------


@router.get("/spaces")
def spaces_page(request: Request, runtime: RuntimeDep, db: DbSession) -> Response:
    c = _console(request, runtime, db)
    return _page(c, "admin_spaces.html", "spaces", spaces=admin_service.spaces_with_counts(db, account=c.account),
                 roles=directory.list_roles(db, account=c.account))


@router.post("/spaces")
def space_create(
    request: Request, runtime: RuntimeDep, db: DbSession,
    name: Annotated[str, Form(max_length=200)], csrf: Annotated[str | None, Form(max_length=200)] = None,
) -> Response:
    from transom import audit

    c = _console(request, runtime, db)

    def work() -> str:
        space = directory.create_space(db, account=c.account, name=name)
        audit.record(db, account_id=c.account.id, actor=c.actor, action="space.created", details={"space": space.name})
        return f"space {space.name} created"

    return _change(c, db, csrf, "/admin/spaces", work)


# -- API tokens -----------------------------------------------------------------------------------


@router.get("/tokens")
def tokens_page(request: Request, runtime: RuntimeDep, db: DbSession) -> Response:
    c = _console(request, runtime, db)
    return _tokens(c, db, created=None)


def _tokens(c: Console, db: Session, *, created: dict[str, Any] | None) -> Response:
    rows = [tokens.token_json(t) for t in tokens.list_tokens(db, account=c.account)]
    return _page(c, "admin_tokens.html", "tokens", tokens=rows, created=created, permissions=sorted(PERMISSIONS))


@router.post("/tokens")
def token_create(
    request: Request, runtime: RuntimeDep, db: DbSession,
    name: Annotated[str, Form(max_length=200)],
    permission: Annotated[list[str] | None, Form()] = None,
    csrf: Annotated[str | None, Form(max_length=200)] = None,
) -> Response:
    """Answers with the page itself (no redirect): the secret is in this one answer only."""
    c = _console(request, runtime, db)
    check_csrf(c.secret, request, csrf)
    try:
        secret = directory.create_token(db, account=c.account, permissions=list(permission or []), name=name,
                                        actor=c.actor)
    except TransomError as exc:
        return _done(c, "/admin/tokens", exc.message, kind="error")
    created = {**tokens.token_json(tokens.by_secret(db, secret=secret)), "secret": secret}
    return _tokens(c, db, created=created)


@router.post("/tokens/{token_id}/revoke")
def token_revoke(
    token_id: str, request: Request, runtime: RuntimeDep, db: DbSession,
    csrf: Annotated[str | None, Form(max_length=200)] = None,
) -> Response:
    c = _console(request, runtime, db)

    def work() -> str:
        row = tokens.revoke_token(db, account=c.account, token_id=token_id, actor=c.actor)
        return f"token {row.name} revoked: it is refused from now on"

    return _change(c, db, csrf, "/admin/tokens", work)


# -- login activity -------------------------------------------------------------------------------


@router.get("/logins")
def logins_page(
    request: Request, runtime: RuntimeDep, db: DbSession,
    connector: Annotated[str | None, Query(max_length=63)] = None,
    outcome: Annotated[str | None, Query(max_length=10)] = None,
) -> Response:
    c = _console(request, runtime, db)
    outcome = outcome if outcome in (login_activity.SUCCESS, login_activity.REFUSED) else None
    rows = login_activity.list_attempts(db, account_id=c.account.id, connector_id=connector or None,
                                        outcome=outcome, limit=200)
    return _page(c, "admin_logins.html", "logins", attempts=[login_activity.attempt_json(r) for r in rows],
                 connector=connector or "", outcome=outcome or "",
                 connectors=runtime.connectors_of_account(c.account.name),
                 retention=runtime.config.server.login_activity_retention_days)


@router.get("/logins/{attempt_id}")
def login_page(attempt_id: RowId, request: Request, runtime: RuntimeDep, db: DbSession) -> Response:
    c = _console(request, runtime, db)
    row = login_activity.get_attempt(db, account_id=c.account.id, attempt_id=attempt_id)
    if row is None:
        raise NotFound(f"no login attempt {attempt_id} in this account")
    return _page(c, "admin_login.html", "logins", attempt=login_activity.attempt_json(row, detail=True))


# -- connectors -----------------------------------------------------------------------------------


@router.get("/connectors")
def connectors_page(request: Request, runtime: RuntimeDep, db: DbSession) -> Response:
    c = _console(request, runtime, db)
    last = login_activity.last_by_connector(db, account_ids=[c.account.id])
    return _page(c, "admin_connectors.html", "connectors", connectors=runtime.connectors_of_account(c.account.name),
                 last=last, probe=None)


@router.post("/connectors/{connector_id}/check")
def connector_check(
    connector_id: str, request: Request, runtime: RuntimeDep, db: DbSession,
    csrf: Annotated[str | None, Form(max_length=200)] = None,
) -> Response:
    """"Check now": the probe of ``GET /api/admin/connectors/{id}/check`` and
    ``check-config --probe`` (transom.probe), run on demand and shown on the connectors page.
    Not run on every page view: it fetches from the IdP, seconds per connector when one is
    slow. A POST with the CSRF token, because it makes Transom call out; it changes nothing,
    so the page is rendered directly (no redirect)."""
    c = _console(request, runtime, db)
    check_csrf(c.secret, request, csrf)
    connector = runtime.config.connectors.get(connector_id)
    if connector is None or connector.account != c.account.name:
        raise NotFound(f"no connector '{connector_id}' signs in to this account")
    probe = probe_connector(runtime.plugins, runtime.http, connector,
                            clock_skew_seconds=runtime.config.server.clock_skew_seconds)
    last = login_activity.last_by_connector(db, account_ids=[c.account.id])
    return _page(c, "admin_connectors.html", "connectors", connectors=runtime.connectors_of_account(c.account.name),
                 last=last, probe=probe, checked_at=datetime.now(UTC))


@router.get("/connectors/{connector_id}")
def connector_page(connector_id: str, request: Request, runtime: RuntimeDep, db: DbSession) -> Response:
    c = _console(request, runtime, db)
    connector = runtime.config.connectors.get(connector_id)
    if connector is None or connector.account != c.account.name:
        raise NotFound(f"no connector '{connector_id}' signs in to this account")
    last = login_activity.last_by_connector(db, account_ids=[c.account.id])
    sheet = build_sheet(connector, base_url=runtime.config.server.base_url)
    return _page(c, "admin_connector.html", "connectors", connector=connector, sheet=sheet, last=last)


# -- audit log ------------------------------------------------------------------------------------


@router.get("/audit")
def audit_page(
    request: Request, runtime: RuntimeDep, db: DbSession,
    user: Annotated[str | None, Query(max_length=320)] = None,
    kind: Annotated[str | None, Query(max_length=100)] = None,
) -> Response:
    c = _console(request, runtime, db)
    message = None
    user_id = None
    if user and user.strip():
        found = directory.find_user(db, account=c.account, email_or_user_name=user)
        user_id = found.id if found is not None else user.strip()
        if found is None and db.scalar(select(User.id).where(User.account_id == c.account.id,
                                                             User.id == user_id)) is None:
            message = f"no user '{user}' in this account"
    events = [] if message else admin_service.audit_events(db, account=c.account, user_id=user_id, action=kind or None)
    # users named by the events, as subject or as actor ("user:<id>": an admin in the console)
    ids = {e.user_id for e in events if e.user_id} | {e.actor[5:] for e in events if e.actor.startswith("user:")}
    names = dict(db.execute(select(User.id, User.user_name).where(
        User.account_id == c.account.id, User.id.in_(ids))).all())
    return _page(c, "admin_audit.html", "audit", events=[admin_service.audit_json(e) for e in events],
                 user=user or "", kind=kind or "",
                 kinds=_kind_options(admin_service.audit_kinds(db, account=c.account)),
                 names=names, message=message)


def _kind_options(actions: list[str]) -> list[tuple[str, str]]:
    """Each kind ("group: every group event") followed by its actions."""
    options: list[tuple[str, str]] = []
    for kind in sorted({a.split(".")[0] for a in actions}):
        options.append((kind, f"{kind}: all"))
        options += [(a, f"  {a}") for a in actions if a.split(".")[0] == kind and a != kind]
    return options


def when(value: object) -> str:
    """"2026-12-01 21:59:02 UTC" from an ISO string or a datetime (naive ones are UTC)."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return str(value)
    if not isinstance(value, datetime):
        return "" if value is None else str(value)
    return login_activity.aware(value).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def claim_value(name: str, value: object) -> str:
    """A claim as text; Unix times get their date beside them."""
    if name in TIME_CLAIMS and isinstance(value, int) and not isinstance(value, bool):
        return f"{value} ({when(datetime.fromtimestamp(value, UTC))})"
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def as_json(value: object) -> str:
    """Audit details and change lists as compact JSON text (Jinja escapes it for HTML;
    ``tojson`` would show apostrophes as \\u0027)."""
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


templates.env.filters["when"] = when
templates.env.filters["as_json"] = as_json
templates.env.globals["claim_value"] = claim_value
