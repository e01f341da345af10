"""FastAPI dependencies, as ``Annotated`` aliases."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from transom.directory import authenticate_token
from transom.errors import Unauthorized
from transom.models import ApiToken, User
from transom.runtime import Runtime
from transom.sessions import COOKIE_NAME, session_user


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


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


AdminToken = Annotated[ApiToken, Depends(token_with("admin"))]
UsersToken = Annotated[ApiToken, Depends(token_with("manage-users"))]
