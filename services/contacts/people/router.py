"""Internal routes for contacts."""

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field
from sqlmodel.ext.asyncio.session import AsyncSession

from services.contacts.people.service import find_or_create_by_email, get_contact
from services.kit.app import get_session
from services.kit.problems import Conflict

router = APIRouter(tags=["contacts"])

Session = Annotated[AsyncSession, Depends(get_session)]


class ContactIn(BaseModel):
    email: str = Field(max_length=320)
    first_name: str | None = Field(default=None, max_length=200)
    last_name: str | None = Field(default=None, max_length=200)


class ContactOut(BaseModel):
    id: str
    email: str
    first_name: str | None
    last_name: str | None
    timezone: str | None
    attributes: dict[str, Any]
    stage: str
    scores: dict[str, Any]
    created_at: datetime
    updated_at: datetime


@router.post("/contacts", status_code=201, response_model=ContactOut)
async def create_contact(body: ContactIn, session: Session) -> ContactOut:
    """Create a contact; an address that exists already is a conflict naming its id."""
    contact, created = await find_or_create_by_email(
        session, body.email, first_name=body.first_name, last_name=body.last_name
    )
    if not created:
        raise Conflict(f"a contact with this email exists: {contact.id}", existing_id=contact.id)
    await session.commit()
    return ContactOut.model_validate(contact, from_attributes=True)


@router.get("/contacts/{contact_id}", response_model=ContactOut)
async def read_contact(contact_id: str, session: Session) -> ContactOut:
    """Read one contact."""
    return ContactOut.model_validate(await get_contact(session, contact_id), from_attributes=True)
