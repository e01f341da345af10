"""SCIM user operations on the database: one function per SCIM write, each in the caller's
transaction, each scoped by account and each leaving an audit event.

Lifecycle (seed, "User provisioning with SCIM"; docs/scim.md):
* created through SCIM -> ``pending`` (no password; the first SSO login links and activates)
* ``active: false`` -> ``deprovisioned``: cannot log in, removed from the account's spaces
  and groups, browser sessions ended; still returned by SCIM with ``active: false``
* ``active: true`` -> ``active`` if the user has logged in before, else ``pending``
* DELETE -> the user row and everything hanging off it (identities, memberships, sessions,
  SCIM index) is deleted, and the user's audit events lose their details (names, e-mails).
"""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass
from typing import Any, Protocol, cast

from sqlalchemy import Table, bindparam, delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from transom import audit, directory
from transom.errors import BadRequest, NotFound, PreconditionFailed
from transom.models import (
    ROLE_SCOPE_ACCOUNT,
    USER_ACTIVE,
    USER_DEPROVISIONED,
    USER_PENDING,
    AuditEvent,
    GroupMembership,
    Role,
    ScimValue,
    SpaceMembership,
    User,
    new_id,
    utcnow,
)
from transom.scim.errors import InvalidValue, Mutability, Uniqueness
from transom.scim.filter import Expr
from transom.scim.patch import apply_patch
from transom.scim.query import SORTABLE, compile_filter
from transom.scim.resource import ACTIVE_UNASSIGNED, CleanUser, clean_user, etag, full_resource
from transom.scim.schema import USER_SCHEMA, attributes
from transom.sessions import end_user_sessions

_USERS: Table = User.__table__  # type: ignore[assignment]
#: the INSERT of a SCIM-created user, built once (building it cost as much as running it);
#: the account's member role is looked up inside the INSERT and returned
_INSERT_USER = _USERS.insert().values(account_role_id=select(Role.id).where(
    Role.account_id == bindparam("role_account_id"), Role.scope == ROLE_SCOPE_ACCOUNT,
    Role.name_key == directory.name_key(directory.ACCOUNT_MEMBER)).scalar_subquery(),
).returning(_USERS.c.account_role_id)


class AccountRef(Protocol):
    """What a SCIM caller's account is used for: its id scopes every statement, its name is in
    messages. The token check hands a Core row's ``TokenAccount``; the admin service an ORM
    ``Account``."""

    @property
    def id(self) -> str: ...

    @property
    def name(self) -> str: ...


@dataclass(frozen=True)
class Caller:
    account: AccountRef
    actor: str  # "scim:<token name>"


def get_user(db: Session, caller: Caller, user_id: str) -> User:
    user = db.scalar(select(User).where(User.account_id == caller.account.id, User.id == user_id))
    if user is None:
        raise NotFound(f"User {user_id[:64]} not found")
    return user


def check_if_match(user: User, if_match: str | None) -> None:
    """RFC 7644 §3.14: a write with ``If-Match`` only applies to that version."""
    if if_match is None:
        return
    wanted = {tag.strip() for tag in if_match.split(",")}
    current = etag(user)
    if "*" in wanted or current in wanted or current.removeprefix("W/") in wanted:
        return
    raise PreconditionFailed(f"the User has changed (current version {current})")


