"""keep erased contacts as a hash

Revision ID: 5e1d2c7a9b40
Revises: c31531f3f215
Create Date: 2026-12-04 23:50:00

An erased person's id must not stay in any table. Scoring remembers erased contacts only to drop
their late events, and a one-way hash of the id is enough for that.
"""

import hashlib
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import services.kit.db

revision: str = '5e1d2c7a9b40'
down_revision: str | None = 'c31531f3f215'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _erased_table(key: str, length: int) -> sa.Table:
    return sa.table('erased_contact', sa.column(key, sa.String(length)), sa.column('erased_at', services.kit.db.UTCDateTime()))


def upgrade() -> None:
    connection = op.get_bind()
    rows = connection.execute(sa.select(_erased_table('contact_id', 32))).all()
    op.drop_table('erased_contact')
    op.create_table('erased_contact',
    sa.Column('contact_hash', sa.String(length=64), nullable=False),
    sa.Column('erased_at', services.kit.db.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('contact_hash', name=op.f('pk_erased_contact'))
    )
    if rows:
        # This copy of the hash must never change with the code: it has to match what the service writes.
        hashed = [{'contact_hash': hashlib.sha256(row.contact_id.encode()).hexdigest(), 'erased_at': row.erased_at} for row in rows]
        op.bulk_insert(_erased_table('contact_hash', 64), hashed)


def downgrade() -> None:
    # The ids cannot be recovered from their hashes; the erased contacts are forgotten.
    op.drop_table('erased_contact')
    op.create_table('erased_contact',
    sa.Column('contact_id', sa.String(length=32), nullable=False),
    sa.Column('erased_at', services.kit.db.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('contact_id', name=op.f('pk_erased_contact'))
    )
