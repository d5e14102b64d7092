"""Columns shared by every gateway table whose rows are delivered to other services."""

from datetime import datetime
from typing import Any

from sqlalchemy import JSON
from sqlmodel import Field, SQLModel

from services.kit.db import UTCDateTime


class DeliveryColumns(SQLModel):
    """Delivery state of one row: the steps to run and how far the attempts got."""

    # `pending` until every step succeeded (`delivered`) or one failed for good (`failed`).
    state: str = Field(default="pending", max_length=16, index=True)
    # Calls to make in order, each idempotent; see services.gateway.delivery.service.run_step.
    steps: list[dict[str, Any]] = Field(default_factory=list, sa_type=JSON)
    attempts: int = 0
    # The sweep takes pending rows once this instant has passed.
    next_attempt_at: datetime = Field(sa_type=UTCDateTime, index=True)
    delivered_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_error: str | None = Field(default=None, max_length=1000)
