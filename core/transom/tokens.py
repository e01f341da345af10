"""API tokens after creation: listing, revoking and the "last used" stamp.

Creating and authenticating live in ``transom.directory``. A token is checked against the
database on every request (no per-process cache), so deleting its row revokes it at once on
every worker and every process. Nothing here ever returns or logs the secret: only its name,
permissions and times; the row keeps a SHA-256 digest.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from transom import audit
from transom.errors import NotFound
from transom.models import Account, ApiToken, utcnow
from transom.security import token_digest

#: "last used" is a hint for spotting dead tokens, not an access log: writing it at most once
#: a minute keeps busy SCIM clients from turning every read into a write
LAST_USED_RESOLUTION = timedelta(seconds=60)


def list_tokens(session: Session, *, account: Account) -> list[ApiToken]:
    return list(
        session.scalars(
            select(ApiToken).where(ApiToken.account_id == account.id).order_by(ApiToken.created_at, ApiToken.id)
        )
    )


def get_token(session: Session, *, account: Account, token_id: str) -> ApiToken:
    row = session.scalar(select(ApiToken).where(ApiToken.account_id == account.id, ApiToken.id == token_id))
    if row is None:
        raise NotFound(f"no API token with id '{token_id}' in account '{account.name}'")
    return row


def by_secret(session: Session, *, secret: str) -> ApiToken:
    """The row of a token just created (its id is needed to revoke it later)."""
    return session.scalars(select(ApiToken).where(ApiToken.token_hash == token_digest(secret))).one()


def revoke_token(session: Session, *, account: Account, token_id: str, actor: str) -> ApiToken:
    """Delete the token's row: the next request that presents it gets 401, on any worker."""
    row = get_token(session, account=account, token_id=token_id)
    session.execute(delete(ApiToken).where(ApiToken.account_id == account.id, ApiToken.id == row.id))
    audit.record(session, account_id=account.id, actor=actor, action="token.revoked",
                 details={"id": row.id, "name": row.name, "permissions": row.permissions.split(",")})
    return row


def token_json(row: ApiToken) -> dict[str, Any]:
    """The listing shape (API, CLI --json, console). Never the secret, not even its digest."""
    return {
        "id": row.id,
        "name": row.name,
        "permissions": row.permissions.split(","),
        "created_at": _iso(row.created_at),
        "last_used_at": _iso(row.last_used_at),
    }


def touch(session: Session, *, token_id: str, last_used_at: datetime | None) -> None:
    """Stamp the token as used now, unless it was stamped within ``LAST_USED_RESOLUTION``."""
    now = utcnow()
    if last_used_at is not None and now - _aware(last_used_at) < LAST_USED_RESOLUTION:
        return
    session.execute(update(ApiToken).where(ApiToken.id == token_id).values(last_used_at=now))


def _aware(value: datetime) -> datetime:
    # SQLite returns naive datetimes even for timezone=True columns.
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _iso(value: datetime | None) -> str | None:
    return _aware(value).isoformat(timespec="seconds") if value is not None else None
