"""FastAPI dependencies, as ``Annotated`` aliases."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Path, Request
from sqlalchemy.orm import Session

from transom import throttle
from transom.directory import ACCOUNT_ADMIN, authenticate_token, name_key
from transom.errors import Forbidden, Unauthorized
from transom.models import ApiToken, User
from transom.runtime import Runtime
from transom.sessions import COOKIE_NAME, session_user


def runtime_of(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


async def get_runtime(request: Request) -> Runtime:
    # async: a sync dependency costs a thread-pool round trip per request for one attribute read
    return runtime_of(request)


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]

#: an integer row id in a path: bounded to a 64-bit key, so an oversized number is a 400
#: (validation), never an OverflowError from the database driver
RowId = Annotated[int, Path(ge=1, le=2**63 - 1)]


def get_db(runtime: RuntimeDep) -> Iterator[Session]:
    """One transaction per request: committed when the endpoint returns normally."""
    with runtime.db.transaction() as session:
        yield session


DbSession = Annotated[Session, Depends(get_db)]


def session_secret(runtime: Runtime) -> str:
    secret = runtime.config.server.session_secret
    assert secret is not None  # guaranteed by app creation
    return secret.get_secret_value()


def get_current_user(request: Request, runtime: RuntimeDep, db: DbSession) -> User:
    user = session_user(db, cookie=request.cookies.get(COOKIE_NAME), secret=session_secret(runtime))
    if user is None:
        raise Unauthorized("not logged in")
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]


def bearer_token(request: Request) -> str:
    """``Authorization: Bearer <t>`` or a bare ``<t>`` (Okta's HTTP-header mode, and admins
    who paste the token without the word)."""
    header = request.headers.get("authorization", "").strip()
    if not header:
        raise Unauthorized("missing API token: send Authorization: Bearer <token>")
    scheme, _, rest = header.partition(" ")
    token = rest.strip() if scheme.lower() == "bearer" else header
    if not token or " " in token:
        raise Unauthorized("malformed Authorization header")
    return token


def token_with(permission: str):  # type: ignore[no-untyped-def]
    def dependency(request: Request, db: DbSession) -> ApiToken:
        return authenticate_token(db, token=bearer_token(request), permission=permission)

    return dependency


@dataclass(frozen=True)
class AdminPrincipal:
    """Who calls the admin API: an API token with the ``admin`` permission, or a signed-in
    user whose account role is Account Admin. Either way, only their own account."""

    account_id: str
    actor: str


def get_admin(request: Request, runtime: RuntimeDep, db: DbSession) -> AdminPrincipal:
    if request.headers.get("authorization"):
        token = authenticate_token(db, token=bearer_token(request), permission="admin")
        return AdminPrincipal(account_id=token.account_id, actor=f"api:{token.name}")
    user = session_user(db, cookie=request.cookies.get(COOKIE_NAME), secret=session_secret(runtime))
    if user is None:
        raise Unauthorized("send an API token with the admin permission, or sign in as an Account Admin")
    # Session cookies are SameSite=Lax, so a cross-site form cannot reach these write endpoints
    # with the cookie attached.
    if user.account_role is None or user.account_role.name_key != name_key(ACCOUNT_ADMIN):
        raise Forbidden("only Account Admins may use the admin API")
    return AdminPrincipal(account_id=user.account_id, actor=f"user:{user.id}")


AdminAuth = Annotated[AdminPrincipal, Depends(get_admin)]
UsersToken = Annotated[ApiToken, Depends(token_with("manage-users"))]


def api_rate_limit(request: Request, runtime: RuntimeDep) -> None:
    """The per-token rate limit of the admin API (SCIM applies the same in its router): keyed
    by the bearer token, or by the session cookie of an Account Admin."""
    credential = request.headers.get("authorization") or request.cookies.get(COOKIE_NAME) or ""
    throttle.api_request(runtime.db, runtime.config.server, credential=credential)
