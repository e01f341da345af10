"""The directory: accounts, spaces, roles, groups, users and API tokens.

Service functions take the SQLAlchemy session first and everything else by keyword. Every
query is scoped by account. Errors are ``TransomError`` subclasses with a one-line message.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Connection, Table, bindparam, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.util import identity_key

from transom import audit
from transom.connector import Connector
from transom.db import core
from transom.errors import BadRequest, Conflict, Forbidden, LoginRefused, NotFound, Unauthorized
from transom.groups import canonical_group_id
from transom.models import (
    ROLE_SCOPE_ACCOUNT,
    ROLE_SCOPE_SPACE,
    SOURCE_IDP,
    SOURCE_MANUAL,
    USER_ACTIVE,
    Account,
    ApiToken,
    Group,
    GroupMembership,
    Role,
    Space,
    SpaceMembership,
    User,
    utcnow,
)
from transom.security import hash_password, new_api_token, token_digest
from transom.tokens import touch

DEFAULT_SPACE_ROLES = ("Space Admin", "Space Developer", "Space Member")
DEFAULT_ACCOUNT_ROLES = ("Account Admin", "Account Member")
SPACE_MEMBER = "Space Member"
ACCOUNT_MEMBER = "Account Member"
ACCOUNT_ADMIN = "Account Admin"
PERMISSIONS = frozenset({"manage-users", "admin"})
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def name_key(name: str) -> str:
    """How names of spaces, roles and groups are compared: trimmed, inner whitespace
    collapsed, case-folded."""
    return " ".join(name.split()).casefold()


def user_name_key(user_name: str) -> str:
    """The unique key of a user name: NFKC-normalised and case-folded, so that full-width
    or differently composed look-alikes of a name cannot become a second user."""
    return unicodedata.normalize("NFKC", user_name.strip()).casefold()


# -- accounts ---------------------------------------------------------------------------


def create_account(session: Session, *, name: str) -> Account:
    name = name.strip()
    if not name or len(name) > 100:
        raise BadRequest("account name must be 1-100 characters")
    if session.scalar(select(Account).where(Account.name == name)):
        raise Conflict(f"account '{name}' already exists")
    account = Account(name=name)
    session.add(account)
    session.flush()
    for role in DEFAULT_SPACE_ROLES:
        session.add(Role(account_id=account.id, scope=ROLE_SCOPE_SPACE, name=role, name_key=name_key(role)))
    for role in DEFAULT_ACCOUNT_ROLES:
        session.add(Role(account_id=account.id, scope=ROLE_SCOPE_ACCOUNT, name=role, name_key=name_key(role)))
    session.flush()
    audit.record(session, account_id=account.id, actor="cli", action="account.created")
    return account


_ACCOUNTS = cast(Table, Account.__table__)
#: built once (the login's first statement): constructing it cost more than running it
_ACCOUNT_ID_BY_NAME = select(_ACCOUNTS.c.id).where(_ACCOUNTS.c.name == bindparam("name"))


def connector_account_id(session: Session | Connection, *, connector: Connector) -> str:
    """The id of the account a connector logs users into, read with a prebuilt Core statement
    (no Account object); a missing account is a configuration mistake the IdP admin's page
    should name."""
    account_id: str | None = core(session).execute(_ACCOUNT_ID_BY_NAME, {"name": connector.account}).scalar()
    if account_id is None:
        raise LoginRefused(
            "this sign-in method is not set up correctly",
            hint=f"connector '{connector.id}' names account '{connector.account}', which does not exist",
        )
    return account_id


def get_account(session: Session, *, name: str) -> Account:
    account = session.scalar(select(Account).where(Account.name == name))
    if account is None:
        raise NotFound(f"no account named '{name}'")
    return account


# -- spaces and roles -------------------------------------------------------------------


def create_space(session: Session, *, account: Account, name: str) -> Space:
    clean = " ".join(name.split())
    if not clean or len(clean) > 200:
        raise BadRequest("space name must be 1-200 characters")
    key = name_key(clean)
    if session.scalar(select(Space).where(Space.account_id == account.id, Space.name_key == key)):
        raise Conflict(f"space '{clean}' already exists in account '{account.name}'")
    space = Space(account_id=account.id, name=clean, name_key=key)
    session.add(space)
    session.flush()
    return space


def list_spaces(session: Session, *, account: Account) -> list[Space]:
    return list(session.scalars(select(Space).where(Space.account_id == account.id).order_by(Space.name)))


def list_roles(session: Session, *, account: Account) -> list[Role]:
    return list(
        session.scalars(
            select(Role).where(Role.account_id == account.id).order_by(Role.scope.desc(), Role.name)
        )
    )


def get_role(session: Session, *, account: Account, scope: str, name: str) -> Role:
    role = session.scalar(
        select(Role).where(Role.account_id == account.id, Role.scope == scope, Role.name_key == name_key(name))
    )
    if role is None:
        raise NotFound(f"no {scope} role named '{name}' in account '{account.name}'")
    return role


# -- groups -----------------------------------------------------------------------------


def _clean_identifier(idp_identifier: str | None) -> str | None:
    # Compared exactly as the IdP sends it; only surrounding blanks (copy/paste) are dropped
    # and a GUID is lower-cased, as the sync does with received ids (docs/group-sync.md).

    if idp_identifier is None:
        return None
    value = idp_identifier.strip()
    return canonical_group_id(value) if value else None


def create_group(session: Session, *, account: Account, name: str, idp_identifier: str | None = None) -> Group:
    clean = " ".join(name.split())
    if not clean or len(clean) > 200:
        raise BadRequest("group name must be 1-200 characters")
    if session.scalar(select(Group).where(Group.account_id == account.id, Group.name_key == name_key(clean))):
        raise Conflict(f"group '{clean}' already exists in account '{account.name}'")
    group = Group(account_id=account.id, name=clean, name_key=name_key(clean))
    session.add(group)
    session.flush()
    if idp_identifier is not None:
        set_group_idp_identifier(session, account=account, group=group, idp_identifier=idp_identifier, actor="cli")
    return group


def get_group(session: Session, *, account: Account, name: str) -> Group:
    group = session.scalar(select(Group).where(Group.account_id == account.id, Group.name_key == name_key(name)))
    if group is None:
        raise NotFound(f"no group named '{name}' in account '{account.name}'")
    return group


def set_group_idp_identifier(
    session: Session, *, account: Account, group: Group, idp_identifier: str | None, actor: str
) -> Group:
    value = _clean_identifier(idp_identifier)
    if value is not None:
        other = session.scalar(
            select(Group).where(
                Group.account_id == account.id, Group.idp_identifier == value, Group.id != group.id
            )
        )
        if other is not None:
            raise Conflict(f"IdP identifier '{value}' is already mapped to group '{other.name}'")
    old = group.idp_identifier
    group.idp_identifier = value
    session.flush()
    if value is None and old is not None:
        # Unmapped: sync no longer owns these rows, so they become ordinary manual memberships.
        session.execute(
            update(GroupMembership)
            .where(GroupMembership.account_id == account.id, GroupMembership.group_id == group.id,
                   GroupMembership.source == SOURCE_IDP)
            .values(source=SOURCE_MANUAL)
        )
    audit.record(
        session,
        account_id=account.id,
        actor=actor,
        action="group.idp_identifier_set" if value else "group.idp_identifier_cleared",
        details={"group": group.name, "old": old, "new": value},
    )
    return group


def add_group_member(
    session: Session, *, account: Account, group: Group, user: User, actor: str, idp_owned: bool
) -> None:
    """Manual add. ``idp_owned`` (decided by the caller with the config at hand) refuses
    when the IdP owns this membership."""
    if group.idp_identifier is not None and idp_owned:
        raise Forbidden(
            f"group '{group.name}' is mapped to an IdP group and {user.user_name} signs in through "
            "a connector with group sync: the IdP owns this membership; change it in the IdP"
        )
    existing = session.get(GroupMembership, (group.id, user.id))
    if existing is not None and existing.account_id == account.id:
        raise Conflict(f"{user.user_name} is already a member of '{group.name}'")
    session.add(GroupMembership(account_id=account.id, group_id=group.id, user_id=user.id, source=SOURCE_MANUAL))
    session.flush()
    audit.record(
        session, account_id=account.id, actor=actor, action="group.member_added", user_id=user.id,
        details={"group": group.name, "source": SOURCE_MANUAL},
    )


def remove_group_member(
    session: Session, *, account: Account, group: Group, user: User, actor: str, idp_owned: bool
) -> None:
    if group.idp_identifier is not None and idp_owned:
        raise Forbidden(
            f"group '{group.name}' is mapped to an IdP group and {user.user_name} signs in through "
            "a connector with group sync: the IdP owns this membership; change it in the IdP"
        )
    membership = session.scalar(
        select(GroupMembership).where(
            GroupMembership.account_id == account.id,
            GroupMembership.group_id == group.id,
            GroupMembership.user_id == user.id,
        )
    )
    if membership is None:
        raise NotFound(f"{user.user_name} is not a member of '{group.name}'")
    session.delete(membership)
    session.flush()
    audit.record(
        session, account_id=account.id, actor=actor, action="group.member_removed", user_id=user.id,
        details={"group": group.name},
    )


def group_members(session: Session, *, account: Account, group: Group) -> list[tuple[User, str]]:
    rows = session.execute(
        select(User, GroupMembership.source)
        .join(GroupMembership, GroupMembership.user_id == User.id)
        .where(GroupMembership.account_id == account.id, GroupMembership.group_id == group.id)
        .order_by(User.user_name_key)
    )
    return [(u, s) for u, s in rows]


# -- users ------------------------------------------------------------------------------


def validate_email(email: str) -> str:
    value = email.strip()
    if not _EMAIL.match(value) or len(value) > 320:
        raise BadRequest(f"'{email}' is not an email address")
    return value


def create_user(
    session: Session,
    *,
    account: Account,
    user_name: str,
    email: str | None,
    password: str | None = None,
    status: str = USER_ACTIVE,
    display_name: str | None = None,
    given_name: str | None = None,
    family_name: str | None = None,
    account_role: str | None = None,
    actor: str = "cli",
    connector_id: str | None = None,
    external_id: str | None = None,
    scim_attributes: dict[str, Any] | None = None,
    timezone: str | None = None,
) -> User:
    """Create a user; a second user with the same user name (case-insensitively) in the
    account is a Conflict, also when both creates race (the unique key decides).
    ``external_id``/``scim_attributes`` are SCIM's (set in the same INSERT)."""
    user_name = user_name.strip()
    if not user_name or len(user_name) > 320:
        raise BadRequest("user name must be 1-320 characters")
    role = get_role(session, account=account, scope=ROLE_SCOPE_ACCOUNT, name=account_role or ACCOUNT_MEMBER)
    user = User(
        account_id=account.id,
        user_name=user_name,
        user_name_key=user_name_key(user_name),
        email=email,
        email_key=email.casefold() if email else None,
        display_name=display_name,
        given_name=given_name,
        family_name=family_name,
        status=status,
        password_hash=hash_password(password) if password else None,
        account_role_id=role.id,
        external_id=external_id,
        scim_attributes=scim_attributes,
        timezone=timezone,
    )
    try:
        with session.begin_nested():
            session.add(user)
            session.flush()
    except IntegrityError as exc:
        raise Conflict(f"a user named '{user_name}' already exists in account '{account.name}'") from exc
    audit.record(
        session, account_id=account.id, actor=actor, action="user.created", user_id=user.id,
        connector_id=connector_id, details={"user_name": user_name, "status": status},
    )
    return user


