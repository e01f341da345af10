"""List, show and delete for the CLI: accounts, spaces, users and groups as plain JSON-able
dicts. Every query below an account is scoped by that account's id; deletes rely on the
schema's ``ON DELETE CASCADE`` (memberships, identities, sessions go with their row)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from transom import audit
from transom.directory import get_group, get_user, name_key
from transom.errors import NotFound
from transom.models import Account, ApiToken, Group, GroupMembership, Space, SpaceMembership, User


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def _count(session: Session, model: Any, account_id: str) -> int:
    return int(session.scalar(select(func.count()).select_from(model).where(model.account_id == account_id)) or 0)


def account_json(session: Session, account: Account) -> dict[str, Any]:
    return {
        "id": account.id,
        "name": account.name,
        "created_at": _iso(account.created_at),
        "users": _count(session, User, account.id),
        "spaces": _count(session, Space, account.id),
        "groups": _count(session, Group, account.id),
        "tokens": _count(session, ApiToken, account.id),
    }


def list_accounts(session: Session) -> list[dict[str, Any]]:
    return [account_json(session, a) for a in session.scalars(select(Account).order_by(Account.name))]


def delete_account(session: Session, *, account: Account) -> None:
    """Everything of the account goes with it (cascade), including its audit trail."""
    session.execute(delete(Account).where(Account.id == account.id))


def get_space(session: Session, *, account: Account, name: str) -> Space:
    space = session.scalar(select(Space).where(Space.account_id == account.id, Space.name_key == name_key(name)))
    if space is None:
        raise NotFound(f"no space named '{name}' in account '{account.name}'")
    return space


def space_json(session: Session, space: Space) -> dict[str, Any]:
    members = session.scalar(select(func.count()).select_from(SpaceMembership).where(
        SpaceMembership.account_id == space.account_id, SpaceMembership.space_id == space.id))
    return {"id": space.id, "name": space.name, "members": int(members or 0)}


def list_spaces(session: Session, *, account: Account) -> list[dict[str, Any]]:
    spaces = session.scalars(select(Space).where(Space.account_id == account.id).order_by(Space.name_key))
    return [space_json(session, s) for s in spaces]


def delete_space(session: Session, *, account: Account, name: str, actor: str) -> Space:
    space = get_space(session, account=account, name=name)
    session.execute(delete(Space).where(Space.account_id == account.id, Space.id == space.id))
    audit.record(session, account_id=account.id, actor=actor, action="space.deleted", details={"space": space.name})
    return space


def list_users(session: Session, *, account: Account) -> list[dict[str, Any]]:
    users = session.scalars(select(User).where(User.account_id == account.id).order_by(User.user_name_key))
    return [
        {"id": u.id, "user_name": u.user_name, "email": u.email, "display_name": u.display_name,
         "status": u.status, "last_login_at": _iso(u.last_login_at)}
        for u in users
    ]


def delete_user(session: Session, *, account: Account, email_or_user_name: str, actor: str) -> User:
    user = get_user(session, account=account, email_or_user_name=email_or_user_name)
    session.execute(delete(User).where(User.account_id == account.id, User.id == user.id))
    audit.record(session, account_id=account.id, actor=actor, action="user.deleted", user_id=user.id,
                 details={"user_name": user.user_name})
    return user


def group_json(session: Session, group: Group) -> dict[str, Any]:
    members = session.scalar(select(func.count()).select_from(GroupMembership).where(
        GroupMembership.account_id == group.account_id, GroupMembership.group_id == group.id))
    return {"id": group.id, "name": group.name, "idp_identifier": group.idp_identifier, "members": int(members or 0)}


def list_groups(session: Session, *, account: Account) -> list[dict[str, Any]]:
    groups = session.scalars(select(Group).where(Group.account_id == account.id).order_by(Group.name_key))
    return [group_json(session, g) for g in groups]


def delete_group(session: Session, *, account: Account, name: str, actor: str) -> Group:
    group = get_group(session, account=account, name=name)
    session.execute(delete(Group).where(Group.account_id == account.id, Group.id == group.id))
    audit.record(session, account_id=account.id, actor=actor, action="group.deleted",
                 details={"group": group.name})
    return group
