"""Single use of a response: the replay cache of assertion ids and the login state named
by the signed InResponseTo."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from transom import directory
from transom.connector import Connector
from transom.loginstate import consume_login_state
from transom.models import SamlAssertionSeen
from transom.purges import expired_assertions
from transom.runtime import Runtime
from transom.saml.common import refused
from transom.saml.response import VerifiedResponse
from transom.web.paths import safe_next


def accept_response(
    db: Session, runtime: Runtime, *, connector: Connector, verified: VerifiedResponse,
    binding: str | None, relay_state: str | None,
) -> str | None:
    """Record the assertion id (replay cache) and consume the login state named by the
    signed InResponseTo. Returns where to send the browser afterwards. Runs inside the
    caller's transaction: on any refusal nothing of it is kept."""
    account = directory.connector_account(db, connector=connector)
    now = datetime.now(UTC)
    # Sweep this connector's expired ids as we go: the table stays small without a job (an
    # index range: the cost does not grow with the table, transom.purges).
    db.execute(expired_assertions(connector.id, now))
    seen = db.scalar(select(SamlAssertionSeen.assertion_id).where(
        SamlAssertionSeen.connector_id == connector.id,
        SamlAssertionSeen.assertion_id == verified.assertion_id,
    ))
    if seen is not None:
        # logged once, as the refusal line with code=saml.replay (transom.observe); the layer
        # tells a replay (the lookup) from two posts racing each other (the primary key)
        raise refused("this sign-in response was already used; start the sign-in again",
                       "the same SAML assertion was posted twice (replay)", "saml.replay", "layer=lookup")
    # The primary key (connector, assertion id) also stops two concurrent posts.
    db.add(SamlAssertionSeen(connector_id=connector.id, assertion_id=verified.assertion_id,
                             account_id=account.id, expires_at=verified.expires_at))
    try:
        db.flush()
    except IntegrityError:
        raise refused("this sign-in response was already used; start the sign-in again",
                       "the same SAML assertion was posted twice (replay)", "saml.replay",
                       "layer=primary_key") from None
    if verified.in_response_to is not None:
        state = consume_login_state(db, key=verified.in_response_to, binding=binding, connector_id=connector.id)
        return state.next_path
    # IdP-initiated (allowed, checked in verify): RelayState may only name a local path.
    if relay_state and safe_next(relay_state) == relay_state:
        return relay_state
    return None
