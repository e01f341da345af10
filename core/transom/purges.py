"""The statements that sweep expired rows of the two tables a login writes before it knows
who the user is: pending login states and the SAML replay cache.

Both run on the request path (login start, ACS), so their cost must not grow with the
table: each is a range over an index that leads with the scoping column and ends with
``expires_at`` (migration 0002), and touches only the rows that have expired since the last
sweep. tests/test_purge_plans.py checks the query plans on SQLite and PostgreSQL.

``synchronize_session=False``: expired rows are never loaded in the session that sweeps, so
the ORM need not match the criteria against its objects in Python.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Delete, delete

from transom.models import LoginState, SamlAssertionSeen


def expired_login_states(account_id: str, now: datetime) -> Delete:
    """One account's login states past their expiry (index ``ix_login_states_account_id_expires_at``)."""
    return delete(LoginState).where(
        LoginState.account_id == account_id, LoginState.expires_at < now,
    ).execution_options(synchronize_session=False)


def expired_assertions(connector_id: str, now: datetime) -> Delete:
    """One connector's replay-cache entries past their expiry (index
    ``ix_saml_assertions_seen_connector_id_expires_at``)."""
    return delete(SamlAssertionSeen).where(
        SamlAssertionSeen.connector_id == connector_id, SamlAssertionSeen.expires_at < now,
    ).execution_options(synchronize_session=False)
