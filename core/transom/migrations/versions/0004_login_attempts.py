"""login activity: one row per SSO login attempt (admin console)

Revision ID: 0004
Revises: 0003
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('login_attempts',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('account_id', sa.String(length=32), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('connector_id', sa.String(length=63), nullable=False),
    sa.Column('protocol', sa.String(length=8), nullable=False),
    sa.Column('outcome', sa.String(length=10), nullable=False),
    sa.Column('user_id', sa.String(length=32), nullable=True),
    sa.Column('user_label', sa.String(length=320), nullable=True),
    sa.Column('code', sa.String(length=40), nullable=True),
    sa.Column('reason', sa.String(length=1000), nullable=True),
    sa.Column('hint', sa.String(length=1000), nullable=True),
    sa.Column('warnings', sa.JSON(), nullable=True),
    sa.Column('received', sa.JSON(), nullable=True),
    sa.Column('changes', sa.JSON(), nullable=True),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_login_attempts_account_id_accounts'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_login_attempts'))
    )
    with op.batch_alter_table('login_attempts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_login_attempts_account_id_at'), ['account_id', 'at'], unique=False)
        batch_op.create_index(batch_op.f('ix_login_attempts_account_id_connector_id_at'), ['account_id', 'connector_id', 'at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('login_attempts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_login_attempts_account_id_connector_id_at'))
        batch_op.drop_index(batch_op.f('ix_login_attempts_account_id_at'))
    op.drop_table('login_attempts')
