"""never reuse step run ids on SQLite

Revision ID: 3b8f0e6d2a17
Revises: c73a8d386c0b
Create Date: 2026-12-05 00:05:00

Without AUTOINCREMENT, SQLite gives a new row the id of the newest deleted one. Erasure deletes
step runs, and a step run id also names its queue job and marks it finished in the worker, so a
reused id made a new enrolment's step look finished and never run. PostgreSQL sequences never hand
out an id twice, so only SQLite changes.
"""

from collections.abc import Sequence

from alembic import op

revision: str = '3b8f0e6d2a17'
down_revision: str | None = 'c73a8d386c0b'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _rebuild_step_run(autoincrement: bool) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    with op.batch_alter_table('step_run', recreate='always', table_kwargs={'sqlite_autoincrement': autoincrement}):
        pass


def upgrade() -> None:
    _rebuild_step_run(True)


def downgrade() -> None:
    _rebuild_step_run(False)
