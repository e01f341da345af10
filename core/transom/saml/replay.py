"""Single use of a response: the replay cache of assertion ids and the login state named
by the signed InResponseTo. :func:`check_response` reads, as the first statements of the
transaction that spends what it returns (:func:`response_single_use`, transom.singleuse):
an ACS makes no network call after the signature checks, so no read-only unit before the
login's one transaction is needed to keep one from an unchecked response (docs/saml.md).
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import partial
from typing import cast

from sqlalchemy import Table, bindparam, insert, select
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
from transom.singleuse import Checked, Mark, SingleUse
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


def response_single_use(
    *, connector: Connector, verified: VerifiedResponse, binding: str | None, relay_state: str | None,
) -> SingleUse:
    """The response's single-use marks, checked by :func:`check_response` inside each
    transaction that spends them (the login's, or the one before a groups overage lookup)."""
    return SingleUse.checked_when_spent(partial(check_response, connector=connector, verified=verified,
                                                binding=binding, relay_state=relay_state))


def check_response(
    db: Session, *, connector: Connector, verified: VerifiedResponse, binding: str | None, relay_state: str | None,
) -> Checked:
    """The assertion id must be unseen, and the login state named by the signed InResponseTo
    pending for this browser and connector. Only reads: run first in the transaction that
    spends the marks it returns, so a refusal here is rolled back having written nothing
    (and spends nothing: a state presented from another browser stays usable)."""
    account_id = directory.connector_account_id(db, connector=connector)
    seen = core(db).execute(_SEEN, {"account_id": account_id, "connector_id": connector.id,
                              "assertion_id": verified.assertion_id}).first()
    if seen is not None:
        raise _replayed("lookup")
    replay = _replay_mark(account_id=account_id, connector_id=connector.id, verified=verified)
    if verified.in_response_to is not None:
        state = check_login_state(db, key=verified.in_response_to, binding=binding, connector_id=connector.id,
                                  account_id=account_id)
        return Checked(marks=(replay, login_state_mark(state)), account_id=account_id, next_path=state.next_path)
    # IdP-initiated (allowed, checked in verify): RelayState may only name a local path.
    next_path = relay_state if relay_state and safe_next(relay_state) == relay_state else None
    return Checked(marks=(replay,), account_id=account_id, next_path=next_path)


def _replay_mark(*, account_id: str, connector_id: str, verified: VerifiedResponse) -> Mark:
    """The assertion id into the replay cache until the assertion expires; its primary key
    (connector, assertion id) refuses the second of two posts that both passed the lookup
    (on PostgreSQL two transactions may both look before either inserts; SQLite's writer
    lock serialises them)."""
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
