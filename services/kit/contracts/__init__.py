"""Event contracts between the services.

Every event leaves its producer as an `EventEnvelope` written to the producer's outbox. The payload
schema of each topic lives in the producer's module beside this one (`contacts.py`, `scoring.py`, ...),
and `subscriptions.py` says which services consume which topics.
"""

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

__all__ = ["EventEnvelope", "contact_id_of"]


class EventEnvelope(BaseModel):
    """One published event: a unique id, its topic, who produced it and its payload."""

    id: str = Field(description="Unique event id; every consumer is idempotent on it")
    topic: str
    producer: str
    occurred_at: datetime
    correlation_id: str | None = None
    payload: dict[str, Any]


def contact_id_of(envelope: EventEnvelope) -> str | None:
    """Return the id of the contact an event is about, or None for an event about no contact.

    Most payloads name it `contact_id`; a recorded event carries it inside the event, and a
    contact snapshot as the snapshot's `id`.
    """
    payload = envelope.payload
    if envelope.topic == "contact.event_recorded":
        value = (payload.get("event") or {}).get("contact_id")
    elif envelope.topic == "contact.changed":
        value = (payload.get("contact") or {}).get("id")
    else:
        value = payload.get("contact_id")
    return value if isinstance(value, str) else None
