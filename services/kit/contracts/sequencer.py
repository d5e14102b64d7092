"""Events the sequencer publishes, and their payloads."""

from datetime import datetime
from typing import Any

from pydantic import BaseModel

EMAIL_ENGAGEMENT = "email.engagement"


class EmailEngagement(BaseModel):
    """A send or an engagement with a sent email, for the contact's timeline."""

    event_id: str
    contact_id: str
    type: str
    occurred_at: datetime
    properties: dict[str, Any] = {}
