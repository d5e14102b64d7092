"""Events the sequencer publishes, and their payloads."""

from datetime import datetime
from typing import Any

from pydantic import BaseModel

EMAIL_ENGAGEMENT = "email.engagement"


class EmailEngagement(BaseModel):
    """A send or an engagement with a sent email, for the contact's timeline.

    The sequencer publishes `email_sent` when SMTP accepts an email and `email_bounced` (with
    `bounce_type: hard` and `source: smtp`) when the server refuses it for good. `properties` always
    carry `message_id` (the Message-ID header), `sequence_id`, `step_id` and `subject`.
    `event_id` is derived from the Message-ID and the type, so a repeated publish is the same event.
    """

    event_id: str
    contact_id: str
    type: str
    occurred_at: datetime
    properties: dict[str, Any] = {}
