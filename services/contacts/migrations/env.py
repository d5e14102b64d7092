"""Alembic environment of the contacts service."""

from services.contacts.models import metadata
from services.kit.migrations import run_migrations

run_migrations(metadata)
