"""Single use of a response: the replay cache of assertion ids and the login state named
by the signed InResponseTo. :func:`check_response` reads (``Database.read``, no writer
lock); the marks it returns are spent by the login's transaction (transom.singleuse)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import cast

from sqlalchemy import Connection, Table, bindparam, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from transom import directory
from transom.connector import Connector
from transom.db import core
from transom.errors import LoginRefused
from transom.loginstate import check_login_state, login_state_mark
from transom.models import SamlAssertionSeen
from transom.purges import EXPIRED_ASSERTIONS
from transom.saml.common import refused
from transom.saml.response import VerifiedResponse
from transom.singleuse import Mark, SingleUse
from transom.web.paths import safe_next

#: the replay cache's row, as one Core statement (no ORM unit of work)
_SEEN_TABLE = cast(Table, SamlAssertionSeen.__table__)
_INSERT_SEEN = insert(_SEEN_TABLE)
#: built once, on the table (the check runs on every ACS): is this assertion id in the cache?
_SEEN = select(_SEEN_TABLE.c.assertion_id).where(
    _SEEN_TABLE.c.account_id == bindparam("account_id"),
    _SEEN_TABLE.c.connector_id == bindparam("connector_id"),
    _SEEN_TABLE.c.assertion_id == bindparam("assertion_id"),
)


def _replayed(layer: str) -> LoginRefused:
    # logged once, as the refusal line with code=saml.replay (transom.observe); the layer
    # tells a replay (the lookup) from two posts racing each other (the primary key)
    return refused("this sign-in response was already used; start the sign-in again",
                   "the same SAML assertion was posted twice (replay)", "saml.replay", f"layer={layer}")


@dataclass(frozen=True)
class CheckedResponse:
    """A response whose assertion id is not in the replay cache and whose InResponseTo
    names a pending login of this browser and connector; nothing spent yet."""

    #: where to send the browser afterwards
    next_path: str | None
    single_use: SingleUse


def check_response(
    db: Session | Connection, *, connector: Connector, verified: VerifiedResponse, binding: str | None,
    relay_state: str | None,
) -> CheckedResponse:
    """Read-only: the assertion id must be unseen, and the login state named by the signed
    InResponseTo pending for this browser and connector. A refusal here spends nothing."""
    account_id = directory.connector_account_id(db, connector=connector)
    seen = core(db).execute(_SEEN, {"account_id": account_id, "connector_id": connector.id,
                              "assertion_id": verified.assertion_id}).first()
    if seen is not None:
        raise _replayed("lookup")
    marks = [_replay_mark(account_id=account_id, connector_id=connector.id, verified=verified)]
    if verified.in_response_to is not None:
        state = check_login_state(db, key=verified.in_response_to, binding=binding, connector_id=connector.id,
                                  account_id=account_id)
        marks.append(login_state_mark(state))
        return CheckedResponse(next_path=state.next_path, single_use=SingleUse(*marks, account_id=account_id))
    # IdP-initiated (allowed, checked in verify): RelayState may only name a local path.
    next_path = relay_state if relay_state and safe_next(relay_state) == relay_state else None
    return CheckedResponse(next_path=next_path, single_use=SingleUse(*marks, account_id=account_id))


def _replay_mark(*, account_id: str, connector_id: str, verified: VerifiedResponse) -> Mark:
    """The assertion id into the replay cache until the assertion expires; its primary key
    (connector, assertion id) refuses the second of two posts that both passed the lookup."""
    row = {"connector_id": connector_id, "assertion_id": verified.assertion_id, "account_id": account_id,
           "expires_at": verified.expires_at}

    def spend(db: Session) -> None:
        # Sweep this connector's expired ids as we go: the table stays small without a job
        # (an index range: the cost does not grow with the table, transom.purges).
        core(db).execute(EXPIRED_ASSERTIONS, {"connector_id": connector_id, "now": datetime.now(UTC)})
        try:
            core(db).execute(_INSERT_SEEN, row)
        except IntegrityError:
            raise _replayed("primary_key") from None

    return spend
