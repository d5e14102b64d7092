"""The behaviour timeline: one row per event id, ordered by when the event happened."""

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Optional

from sqlalchemy import JSON, Index
from sqlmodel import Field, Relationship

from services.contacts.db import ContactsBase
from services.kit.db import UTCDateTime

if TYPE_CHECKING:
    from services.contacts.people.models import Contact


class TimelineEvent(ContactsBase, table=True):  # type: ignore[call-arg]
    __tablename__ = "timeline_event"
    __table_args__ = (
        Index("ix_timeline_event_contact_occurred", "contact_id", "occurred_at"),
        Index("ix_timeline_event_type_occurred", "type", "occurred_at"),
    )

    id: str = Field(primary_key=True, max_length=128)
    contact_id: str = Field(foreign_key="contact.id", ondelete="CASCADE", max_length=32)
    # Never loaded: the relationship makes the unit of work insert a new contact before this row.
    contact: Optional["Contact"] = Relationship(sa_relationship_kwargs={"lazy": "raise"})
    type: str = Field(max_length=64, index=True)
    occurred_at: datetime = Field(sa_type=UTCDateTime)
    received_at: datetime = Field(sa_type=UTCDateTime)
    properties: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    # `properties.message_id` of email events, kept as a column so the events of one message are
    # found without reading JSON (a bounce is stale when the same message was opened later).
    message_id: str | None = Field(default=None, max_length=200, index=True)


@dataclass(frozen=True, slots=True)
class RecordedEvent:
    """A timeline event as it is stored, with the columns of `TimelineEvent`.

    Storing a batch builds one per event and inserts them as plain rows, because an ORM object took
    about 40 microseconds to build, against one for this.
    """

    id: str
    contact_id: str
    type: str
    occurred_at: datetime
    received_at: datetime
    properties: dict[str, Any]
    message_id: str | None

    def values(self) -> dict[str, Any]:
        return asdict(self)
