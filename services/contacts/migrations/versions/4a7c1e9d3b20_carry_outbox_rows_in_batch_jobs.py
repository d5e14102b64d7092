"""carry outbox rows in batch jobs

Revision ID: 4a7c1e9d3b20
Revises: 22a06c934126
Create Date: 2026-12-05 02:40:00

The relay now enqueues up to a hundred outbox rows as one consumer job, and each row keeps the id of
the job that carries it, so the sweep checks and re-enqueues jobs rather than rows. Rows enqueued
before this revision have no job id and are still swept as one job per row.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '4a7c1e9d3b20'
down_revision: str | None = '22a06c934126'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('outbox') as batch_op:
        batch_op.add_column(sa.Column('job_id', sa.String(length=200), nullable=True))
        batch_op.create_index(batch_op.f('ix_outbox_job_id'), ['job_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('outbox') as batch_op:
        batch_op.drop_index(batch_op.f('ix_outbox_job_id'))
        batch_op.drop_column('job_id')
