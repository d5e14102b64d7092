"""Events the contacts service publishes, and their payloads."""

from datetime import datetime
from typing import Any

from pydantic import BaseModel

EVENT_RECORDED = "contact.event_recorded"
CONTACT_CHANGED = "contact.changed"
CONTACT_ERASED = "contact.erased"
STAGE_CHANGED = "stage.changed"
CONSENT_CHANGED = "consent.changed"
SEGMENT_ENTERED = "segment.entered"
SEGMENT_LEFT = "segment.left"


class TimelineEvent(BaseModel):
    """One behaviour event as stored on a contact's timeline."""

    id: str
    contact_id: str
    type: str
    occurred_at: datetime
    received_at: datetime
    properties: dict[str, Any] = {}


class EventRecorded(BaseModel):
    event: TimelineEvent


class ContactSnapshot(BaseModel):
    """What other services may copy about a contact: fields, attributes, company, stage, consent."""

    id: str
    email: str
    first_name: str | None = None
    last_name: str | None = None
    timezone: str | None = None
    attributes: dict[str, Any] = {}
    company: dict[str, Any] | None = None
    stage: str
    consent: dict[str, Any] = {}


class ContactChanged(BaseModel):
    contact: ContactSnapshot
    changed_fields: list[str] = []


class ContactErased(BaseModel):
    contact_id: str


class StageChanged(BaseModel):
    contact_id: str
    from_stage: str | None
    to_stage: str
    at: datetime
    reason: str | None = None
    actor: str | None = None


class ConsentChanged(BaseModel):
    contact_id: str
    topic: str | None
    status: str
    source: str
    at: datetime


class SegmentMembershipChanged(BaseModel):
    segment_id: str
    contact_id: str
    at: datetime
