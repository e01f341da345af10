"""Audit events: who changed what, from where. Values that are identities (user, group
names) are recorded; token contents and secrets never are."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from transom.models import AuditEvent


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
