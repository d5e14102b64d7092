"""Alembic environment of the scoring service."""

from services.scoring.models import metadata
from services.kit.migrations import run_migrations

run_migrations(metadata)
