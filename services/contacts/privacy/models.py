"""The anonymous tombstone an erased contact leaves behind."""

from datetime import datetime

from sqlmodel import Field

from services.contacts.db import ContactsBase
from services.kit.db import UTCDateTime


class ContactTombstone(ContactsBase, table=True):  # type: ignore[call-arg]
    """What remains of an erased contact, so counts per stage stay right: no email and no contact id."""

    __tablename__ = "contact_tombstone"

    # A fresh random id, unrelated to the erased contact's id.
    id: str = Field(primary_key=True, max_length=32)
    stage: str = Field(max_length=32, index=True)
    erased_at: datetime = Field(sa_type=UTCDateTime)
