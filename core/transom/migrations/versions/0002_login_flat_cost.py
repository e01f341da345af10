"""indexes for the expiry sweeps and the caps on pending login states

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 22:00:00

The login-state and replay-cache sweeps ran on every login start and every SAML ACS and
scanned the whole table (issue 13: 144 ms per SAML login at 150k replay-cache rows).
"""
from __future__ import annotations

from alembic import op


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(op.f('ix_login_states_account_id_expires_at'), 'login_states', ['account_id', 'expires_at'])
    op.create_index(op.f('ix_login_states_account_id_browser_binding_expires_at'), 'login_states',
                    ['account_id', 'browser_binding', 'expires_at'])
    op.create_index(op.f('ix_saml_assertions_seen_connector_id_expires_at'), 'saml_assertions_seen',
                    ['connector_id', 'expires_at'])


def downgrade() -> None:
    op.drop_index(op.f('ix_saml_assertions_seen_connector_id_expires_at'), table_name='saml_assertions_seen')
    op.drop_index(op.f('ix_login_states_account_id_browser_binding_expires_at'), table_name='login_states')
    op.drop_index(op.f('ix_login_states_account_id_expires_at'), table_name='login_states')
