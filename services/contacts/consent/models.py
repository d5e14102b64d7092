"""The current consent of each contact per topic, and the history of every change."""

from datetime import datetime
from typing import TYPE_CHECKING, Optional

from sqlalchemy import UniqueConstraint
from sqlmodel import Field, Relationship

from services.contacts.db import ContactsBase
from services.kit.db import UTCDateTime

if TYPE_CHECKING:
    from services.contacts.people.models import Contact

# The topic key of a contact's overall consent; named topics (such as "newsletter") sit beside it.
OVERALL = ""


class ConsentState(ContactsBase, table=True):  # type: ignore[call-arg]
    """The current status of one contact for one topic (`topic == ""` is the overall consent)."""

    __tablename__ = "consent_state"
    __table_args__ = (UniqueConstraint("contact_id", "topic", name="uq_consent_state_contact_topic"),)

    id: int | None = Field(default=None, primary_key=True)
    contact_id: str = Field(foreign_key="contact.id", ondelete="CASCADE", max_length=32)
    # Never loaded: the relationship makes the unit of work insert a new contact before this row.
    contact: Optional["Contact"] = Relationship(sa_relationship_kwargs={"lazy": "raise"})
    topic: str = Field(default=OVERALL, max_length=63)
    status: str = Field(max_length=16)
    source: str = Field(max_length=32)
    # Why sending stopped: hard_bounce, complaint or repeated_soft; None otherwise.
    reason: str | None = Field(default=None, max_length=32)
    # When the change happened (the event's occurred_at); older events never override it.
    changed_at: datetime = Field(sa_type=UTCDateTime)
    recorded_at: datetime = Field(sa_type=UTCDateTime)


class ConsentChange(ContactsBase, table=True):  # type: ignore[call-arg]
    """One change of a contact's consent, with who or what caused it."""

    __tablename__ = "consent_change"

    id: int | None = Field(default=None, primary_key=True)
    contact_id: str = Field(foreign_key="contact.id", ondelete="CASCADE", max_length=32, index=True)
    # Never loaded: the relationship makes the unit of work insert a new contact before this row.
    contact: Optional["Contact"] = Relationship(sa_relationship_kwargs={"lazy": "raise"})
    topic: str = Field(default=OVERALL, max_length=63)
    from_status: str | None = Field(default=None, max_length=16)
    to_status: str = Field(max_length=16)
    source: str = Field(max_length=32)
    reason: str | None = Field(default=None, max_length=32)
    evidence: str | None = Field(default=None, max_length=1000)
    event_id: str | None = Field(default=None, max_length=128)
    occurred_at: datetime = Field(sa_type=UTCDateTime)
    recorded_at: datetime = Field(sa_type=UTCDateTime)
