"""Tables of the local contact copy: the facts of each contact, and contacts erased for good."""

from datetime import datetime
from typing import Any

from sqlalchemy import JSON
from sqlmodel import Field

from services.kit.db import UTCDateTime
from services.sequencer.db import SequencerBase


class ContactFact(SequencerBase, table=True):  # type: ignore[call-arg]
    """Facts about one contact, copied from the contacts service's events.

    Each kind of fact keeps the time of the event that set it, so an event that arrives late never
    overwrites a newer value: `consent` and `segments` hold `{"status"|"member": ..., "at": iso}` per
    topic or segment (the topic `*` is the contact's overall consent).
    """

    __tablename__ = "contact_fact"

    contact_id: str = Field(primary_key=True, max_length=64)
    email: str | None = Field(default=None, max_length=320)
    first_name: str | None = Field(default=None, max_length=200)
    last_name: str | None = Field(default=None, max_length=200)
    timezone: str | None = Field(default=None, max_length=64)
    attributes: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    company: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    profile_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    stage: str | None = Field(default=None, max_length=32)
    stage_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    consent: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    segments: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    scores: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    # Incremented at the start of every send to this contact, so concurrent sends to one contact
    # queue behind each other's row lock and the frequency cap counts every one of them.
    send_serial: int = 0
    updated_at: datetime = Field(sa_type=UTCDateTime)


class ErasedContact(SequencerBase, table=True):  # type: ignore[call-arg]
    """A contact erased on request, kept only as a hash so late events cannot bring its data back."""

    __tablename__ = "erased_contact"

    contact_hash: str = Field(primary_key=True, max_length=64)
    erased_at: datetime = Field(sa_type=UTCDateTime)
