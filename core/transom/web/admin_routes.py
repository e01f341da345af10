"""Admin REST API (``/api/admin/...``): groups, their IdP identifiers and members.

Authenticated by an API token with the ``admin`` permission (``transom tokens create
--permission admin``) or the session of an Account Admin; every request acts on that
token's or user's own account. Reference:
docs/admin-api.md and the OpenAPI schema at ``/openapi.json``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Response, status
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from transom import directory
from transom.errors import BadRequest, NotFound
from transom.groups import user_is_group_synced
from transom.models import Account, Group, GroupMembership
from transom.web.deps import AdminAuth, AdminPrincipal, DbSession, RuntimeDep, api_rate_limit

router = APIRouter(prefix="/api/admin", tags=["admin"], dependencies=[Depends(api_rate_limit)])


class ErrorOut(BaseModel):
    error: str = Field(description="machine-readable code, e.g. `not_found`, `forbidden`")
    detail: str = Field(description="what went wrong, in words")
    hint: str | None = None
    reason: str | None = Field(default=None, description="which rule refused, where a refusal has layers "
                               "(e.g. `throttled_token`, `nul_character`); docs/security.md")


ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "missing or unknown API token"},
    403: {"model": ErrorOut, "description": "the token lacks the `admin` permission, or the IdP owns the membership"},
    404: {"model": ErrorOut, "description": "no such group or user in the token's account"},
    429: {"model": ErrorOut, "description": "the token's rate limit (`api_rate_limit`); wait `Retry-After` seconds"},
    503: {"model": ErrorOut, "description": "the database is unavailable; retry after `Retry-After` seconds"},
}


class GroupOut(BaseModel):
    id: str
    name: str
    idp_identifier: str | None = Field(
        description="the IdP's id for the group (Entra object id, Okta group name or id); "
        "null when the group is not mapped and group sync never touches it"
    )
    members: int = Field(description="number of members, whatever their source")


class GroupCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    idp_identifier: str | None = Field(default=None, max_length=512)


class IdpIdentifierIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    idp_identifier: str = Field(
        min_length=1,
        max_length=512,
        description="compared exactly as the IdP sends it; a GUID is stored lower-cased",
    )


class MemberOut(BaseModel):
    id: str
    user_name: str
    email: str | None
    status: str
    source: str = Field(description="`idp` when group sync owns the membership, else `manual`")


def _account(db: Session, token: AdminPrincipal) -> Account:
    account = db.scalar(select(Account).where(Account.id == token.account_id))
    if account is None:  # the account was deleted under a live token
        raise NotFound("the token's account no longer exists")
    return account


def _actor(token: AdminPrincipal) -> str:
    return token.actor


def _group_out(db: Session, group: Group) -> GroupOut:
    count = db.scalar(
        select(func.count())
        .select_from(GroupMembership)
        .where(GroupMembership.account_id == group.account_id, GroupMembership.group_id == group.id)
    )
    return GroupOut(id=group.id, name=group.name, idp_identifier=group.idp_identifier, members=count or 0)


@router.get("/groups", response_model=list[GroupOut], responses=ERRORS, summary="List groups")
def list_groups(db: DbSession, token: AdminAuth) -> list[GroupOut]:
    account = _account(db, token)
    counts = (
        select(GroupMembership.group_id, func.count().label("n"))
        .where(GroupMembership.account_id == account.id)
        .group_by(GroupMembership.group_id)
        .subquery()
    )
    rows = db.execute(
        select(Group, counts.c.n)
        .outerjoin(counts, counts.c.group_id == Group.id)
        .where(Group.account_id == account.id)
        .order_by(Group.name_key)
    )
    return [GroupOut(id=g.id, name=g.name, idp_identifier=g.idp_identifier, members=n or 0) for g, n in rows]


@router.post(
    "/groups",
    response_model=GroupOut,
    status_code=status.HTTP_201_CREATED,
    responses={**ERRORS, 409: {"model": ErrorOut, "description": "name or IdP identifier taken"}},
    summary="Create a group, optionally mapped to an IdP group",
)
def create_group(body: GroupCreate, db: DbSession, token: AdminAuth) -> GroupOut:
    account = _account(db, token)
    group = directory.create_group(db, account=account, name=body.name)
    if body.idp_identifier is not None:
        directory.set_group_idp_identifier(
            db, account=account, group=group, idp_identifier=body.idp_identifier, actor=_actor(token)
        )
    return _group_out(db, group)


@router.get("/groups/{group}", response_model=GroupOut, responses=ERRORS, summary="One group")
def get_group(group: str, db: DbSession, token: AdminAuth) -> GroupOut:
    account = _account(db, token)
    return _group_out(db, directory.get_group(db, account=account, name=group))


@router.put(
    "/groups/{group}/idp-identifier",
    response_model=GroupOut,
    responses={**ERRORS, 409: {"model": ErrorOut, "description": "another group has this identifier"}},
    summary="Map the group to an IdP group",
)
def set_idp_identifier(group: str, body: IdpIdentifierIn, db: DbSession, token: AdminAuth) -> GroupOut:
    """From the next login of each group-synced user on, membership of this group follows
    the IdP. Existing members keep their rows until then."""
    if not body.idp_identifier.strip():
        raise BadRequest("idp_identifier is blank; use DELETE to unmap the group")
    account = _account(db, token)
    grp = directory.get_group(db, account=account, name=group)
    directory.set_group_idp_identifier(
        db, account=account, group=grp, idp_identifier=body.idp_identifier, actor=_actor(token)
    )
    return _group_out(db, grp)


@router.delete("/groups/{group}/idp-identifier", response_model=GroupOut, responses=ERRORS, summary="Unmap the group")
def clear_idp_identifier(group: str, db: DbSession, token: AdminAuth) -> GroupOut:
    """Group sync stops touching the group; its IdP-owned memberships become manual."""
    account = _account(db, token)
    grp = directory.get_group(db, account=account, name=group)
    directory.set_group_idp_identifier(db, account=account, group=grp, idp_identifier=None, actor=_actor(token))
    return _group_out(db, grp)


@router.get(
    "/groups/{group}/members",
    response_model=list[MemberOut],
    responses=ERRORS,
    summary="Members of a group with the source of each membership",
)
def list_members(group: str, db: DbSession, token: AdminAuth) -> list[MemberOut]:
    account = _account(db, token)
    grp = directory.get_group(db, account=account, name=group)
    return [
        MemberOut(id=u.id, user_name=u.user_name, email=u.email, status=u.status, source=source)
        for u, source in directory.group_members(db, account=account, group=grp)
    ]


@router.post(
    "/groups/{group}/members/{user}",
    status_code=status.HTTP_201_CREATED,
    response_model=MemberOut,
    responses={**ERRORS, 409: {"model": ErrorOut, "description": "already a member"}},
    summary="Add a member by hand",
)
def add_member(group: str, user: str, db: DbSession, token: AdminAuth, runtime: RuntimeDep) -> MemberOut:
    """``user`` is the user name or email. Refused with 403 when the group is mapped and the
    user signs in through a connector with group sync: the IdP owns that membership."""
    account = _account(db, token)
    grp = directory.get_group(db, account=account, name=group)
    member = directory.get_user(db, account=account, email_or_user_name=user)
    owned = user_is_group_synced(db, user=member, connectors=runtime.connectors_of_account(account.name))
    directory.add_group_member(db, account=account, group=grp, user=member, actor=_actor(token), idp_owned=owned)
    return MemberOut(
        id=member.id, user_name=member.user_name, email=member.email, status=member.status, source="manual"
    )


@router.delete(
    "/groups/{group}/members/{user}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=ERRORS,
    summary="Remove a member by hand",
)
def remove_member(group: str, user: str, db: DbSession, token: AdminAuth, runtime: RuntimeDep) -> Response:
    """Refused with 403 when the IdP owns the membership (as for adding)."""
    account = _account(db, token)
    grp = directory.get_group(db, account=account, name=group)
    member = directory.get_user(db, account=account, email_or_user_name=user)
    owned = user_is_group_synced(db, user=member, connectors=runtime.connectors_of_account(account.name))
    directory.remove_group_member(db, account=account, group=grp, user=member, actor=_actor(token), idp_owned=owned)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
