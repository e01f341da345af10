"""Password login, logout, the current user and the login/home pages."""

from __future__ import annotations

import logging
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from transom import audit, throttle
from transom.connector import Connector
from transom.directory import find_user, get_account, user_json
from transom.errors import BadRequest, LoginRefused, NotFound
from transom.login import LoginResult
from transom.models import USER_DEPROVISIONED, User, utcnow
from transom.security import verify_password
from transom.sessions import COOKIE_NAME, end_session, session_user, start_session
from transom.web.deps import CurrentUser, DbSession, RuntimeDep, session_secret
from transom.web.paths import safe_next
from transom.web.templates import templates

log = logging.getLogger("transom.login")
router = APIRouter()


def set_session_cookie(response: Response, runtime: RuntimeDep, value: str) -> None:
    response.set_cookie(
        COOKIE_NAME,
        value,
        max_age=runtime.config.server.session_max_age_seconds,
        httponly=True,
        samesite="lax",
        secure=runtime.config.server.cookies_secure,
        path="/",
    )


def login_redirect(
    runtime: RuntimeDep, db: DbSession, *, user: User, connector_id: str | None, next_path: str | None
) -> Response:
    """Start a session for ``user`` (password login) and answer 303 to ``next``."""
    cookie = start_session(
        db, user=user, secret=session_secret(runtime),
        max_age_seconds=runtime.config.server.session_max_age_seconds, connector_id=connector_id,
    )
    response = RedirectResponse(safe_next(next_path), status_code=303)
    set_session_cookie(response, runtime, cookie)
    return response


def session_redirect(runtime: RuntimeDep, result: LoginResult) -> Response:
    """The answer to a completed SSO login: its session cookie and a 303 to ``next``."""
    assert result.session_cookie is not None  # complete_login started the session
    response = RedirectResponse(safe_next(result.next_path), status_code=303)
    set_session_cookie(response, runtime, result.session_cookie)
    return response


class PasswordLogin(BaseModel):
    email: str
    password: str
    account: str
    next: str | None = None


async def _password_form(request: Request) -> PasswordLogin:
    ctype = request.headers.get("content-type", "")
    try:
        if ctype.startswith("application/json"):
            data: Any = await request.json()
        else:
            data = dict(await request.form())
        return PasswordLogin.model_validate(data)
    except Exception as exc:
        raise BadRequest("send email, password and account as a form or JSON") from exc


@router.post("/api/accounts/login")
async def password_login(request: Request, runtime: RuntimeDep) -> Response:
    form = await _password_form(request)
    address = request.client.host if request.client else "unknown"
    # The database work is synchronous; run it in the thread pool like sync endpoints.
    return await run_in_threadpool(_password_login, runtime, form, address)


def _password_login(runtime: RuntimeDep, form: PasswordLogin, address: str) -> Response:
    # counted before the password is checked: a throttled guess costs no Argon2 hash
    throttle.password_attempt(runtime.db, runtime.config.server, account=form.account, email=form.email,
                              address=address)
    refused = LoginRefused("wrong email, password or account")
    with runtime.db.transaction() as db:
        try:
            account = get_account(db, name=form.account.strip())
        except NotFound:
            verify_password(None, form.password)
            raise refused from None
        user = find_user(db, account=account, email_or_user_name=form.email)
        ok = verify_password(user.password_hash if user else None, form.password)
        if user is None or not ok:
            raise refused
        if user.status == USER_DEPROVISIONED:
            raise LoginRefused("this user has been deprovisioned and cannot sign in")
        user.last_login_at = utcnow()
        audit.record(db, account_id=account.id, actor=f"user:{user.id}", action="login.password", user_id=user.id)
        log.info("password login account=%s user=%s", account.name, user.id)
        return login_redirect(runtime, db, user=user, connector_id=None, next_path=form.next)


@router.post("/api/accounts/logout")
def logout(request: Request, runtime: RuntimeDep, db: DbSession) -> Response:
    end_session(db, cookie=request.cookies.get(COOKIE_NAME), secret=session_secret(runtime))
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE_NAME, path="/")
    return response


@router.get("/api/me")
def me(user: CurrentUser, db: DbSession) -> dict[str, Any]:
    return user_json(db, user=user)


@router.get("/")
def home(request: Request, runtime: RuntimeDep, db: DbSession) -> Response:
    user = session_user(db, cookie=request.cookies.get(COOKIE_NAME), secret=session_secret(runtime))
    return templates.TemplateResponse(request, "home.html", {"user": user_json(db, user=user) if user else None})


def connectors_for_email(connectors: list[Connector], email: str) -> list[Connector]:
    """Home-realm discovery: the connectors whose ``email_domains`` claim the email's domain."""
    domain = email.strip().rpartition("@")[2].lower()
    return [c for c in connectors if domain and domain in c.email_domains]


@router.get("/login")
def login_page(
    request: Request,
    runtime: RuntimeDep,
    email: Annotated[str | None, Query(max_length=320)] = None,
    next: Annotated[str | None, Query(max_length=2000)] = None,
    use: Annotated[str | None, Query(max_length=20)] = None,
) -> Response:
    """Step one asks for the work email. An email whose domain exactly one connector claims
    goes straight to that IdP; several give their buttons; none (or ``use=password``) gives
    the password form, with the account filled in when the email's domain names one."""
    # "/" is where a login lands anyway; off-site values come back from safe_next as "/"
    next_path = safe_next(next) if next else None
    if next_path == "/":
        next_path = None
    all_connectors = list(runtime.config.connectors.values())
    email = (email or "").strip() or None
    want_password = use == "password"
    message = None
    routed: list[Connector] = []
    if email and "@" not in email:
        message = "Enter your full work email address, for example ada@example.com."
        email = None
    elif email:
        routed = connectors_for_email(all_connectors, email)
        if len(routed) == 1 and not want_password:
            target = f"/api/accounts/login/{routed[0].id}"
            if next_path:
                target += "?" + urlencode({"next": next_path})
            return RedirectResponse(target, status_code=303)
        if not routed and not want_password:
            domain = email.rpartition("@")[2]
            message = (
                f"No single sign-on is set up for {domain}. Sign in with your password, "
                "or ask your administrator how your organisation signs in."
            )
    show_password = want_password or (bool(email) and not routed) or not all_connectors
    accounts = sorted({c.account for c in routed})
    return templates.TemplateResponse(
        request,
        "login.html",
        {
            "connectors": routed or all_connectors,
            "routed": bool(routed),
            "email": email,
            "next": next_path,
            "show_password": show_password,
            "message": message,
            # the email's domain names the account; the field stays editable
            "account": accounts[0] if len(accounts) == 1 else None,
        },
    )