@dataclass(slots=True)
class LoginUser:
    """The columns of a user that a login reads and writes, without an ORM object: a returning
    user's login reads them with one Core statement and writes them with one Core UPDATE
    (:func:`update_login_user`)."""

    id: str
    account_id: str
    user_name: str
    email: str | None
    display_name: str | None
    given_name: str | None
    family_name: str | None
    timezone: str | None
    status: str
    password_hash: str | None
    account_role_id: str | None
    first_login_at: datetime | None

    @classmethod
    def of(cls, user: User) -> LoginUser:
        return cls(
            id=user.id, account_id=user.account_id, user_name=user.user_name, email=user.email,
            display_name=user.display_name, given_name=user.given_name, family_name=user.family_name,
            timezone=user.timezone, status=user.status, password_hash=user.password_hash,
            account_role_id=user.account_role_id, first_login_at=user.first_login_at,
        )


_USERS = cast(Table, User.__table__)
#: the columns of :class:`LoginUser`, in its field order
LOGIN_USER_COLUMNS = tuple(_USERS.c[name] for name in LoginUser.__slots__)
#: no values(): the SET clause is made of the columns each call passes (one compiled form
#: per set of columns, cached); the key's bind names differ from every column name
_UPDATE_USER = update(_USERS).where(_USERS.c.account_id == bindparam("b_account_id"),
                                    _USERS.c.id == bindparam("b_id"))


