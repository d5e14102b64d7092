"""The contact table."""

from datetime import datetime
from typing import Any

from sqlalchemy import JSON
from sqlmodel import Field

from services.contacts.db import ContactsBase
from services.kit.db import UTCDateTime


class Contact(ContactsBase, table=True):  # type: ignore[call-arg]
    __tablename__ = "contact"

    id: str = Field(primary_key=True, max_length=32)
    email: str = Field(max_length=320)
    # The normalised, lower-cased address: one contact per key, matched case-insensitively.
    email_key: str = Field(max_length=320, unique=True)
    first_name: str | None = Field(default=None, max_length=200)
    last_name: str | None = Field(default=None, max_length=200)
    timezone: str | None = Field(default=None, max_length=64)
    attributes: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    stage: str = Field(default="subscriber", max_length=32, index=True)
    scores: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    created_at: datetime = Field(sa_type=UTCDateTime)
    updated_at: datetime = Field(sa_type=UTCDateTime, index=True)
