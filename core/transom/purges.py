"""The statements that sweep expired rows of the two tables a login writes before it knows
who the user is: pending login states and the SAML replay cache.

Both run on the request path (login start, ACS), so their cost must not grow with the
table: each is a range over an index that leads with the scoping column and ends with
``expires_at`` (migration 0002), and touches only the rows that have expired since the last
sweep. tests/test_purge_plans.py checks the query plans on SQLite and PostgreSQL.

Each is built once on its table with bind parameters (``EXPIRED_LOGIN_STATES``,
``EXPIRED_ASSERTIONS``) and executed on the unit's ``Connection``: built per call as an ORM
``delete(Model)``, the replay-cache sweep alone cost a SAML ACS ~0.2 ms (compiling, cache
key, the ORM's bulk-delete path; docs/performance.md). The functions below build the same
statement with values, for query-plan checks.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import Delete, Table, bindparam, delete

from transom.models import LoginState, SamlAssertionSeen

_STATES = cast(Table, LoginState.__table__)
_SEEN = cast(Table, SamlAssertionSeen.__table__)


def expired_login_states(account_id: Any, now: datetime | Any) -> Delete:
    """One account's login states past their expiry (index ``ix_login_states_account_id_expires_at``)."""
    return delete(_STATES).where(_STATES.c.account_id == account_id, _STATES.c.expires_at < now)


def expired_assertions(connector_id: Any, now: datetime | Any) -> Delete:
    """One connector's replay-cache entries past their expiry (index
    ``ix_saml_assertions_seen_connector_id_expires_at``)."""
    return delete(_SEEN).where(_SEEN.c.connector_id == connector_id, _SEEN.c.expires_at < now)


#: parameters ``account_id`` and ``now``
EXPIRED_LOGIN_STATES = expired_login_states(bindparam("account_id"), bindparam("now"))
#: parameters ``connector_id`` and ``now``
EXPIRED_ASSERTIONS = expired_assertions(bindparam("connector_id"), bindparam("now"))
