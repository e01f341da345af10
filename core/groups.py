"""Group sync: which users' mapped-group memberships the IdP owns, and the set-based sync
applied on every login."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from transom.connector import Connector
from transom.models import ExternalIdentity, User

if TYPE_CHECKING:
    from transom.login import LoginTrace


def user_is_group_synced(session: Session, *, user: User, connectors: Iterable[Connector]) -> bool:
    """True when the IdP owns this user's mapped-group memberships: no password, and an
    external identity from a configured connector that syncs groups."""
    if user.password_hash is not None:
        return False
    synced_ids = {c.id for c in connectors if c.syncs_groups and c.account}
    if not synced_ids:
        return False
    found = session.scalar(
        select(ExternalIdentity.id)
        .where(
            ExternalIdentity.account_id == user.account_id,
            ExternalIdentity.user_id == user.id,
            ExternalIdentity.connector_id.in_(synced_ids),
        )
        .limit(1)
    )
    return found is not None


def sync_user_groups(
    db: Session, *, account_id: str, user_id: str, idp_group_ids: Sequence[str], connector_id: str,
    trace: LoginTrace,
) -> None:
    """Make the user's memberships of *mapped* groups equal ``idp_group_ids`` (set-based)."""
    trace.note("group sync is not implemented yet; memberships unchanged")  # replaced by the group-sync work
