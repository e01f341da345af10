"""Audit events: who changed what, from where. Values that are identities (user, group
names) are recorded; token contents and secrets never are."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table
from sqlalchemy.orm import Session

from transom.models import AuditEvent, utcnow

_TABLE: Table = AuditEvent.__table__  # type: ignore[assignment]


def record(
    session: Session,
    *,
    account_id: str,
    actor: str,
    action: str,
    user_id: str | None = None,
    connector_id: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    session.add(
        AuditEvent(
            account_id=account_id,
            actor=actor,
            action=action,
            user_id=user_id,
            connector_id=connector_id,
            details=details,
        )
    )


def record_now(
    session: Session,
    *,
    account_id: str,
    actor: str,
    action: str,
    user_id: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """``record`` as a Core INSERT executed at once, for hot paths (SCIM creates): the unit of
    work cost more than the INSERT. Unlike ``record`` it adds no ORM object, so session
    observers do not see it (``transom explain`` watches ``record``'s objects to show what a
    login would write; logins keep using ``record``)."""
    session.execute(
        _TABLE.insert(),
        {"account_id": account_id, "at": utcnow(), "actor": actor, "action": action, "user_id": user_id,
         "connector_id": None, "details": details},
    )
