"""Admin REST API beyond groups: API tokens, login activity, users, spaces and roles, the
audit log. Same authentication and scope as ``admin_routes`` (an ``admin`` token or an
Account Admin's session; the caller's own account only). Reference: docs/admin-api.md."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response, status
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from transom import admin_service, audit, directory, login_activity, tokens
from transom.errors import NotFound
from transom.models import Account
from transom.web.admin_routes import ERRORS, ErrorOut, GroupOut, _account, _group_out
from transom.web.deps import AdminAuth, AdminPrincipal, DbSession, RowId

router = APIRouter(prefix="/api/admin", tags=["admin"])


# -- API tokens -------------------------------------------------------------------------------


class TokenOut(BaseModel):
    id: str
    name: str
    permissions: list[str] = Field(description="`manage-users` (SCIM) and/or `admin`")
    created_at: str
    last_used_at: str | None = Field(description="updated at most once a minute; null when never used")


class TokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    permissions: list[str] = Field(min_length=1, max_length=2)


class TokenCreated(TokenOut):
    token: str = Field(description="the secret: shown in this answer only, stored as a SHA-256 digest")


@router.get("/tokens", response_model=list[TokenOut], responses=ERRORS, summary="List API tokens (never a secret)")
def list_tokens(db: DbSession, principal: AdminAuth) -> list[dict[str, Any]]:
    account = _account(db, principal)
    return [tokens.token_json(t) for t in tokens.list_tokens(db, account=account)]


@router.post("/tokens", response_model=TokenCreated, status_code=status.HTTP_201_CREATED, responses=ERRORS,
             summary="Create an API token; the secret is in this answer only")
def create_token(body: TokenCreate, db: DbSession, principal: AdminAuth) -> dict[str, Any]:
    account = _account(db, principal)
    secret = directory.create_token(db, account=account, permissions=body.permissions, name=body.name,
                                    actor=principal.actor)
    return {**tokens.token_json(tokens.by_secret(db, secret=secret)), "token": secret}


@router.delete("/tokens/{token_id}", status_code=status.HTTP_204_NO_CONTENT, responses=ERRORS,
               summary="Revoke an API token at once, on every worker")
def revoke_token(token_id: str, db: DbSession, principal: AdminAuth) -> Response:
    """The token's row is deleted; every request presenting it from now on gets 401 (tokens
    are looked up in the database on every request, on every worker)."""
    account = _account(db, principal)
    tokens.revoke_token(db, account=account, token_id=token_id, actor=principal.actor)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# -- login activity ---------------------------------------------------------------------------


class LoginOut(BaseModel):
    id: int
    at: str
    connector: str
    protocol: str
    outcome: str = Field(description="`success` or `refused`")
    user_id: str | None = Field(description="the Transom user, when the login got that far")
    user: str | None = Field(description="who the IdP said it was: user name, email, NameID or subject")
    code: str | None = Field(description="error code of a refusal, e.g. `login_refused`")
    reason: str | None = Field(description="why the login was refused, as the person was told")
    hint: str | None = Field(description="what the IdP admin should change")
    warnings: list[str] = Field(description="what a successful login could not apply (unknown space, invalid "
                                "timezone, absent groups claim, overage...)")


class LoginDetailOut(LoginOut):
    received: dict[str, Any] | None = Field(
        description="what the IdP sent, verified and decoded: `{claims}` (OIDC) or `{name_id, name_id_format, "
        "issuer, attributes}` (SAML); null when verification failed. Never a raw token or assertion.")
    changes: dict[str, Any] | None = Field(
        description="what the login changed: `{created, changes: [{action, details}], notes}`")


@router.get("/logins", response_model=list[LoginOut], responses=ERRORS, summary="Login activity, newest first")
def list_logins(
    db: DbSession, principal: AdminAuth,
    connector: Annotated[str | None, Query(max_length=63, description="only this connector")] = None,
    outcome: Annotated[str | None, Query(pattern="^(success|refused)$")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[dict[str, Any]]:
    account = _account(db, principal)
    rows = login_activity.list_attempts(db, account_id=account.id, connector_id=connector, outcome=outcome,
                                        limit=limit)
    return [login_activity.attempt_json(r) for r in rows]


@router.get("/logins/{attempt_id}", response_model=LoginDetailOut, responses=ERRORS,
            summary="One login attempt with what the IdP sent and what it changed")
def get_login(attempt_id: RowId, db: DbSession, principal: AdminAuth) -> dict[str, Any]:
    account = _account(db, principal)
    row = login_activity.get_attempt(db, account_id=account.id, attempt_id=attempt_id)
    if row is None:
        raise NotFound(f"no login attempt {attempt_id} in this account")
    return login_activity.attempt_json(row, detail=True)


# -- users ------------------------------------------------------------------------------------


class UserOut(BaseModel):
    id: str
    user_name: str
    email: str | None
    display_name: str | None
    status: str = Field(description="`pending`, `active` or `deprovisioned`")
    account_role: str | None
    last_login_at: str | None


@router.get("/users", response_model=list[UserOut], responses=ERRORS, summary="Find users")
def list_users(
    db: DbSession, principal: AdminAuth,
    q: Annotated[str | None, Query(max_length=320, description="part of the user name, email or display name")] = None,
    status_: Annotated[str | None, Query(alias="status", pattern="^(pending|active|deprovisioned)$")] = None,
    connector: Annotated[str | None, Query(max_length=63, description="users with an identity there")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 200,
) -> list[dict[str, Any]]:
    account = _account(db, principal)
    users = admin_service.search_users(db, account=account, q=q, status=status_, connector=connector, limit=limit)
    return [admin_service.user_summary(u) for u in users]


@router.get("/users/{user_id}", responses=ERRORS,
            summary="One user: identities, spaces and roles, groups with source, recent audit events")
def get_user(user_id: str, db: DbSession, principal: AdminAuth) -> dict[str, Any]:
    account = _account(db, principal)
    user = admin_service.get_user_by_id(db, account=account, user_id=user_id)
    return admin_service.user_detail(db, account=account, user=user)


@router.post("/users/{user_id}/deactivate", response_model=UserOut, responses=ERRORS,
             summary="Deactivate (as SCIM active=false): sessions end, memberships go")
def deactivate_user(user_id: str, db: DbSession, principal: AdminAuth) -> dict[str, Any]:
    return _set_active(db, principal, user_id, active=False)


@router.post("/users/{user_id}/reactivate", response_model=UserOut, responses=ERRORS,
             summary="Reactivate (as SCIM active=true)")
def reactivate_user(user_id: str, db: DbSession, principal: AdminAuth) -> dict[str, Any]:
    return _set_active(db, principal, user_id, active=True)


def _set_active(db: Session, principal: AdminPrincipal, user_id: str, *, active: bool) -> dict[str, Any]:
    account = _account(db, principal)
    user = admin_service.get_user_by_id(db, account=account, user_id=user_id)
    admin_service.set_user_active(db, account=account, user=user, active=active, actor=principal.actor)
    return admin_service.user_summary(user)


# -- groups: rename ---------------------------------------------------------------------------


class GroupRename(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)


@router.patch("/groups/{group}", response_model=GroupOut,
              responses={**ERRORS, 409: {"model": ErrorOut, "description": "name taken"}}, summary="Rename a group")
def rename_group(group: str, body: GroupRename, db: DbSession, principal: AdminAuth) -> GroupOut:
    account = _account(db, principal)
    grp = directory.get_group(db, account=account, name=group)
    admin_service.rename_group(db, account=account, group=grp, name=body.name, actor=principal.actor)
    return _group_out(db, grp)


# -- spaces and roles -------------------------------------------------------------------------


class SpaceOut(BaseModel):
    id: str
    name: str
    members: int


class SpaceCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)


class RoleOut(BaseModel):
    id: str
    scope: str = Field(description="`space` or `account`")
    name: str


@router.get("/spaces", response_model=list[SpaceOut], responses=ERRORS, summary="List spaces")
def list_spaces(db: DbSession, principal: AdminAuth) -> list[SpaceOut]:
    account = _account(db, principal)
    return [SpaceOut(id=s.id, name=s.name, members=n) for s, n in admin_service.spaces_with_counts(db, account=account)]


@router.post("/spaces", response_model=SpaceOut, status_code=status.HTTP_201_CREATED,
             responses={**ERRORS, 409: {"model": ErrorOut, "description": "name taken"}}, summary="Create a space")
def create_space(body: SpaceCreate, db: DbSession, principal: AdminAuth) -> SpaceOut:
    account = _account(db, principal)
    space = directory.create_space(db, account=account, name=body.name)
    audit.record(db, account_id=account.id, actor=principal.actor, action="space.created",
                 details={"space": space.name})
    return SpaceOut(id=space.id, name=space.name, members=0)


@router.get("/roles", response_model=list[RoleOut], responses=ERRORS, summary="List roles")
def list_roles(db: DbSession, principal: AdminAuth) -> list[RoleOut]:
    account = _account(db, principal)
    return [RoleOut(id=r.id, scope=r.scope, name=r.name) for r in directory.list_roles(db, account=account)]


# -- audit log --------------------------------------------------------------------------------


class AuditOut(BaseModel):
    id: int
    at: str
    actor: str
    action: str
    user_id: str | None
    connector: str | None
    details: dict[str, Any] | None


@router.get("/audit", response_model=list[AuditOut], responses=ERRORS, summary="Audit events, newest first")
def list_audit(
    db: DbSession, principal: AdminAuth,
    user: Annotated[str | None, Query(max_length=320, description="user id, user name or email")] = None,
    kind: Annotated[str | None, Query(max_length=100, description="an action (`group.synced`) or a kind (`group`)")]
    = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 200,
) -> list[dict[str, Any]]:
    account = _account(db, principal)
    user_id = resolve_user_id(db, account, user) if user else None
    events = admin_service.audit_events(db, account=account, user_id=user_id, action=kind, limit=limit)
    return [admin_service.audit_json(e) for e in events]


def resolve_user_id(db: Session, account: Account, user: str) -> str:
    """A user name or email first, else a user id."""
    found = directory.find_user(db, account=account, email_or_user_name=user)
    if found is not None:
        return found.id
    return admin_service.get_user_by_id(db, account=account, user_id=user.strip()).id