def update_login_user(session: Session, user: LoginUser, values: dict[str, Any]) -> None:
    """One Core UPDATE of ``values`` (column -> value) on the user's row, scoped by account;
    ``updated_at`` is set too. ``user`` and an ORM object of the same user already in the
    session (a user created or linked by this transaction) are given the same values, so
    later readers (``transom explain``) see the row as written."""
    values = {**values, "updated_at": utcnow()}
    core(session).execute(_UPDATE_USER, {"b_account_id": user.account_id, "b_id": user.id, **values})
    loaded = session.identity_map.get(identity_key(User, user.id))
    for column, value in values.items():
        if hasattr(user, column):
            setattr(user, column, value)
        if loaded is not None:
            set_committed_value(loaded, column, value)


def find_user(session: Session, *, account: Account, email_or_user_name: str) -> User | None:
    key = user_name_key(email_or_user_name)
    user = session.scalar(select(User).where(User.account_id == account.id, User.user_name_key == key))
    if user is not None:
        return user
    matches = list(session.scalars(select(User).where(User.account_id == account.id, User.email_key == key).limit(2)))
    return matches[0] if len(matches) == 1 else None


def get_user(session: Session, *, account: Account, email_or_user_name: str) -> User:
    user = find_user(session, account=account, email_or_user_name=email_or_user_name)
    if user is None:
        raise NotFound(f"no user '{email_or_user_name}' in account '{account.name}'")
    return user


