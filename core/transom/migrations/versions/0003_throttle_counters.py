"""throttle counters

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 22:10:00.000000
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('throttle_counters',
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('hits', sa.Integer(), nullable=False),
    sa.Column('window_ends', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_throttle_counters'))
    )
    op.create_index(op.f('ix_throttle_counters_window_ends'), 'throttle_counters', ['window_ends'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_throttle_counters_window_ends'), table_name='throttle_counters')
    op.drop_table('throttle_counters')
