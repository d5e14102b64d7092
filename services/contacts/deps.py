"""FastAPI dependencies shared by the contacts routers."""

from typing import Annotated

from fastapi import Depends, Request
from sqlmodel.ext.asyncio.session import AsyncSession

from services.contacts.settings import ContactsSettings
from services.kit.app import get_outbox, get_session
from services.kit.outbox import Outbox


def get_settings(request: Request) -> ContactsSettings:
    return request.app.state.settings  # type: ignore[no-any-return]


Session = Annotated[AsyncSession, Depends(get_session)]
OutboxDep = Annotated[Outbox, Depends(get_outbox)]
SettingsDep = Annotated[ContactsSettings, Depends(get_settings)]