def create_user(db: Session, caller: Caller, body: dict[str, Any]) -> User:
    """The same row and audit event as ``directory.create_user``, written with Core INSERTs
    (the create path is SCIM's hot path; the ORM unit of work cost more than the SQL). No
    savepoint: a duplicate user name fails the whole request (409), so there is nothing in
    the transaction to keep. The returned ``User`` is not attached to the session."""
    clean = clean_user(body)
    if clean.user_name is None:
        raise InvalidValue("userName is required")
    user_name = clean.user_name.strip()
    if not user_name or len(user_name) > 320:
        raise BadRequest("user name must be 1-320 characters")
    account = caller.account
    profile = _profile(clean)
    email = profile["email"]
    status = USER_DEPROVISIONED if clean.active is False else USER_PENDING
    now = utcnow()
    row: dict[str, Any] = {
        "id": new_id(), "account_id": account.id, "user_name": user_name,
        "user_name_key": directory.user_name_key(user_name), "email": email,
        "email_key": email.casefold() if email else None, "display_name": profile["display_name"],
        "given_name": profile["given_name"], "family_name": profile["family_name"], "status": status,
        "password_hash": None, "external_id": clean.external_id,
        "scim_attributes": clean.attributes, "timezone": profile["timezone"], "first_login_at": None,
        "last_login_at": None, "version": 1, "created_at": now, "updated_at": now,
    }
    try:
        role_id = db.execute(_INSERT_USER, {**row, "role_account_id": account.id}).scalar_one()
    except IntegrityError:
        raise Uniqueness(f"userName '{user_name[:100]}' is already in use in this account") from None
    if role_id is None:  # the built-in role is never deleted; the transaction rolls back if it is
        raise NotFound(f"no {ROLE_SCOPE_ACCOUNT} role named '{directory.ACCOUNT_MEMBER}' in account '{account.name}'")
    user = User(**row, account_role_id=role_id)
    audit.record_now(db, account_id=account.id, actor=caller.actor, action="user.created", user_id=user.id,
                     details={"user_name": user_name, "status": status})
    _write_index(db, user, fresh=True)
    return user


def replace_user(db: Session, caller: Caller, user: User, body: dict[str, Any]) -> User:
    clean = clean_user(body)
    if clean.user_name is None:
        raise InvalidValue("userName is required")
    _store(db, caller, user, clean, action="user.replaced")
    return user


def patch_user(db: Session, caller: Caller, user: User, body: dict[str, Any]) -> User:
    patched = apply_patch(full_resource(user), body, resource_id=user.id)
    if not patched.get("userName"):
        raise Mutability("userName is required and cannot be removed")
    clean = clean_user(patched)
    if clean.active is None:
        # "remove active": the client stops asserting it; the status stays as it is and
        # the attribute is not rendered until a client sets it again
        clean.attributes[ACTIVE_UNASSIGNED] = True
    _store(db, caller, user, clean, action="user.patched")
    return user


def delete_user(db: Session, caller: Caller, user: User) -> None:
    account_id, user_id = caller.account.id, user.id
    db.execute(delete(User).where(User.account_id == account_id, User.id == user_id))
    # personal data: the user's audit trail keeps who/when/what, not names or e-mails
    db.execute(update(AuditEvent).where(AuditEvent.account_id == account_id, AuditEvent.user_id == user_id)
               .values(details=None))
    audit.record(db, account_id=account_id, actor=caller.actor, action="user.deleted", user_id=user_id)


def _store(db: Session, caller: Caller, user: User, clean: CleanUser, *, action: str) -> None:
    assert clean.user_name is not None
    changed_name = directory.user_name_key(clean.user_name) != user.user_name_key
    profile = _profile(clean)
    user.user_name = clean.user_name
    user.user_name_key = directory.user_name_key(clean.user_name)
    user.external_id = clean.external_id
    user.scim_attributes = clean.attributes
    user.email = profile["email"]
    user.email_key = profile["email"].casefold() if profile["email"] else None
    user.display_name = profile["display_name"]
    user.given_name = profile["given_name"]
    user.family_name = profile["family_name"]
    if profile["timezone"]:
        user.timezone = profile["timezone"]
    user.version += 1
    try:
        with db.begin_nested():
            db.flush()
    except IntegrityError:
        raise Uniqueness(f"userName '{clean.user_name[:100]}' is already in use in this account") from None
    _write_index(db, user)
    audit.record(db, account_id=caller.account.id, actor=caller.actor, action=action, user_id=user.id,
                 details={"user_name": user.user_name, "renamed": changed_name} if changed_name else None)
    if clean.active is not None:
        set_active(db, caller, user, clean.active)


def set_active(db: Session, caller: Caller, user: User, active: bool) -> None:
    if not active and user.status != USER_DEPROVISIONED:
        deprovision(db, caller, user)
    elif active and user.status == USER_DEPROVISIONED:
        user.status = USER_ACTIVE if user.first_login_at is not None else USER_PENDING
        audit.record(db, account_id=caller.account.id, actor=caller.actor, action="user.reactivated",
                     user_id=user.id, details={"status": user.status})


