"""The contact and company tables."""

from datetime import datetime
from typing import Any

from sqlalchemy import JSON
from sqlmodel import Field

from services.contacts.db import ContactsBase
from services.kit.db import UTCDateTime


class Company(ContactsBase, table=True):  # type: ignore[call-arg]
    """An organisation that contacts work at; contacts with the same domain share one company."""

    __tablename__ = "company"

    id: str = Field(primary_key=True, max_length=32)
    # Lower-cased without a trailing dot; None for a company known only by name.
    domain: str | None = Field(default=None, max_length=253, unique=True)
    name: str | None = Field(default=None, max_length=200)
    size: int | None = None
    industry: str | None = Field(default=None, max_length=200)
    created_at: datetime = Field(sa_type=UTCDateTime)
    updated_at: datetime = Field(sa_type=UTCDateTime)


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
    company_id: str | None = Field(default=None, foreign_key="company.id", ondelete="SET NULL", index=True, max_length=32)
    stage: str = Field(default="subscriber", max_length=32, index=True)
    stage_changed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    scores: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    created_at: datetime = Field(sa_type=UTCDateTime)
    updated_at: datetime = Field(sa_type=UTCDateTime, index=True)
