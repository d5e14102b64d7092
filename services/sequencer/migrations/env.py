"""Alembic environment of the sequencer service."""

from services.sequencer.models import metadata
from services.kit.migrations import run_migrations

run_migrations(metadata)
