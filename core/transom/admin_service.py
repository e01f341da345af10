"""What the admin console and the admin API do beyond groups: find users, show one user
whole, (de)activate, rename groups, list spaces and audit events. Every query is scoped by
the caller's account; the console pages and ``/api/admin`` share these functions so both
answer the same."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from transom import audit, directory
from transom.errors import BadRequest, Conflict, Forbidden, NotFound
from transom.login_activity import aware
from transom.models import (
    USER_ACTIVE,
    USER_DEPROVISIONED,
    USER_PENDING,
    Account,
    AuditEvent,
    ExternalIdentity,
    Group,
    Space,
    SpaceMembership,
    User,
)

STATUSES = (USER_PENDING, USER_ACTIVE, USER_DEPROVISIONED)
MAX_LIMIT = 500


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def search_users(
    db: Session, *, account: Account, q: str | None = None, status: str | None = None,
    connector: str | None = None, limit: int = 200,
) -> list[User]:
    """Users whose user name, email or display name contains ``q`` (case-insensitively),
    optionally with one status and an identity at one connector; by user name."""
    if status and status not in STATUSES:
        raise BadRequest(f"status must be one of {', '.join(STATUSES)}")
    query = select(User).where(User.account_id == account.id)
    text = " ".join((q or "").split()).casefold()
    if text:
        pattern = _like(text)
        query = query.where(or_(
            User.user_name_key.like(pattern, escape="\\"),
            User.email_key.like(pattern, escape="\\"),
            func.lower(User.display_name).like(pattern, escape="\\"),
        ))
    if status:
        query = query.where(User.status == status)
    if connector:
        query = query.where(User.id.in_(
            select(ExternalIdentity.user_id).where(
                ExternalIdentity.account_id == account.id, ExternalIdentity.connector_id == connector)
        ))
    return list(db.scalars(query.order_by(User.user_name_key).limit(min(max(limit, 1), MAX_LIMIT))))


def get_user_by_id(db: Session, *, account: Account, user_id: str) -> User:
    user = db.scalar(select(User).where(User.account_id == account.id, User.id == user_id))
    if user is None:
        raise NotFound(f"no user with id '{user_id[:64]}' in account '{account.name}'")
    return user


def user_summary(user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "user_name": user.user_name,
        "email": user.email,
        "display_name": user.display_name,
        "status": user.status,
        "account_role": user.account_role.name if user.account_role else None,
        "last_login_at": aware(user.last_login_at).isoformat(timespec="seconds") if user.last_login_at else None,
    }


def user_detail(db: Session, *, account: Account, user: User, audit_limit: int = 20) -> dict[str, Any]:
    """The user JSON shape plus identities (connector, subject), password or not, dates and
    the most recent audit events about the user."""
    data = directory.user_json(db, user=user)
    identities = db.execute(
        select(ExternalIdentity.connector_id, ExternalIdentity.subject, ExternalIdentity.created_at)
        .where(ExternalIdentity.account_id == account.id, ExternalIdentity.user_id == user.id)
        .order_by(ExternalIdentity.connector_id)
    ).all()
    data["identities"] = [
        {"connector": c, "subject": s, "linked_at": aware(at).isoformat(timespec="seconds")} for c, s, at in identities
    ]
    data["has_password"] = user.password_hash is not None
    data["created_at"] = aware(user.created_at).isoformat(timespec="seconds")
    data["last_login_at"] = aware(user.last_login_at).isoformat(timespec="seconds") if user.last_login_at else None
    data["recent_audit"] = [
        audit_json(e) for e in audit_events(db, account=account, user_id=user.id, limit=audit_limit)
    ]
    return data


def set_user_active(db: Session, *, account: Account, user: User, active: bool, actor: str) -> User:
    """Deactivate or reactivate with exactly SCIM's semantics (``active`` false/true,
    docs/scim.md): deactivating ends the user's sessions and removes their space and group
    memberships; reactivating makes them active (pending if they never signed in), and the
    next SSO login re-applies the rules. An admin cannot deactivate themselves."""
    from transom.scim.service import Caller, set_active

    if not active and actor == f"user:{user.id}":
        raise Forbidden("you cannot deactivate yourself; ask another Account Admin")
    before = user.status
    set_active(db, Caller(account=account, actor=actor), user, active)
    if user.status != before:
        user.version += 1  # SCIM clients see a new ETag: "active" changed
    db.flush()
    return user


def rename_group(db: Session, *, account: Account, group: Group, name: str, actor: str) -> Group:
    clean = " ".join(name.split())
    if not clean or len(clean) > 200:
        raise BadRequest("group name must be 1-200 characters")
    key = directory.name_key(clean)
    other = db.scalar(
        select(Group.id).where(Group.account_id == account.id, Group.name_key == key, Group.id != group.id)
    )
    if other is not None:
        raise Conflict(f"group '{clean}' already exists in account '{account.name}'")
    old = group.name
    group.name, group.name_key = clean, key
    db.flush()
    audit.record(db, account_id=account.id, actor=actor, action="group.renamed", details={"old": old, "new": clean})
    return group


def get_group_by_id(db: Session, *, account: Account, group_id: str) -> Group:
    group = db.scalar(select(Group).where(Group.account_id == account.id, Group.id == group_id))
    if group is None:
        raise NotFound(f"no group with id '{group_id[:64]}' in account '{account.name}'")
    return group


def spaces_with_counts(db: Session, *, account: Account) -> list[tuple[Space, int]]:
    counts = (
        select(SpaceMembership.space_id, func.count().label("n"))
        .where(SpaceMembership.account_id == account.id)
        .group_by(SpaceMembership.space_id)
        .subquery()
    )
    rows = db.execute(
        select(Space, counts.c.n).outerjoin(counts, counts.c.space_id == Space.id)
        .where(Space.account_id == account.id).order_by(Space.name_key)
    )
    return [(s, n or 0) for s, n in rows]


def audit_events(
    db: Session, *, account: Account, user_id: str | None = None, action: str | None = None, limit: int = 200
) -> list[AuditEvent]:
    """Newest first. ``action`` matches a whole action (``group.synced``) or a kind, the part
    before the dot (``group``)."""
    query = select(AuditEvent).where(AuditEvent.account_id == account.id)
    if user_id:
        query = query.where(AuditEvent.user_id == user_id)
    if action:
        query = query.where(or_(AuditEvent.action == action, AuditEvent.action.like(_like_prefix(action), escape="\\")))
    newest = query.order_by(AuditEvent.at.desc(), AuditEvent.id.desc())
    return list(db.scalars(newest.limit(min(max(limit, 1), MAX_LIMIT))))


def _like_prefix(kind: str) -> str:
    escaped = kind.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"{escaped}.%"


def audit_kinds(db: Session, *, account: Account) -> list[str]:
    return list(db.scalars(select(AuditEvent.action).where(AuditEvent.account_id == account.id).distinct()
                           .order_by(AuditEvent.action)))


def audit_json(event: AuditEvent) -> dict[str, Any]:
    return {
        "id": event.id,
        "at": aware(event.at).isoformat(timespec="seconds"),
        "actor": event.actor,
        "action": event.action,
        "user_id": event.user_id,
        "connector": event.connector_id,
        "details": event.details,
    }
