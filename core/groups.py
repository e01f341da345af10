"""Group sync: which users' mapped-group memberships the IdP owns, and the set-based sync
applied on every login."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from transom.connector import Connector
from transom.models import ExternalIdentity, User


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