def deprovision(db: Session, caller: Caller, user: User) -> None:
    account_id = caller.account.id
    spaces = db.execute(delete(SpaceMembership).where(
        SpaceMembership.account_id == account_id, SpaceMembership.user_id == user.id)).rowcount  # type: ignore[attr-defined]
    groups = db.execute(delete(GroupMembership).where(
        GroupMembership.account_id == account_id, GroupMembership.user_id == user.id)).rowcount  # type: ignore[attr-defined]
    end_user_sessions(db, account_id=account_id, user_id=user.id)
    user.status = USER_DEPROVISIONED
    audit.record(db, account_id=account_id, actor=caller.actor, action="user.deprovisioned", user_id=user.id,
                 details={"spaces_removed": spaces, "groups_removed": groups})


def _profile(clean: CleanUser) -> dict[str, str | None]:
    """The Transom profile columns a SCIM representation implies."""
    attrs = clean.attributes
    emails = [e for e in attrs.get("emails", []) if isinstance(e, dict) and e.get("value")]
    chosen = (next((e for e in emails if e.get("primary") is True), None)
              or next((e for e in emails if str(e.get("type", "")).lower() == "work"), None)
              or (emails[0] if emails else None))
    name = attrs.get("name", {})
    given, family = name.get("givenName"), name.get("familyName")
    display = attrs.get("displayName") or name.get("formatted") or (" ".join(p for p in (given, family) if p) or None)
    return {
        "email": chosen["value"][:320] if chosen else None,
        "display_name": display[:300] if display else None,
        "given_name": given[:200] if given else None,
        "family_name": family[:200] if family else None,
        "timezone": _valid_timezone(attrs.get("timezone")),
    }


def _valid_timezone(value: Any) -> str | None:
    if not isinstance(value, str) or not value or len(value) > 64:
        return None
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return None
    return value


def _write_index(db: Session, user: User, *, fresh: bool = False) -> None:
    """Rewrite the user's rows in ``scim_values`` (Core statements: the ORM's bulk paths
    cost more than the SQL itself here)."""
    from transom.scim.resource import index_rows

    table = cast(Table, ScimValue.__table__)
    if not fresh:
        db.execute(table.delete().where(table.c.account_id == user.account_id, table.c.user_id == user.id))
    rows = [
        {"account_id": user.account_id, "user_id": user.id, "attribute": a, "entry": e, "sub_attribute": s, "value": v}
        for a, e, s, v in index_rows(user.scim_attributes or {})
    ]
    if rows:
        db.execute(table.insert(), rows)


# -- queries ----------------------------------------------------------------------------


def list_users(db: Session, caller: Caller, *, flt: Expr | None, start_index: int, count: int,
               sort_by: str | None, descending: bool) -> tuple[int, list[User]]:
    condition = [User.account_id == caller.account.id]
    if flt is not None:
        condition.append(compile_filter(flt, account_id=caller.account.id))
    if count == 0:
        return _count(db, condition), []
    order: list[Any] = []
    if sort_by:
        column = SORTABLE.get(sort_by.lower().removeprefix(USER_SCHEMA.lower() + ":"))
        if column is None:
            raise InvalidValue(f"cannot sort by '{sort_by[:100]}'; sortable: userName, externalId, id, "
                               "displayName, name.givenName, name.familyName, emails.value, meta.created, "
                               "meta.lastModified")
        order.append(column.desc() if descending else column.asc())
    order += [User.created_at, User.id]
    users = list(db.scalars(select(User).where(*condition).order_by(*order).offset(start_index - 1).limit(count)))
    if start_index == 1 and len(users) < count:
        return len(users), users  # the whole result is on this page: no COUNT query needed
    return _count(db, condition), users


def _count(db: Session, condition: list[Any]) -> int:
    return db.scalar(select(func.count()).select_from(User).where(*condition)) or 0


__all__ = ["Caller", "attributes"]
