"""Event contracts between the services.

Every event leaves its producer as an `EventEnvelope` written to the producer's outbox. The payload
schema of each topic lives in the producer's module beside this one (`contacts.py`, `scoring.py`, ...),
and `subscriptions.py` says which services consume which topics.
"""

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

__all__ = ["EventEnvelope"]


class EventEnvelope(BaseModel):
    """One published event: a unique id, its topic, who produced it and its payload."""

    id: str = Field(description="Unique event id; every consumer is idempotent on it")
    topic: str
    producer: str
    occurred_at: datetime
    correlation_id: str | None = None
    payload: dict[str, Any]
