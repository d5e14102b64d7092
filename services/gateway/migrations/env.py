"""Alembic environment of the gateway service."""

from services.gateway.models import metadata
from services.kit.migrations import run_migrations

run_migrations(metadata)
