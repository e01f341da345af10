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
    # A Core INSERT, not ``session.add``: an audit row is never read back through the ORM in
    # the transaction that writes it, and the unit of work costs more than the INSERT itself.
    session.execute(
        _TABLE.insert(),
        {"account_id": account_id, "at": utcnow(), "actor": actor, "action": action, "user_id": user_id,
         "connector_id": connector_id, "details": details},
    )
