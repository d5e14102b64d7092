"""Request and response bodies of the contact routes, shared with the gateway's OpenAPI."""

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt


class CompanyIn(BaseModel):
    """The company a contact works at; contacts with the same domain share it."""

    model_config = ConfigDict(extra="forbid")

    domain: str | None = Field(default=None, max_length=253, examples=["example.com"])
    name: str | None = Field(default=None, max_length=200)
    size: StrictInt | None = Field(default=None, description="Number of employees")
    industry: str | None = Field(default=None, max_length=200)


class CompanyOut(BaseModel):
    id: str
    domain: str | None
    name: str | None
    size: int | None
    industry: str | None


class ProfileIn(BaseModel):
    """Profile fields; only the fields sent are changed, and null clears one."""

    model_config = ConfigDict(extra="forbid")

    first_name: str | None = Field(default=None, max_length=1000)
    last_name: str | None = Field(default=None, max_length=1000)
    timezone: str | None = Field(default=None, max_length=100, description="IANA name such as Europe/Berlin")
    attributes: dict[str, Any] | None = Field(default=None, description="Values of defined attributes; null clears one")
    company: CompanyIn | None = Field(default=None, description="Links the contact to this company; null unlinks")


class ContactIn(ProfileIn):
    email: str = Field(max_length=320)
    stage: str | None = Field(default=None, description="Initial lifecycle stage; default subscriber")


class ContactUpsert(ProfileIn):
    """The body of PUT /contacts/by-email/{email}; the address comes from the path."""

    stage: str | None = Field(default=None, description="Initial stage of a new contact, or a forward move of an existing one")
    stage_reason: str | None = Field(default=None, max_length=1000, description="Why the stage moves, where the move needs a reason")


class ContactPatch(ProfileIn):
    email: str | None = Field(default=None, max_length=320)
    stage: str | None = Field(default=None, description="Moves the stage forward; backward moves use the stage route")
    stage_reason: str | None = Field(default=None, max_length=1000)
    actor: str | None = Field(default=None, max_length=200, description="Who makes the change; default api")


class ConsentView(BaseModel):
    status: str
    source: str | None
    reason: str | None
    changed_at: datetime | None
    sendable: bool
    topics: dict[str, Any]


class ContactOut(BaseModel):
    id: str
    email: str
    first_name: str | None
    last_name: str | None
    timezone: str | None
    attributes: dict[str, Any]
    company: CompanyOut | None
    stage: str
    consent: ConsentView
    scores: dict[str, Any]
    created_at: datetime
    updated_at: datetime