def user_json(session: Session, *, user: User) -> dict[str, Any]:
    """The user JSON shape of interfaces.md."""
    account = session.get_one(Account, user.account_id)
    spaces = session.execute(
        select(Space.name, Role.name)
        .join(SpaceMembership, SpaceMembership.space_id == Space.id)
        .join(Role, Role.id == SpaceMembership.role_id)
        .where(SpaceMembership.account_id == user.account_id, SpaceMembership.user_id == user.id)
        .order_by(Space.name)
    ).all()
    groups = session.execute(
        select(Group.name, Group.idp_identifier, GroupMembership.source)
        .join(GroupMembership, GroupMembership.group_id == Group.id)
        .where(GroupMembership.account_id == user.account_id, GroupMembership.user_id == user.id)
        .order_by(Group.name)
    ).all()
    role = session.get(Role, user.account_role_id) if user.account_role_id else None
    return {
        "id": user.id,
        "account": account.name,
        "email": user.email,
        "user_name": user.user_name,
        "display_name": user.display_name,
        "timezone": user.timezone,
        "status": user.status,
        "account_role": role.name if role else None,
        "spaces": [{"space": s, "role": r} for s, r in spaces],
        "groups": [
            {"name": n, "idp_identifier": i, "source": src if src in (SOURCE_IDP, SOURCE_MANUAL) else SOURCE_MANUAL}
            for n, i, src in groups
        ],
    }


# -- API tokens -------------------------------------------------------------------------


def create_token(
    session: Session, *, account: Account, permissions: list[str], name: str | None = None, actor: str = "cli"
) -> str:
    unknown = set(permissions) - PERMISSIONS
    name = " ".join((name or "token").split())
    if len(name) > 200:
        raise BadRequest("token name must be at most 200 characters")
    if unknown or not permissions:
        raise BadRequest(f"unknown permission(s): {', '.join(sorted(unknown)) or 'none given'}; "
                         f"known: {', '.join(sorted(PERMISSIONS))}")
    token = new_api_token()
    session.add(
        ApiToken(
            account_id=account.id,
            name=name or "token",
            token_hash=token_digest(token),
            permissions=",".join(sorted(set(permissions))),
        )
    )
    session.flush()
    audit.record(session, account_id=account.id, actor=actor, action="token.created",
                 details={"name": name or "token", "permissions": sorted(set(permissions))})
    return token


def authenticate_token(session: Session, *, token: str, permission: str) -> ApiToken:
    """Find the token by its digest (an indexed equality on a hash: comparing digests leaks
    nothing about the token) and check its permission."""
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == token_digest(token.strip())))
    if row is None:
        raise Unauthorized("invalid API token")
    _check_permission(row.permissions, permission)
    touch(session, token_id=row.id, last_used_at=row.last_used_at)
    return row


_TOKENS = cast(Table, ApiToken.__table__)
#: built once, in Core (no ORM Account or ApiToken is loaded): SCIM runs it on every request
_TOKEN_WITH_ACCOUNT = (
    select(_TOKENS.c.id, _TOKENS.c.name, _TOKENS.c.permissions, _TOKENS.c.last_used_at,
           _ACCOUNTS.c.id.label("account_id"), _ACCOUNTS.c.name.label("account_name"))
    .select_from(_TOKENS.join(_ACCOUNTS, _ACCOUNTS.c.id == _TOKENS.c.account_id))
    .where(_TOKENS.c.token_hash == bindparam("digest"))
)


@dataclass(frozen=True)
class TokenAccount:
    """The account an API token belongs to, as the SCIM request needs it (its id scopes every
    statement; its name is in messages and the SCIM location)."""

    id: str
    name: str


def authenticate_account_token(session: Session, *, token: str, permission: str) -> tuple[str, TokenAccount]:
    """``authenticate_token`` and the token's account in one Core query (SCIM runs it on every
    request): the token's name and its account. A token whose account is gone is invalid."""
    row = core(session).execute(_TOKEN_WITH_ACCOUNT, {"digest": token_digest(token.strip())}).first()
    if row is None:
        raise Unauthorized("invalid API token")
    _check_permission(row.permissions, permission)
    touch(session, token_id=row.id, last_used_at=row.last_used_at)
    return row.name, TokenAccount(id=row.account_id, name=row.account_name)


def _check_permission(permissions: str, wanted: str) -> None:
    perms = set(permissions.split(","))
    if wanted not in perms and "admin" not in perms:
        raise Forbidden(f"this API token lacks the '{wanted}' permission")
