"""Internal routes for templates."""

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from sqlmodel.ext.asyncio.session import AsyncSession

from services.kit.app import get_session
from services.kit.pagination import CursorQuery, LimitQuery, Page
from services.sequencer.templates.store import (
    PreviewIn,
    PreviewOut,
    TemplateIn,
    TemplateOut,
    create_template,
    get_template,
    list_templates,
    preview_template,
    update_template,
)

router = APIRouter(tags=["templates"])

Session = Annotated[AsyncSession, Depends(get_session)]


@router.post("/templates", status_code=201, response_model=TemplateOut)
async def post_template(body: TemplateIn, session: Session) -> TemplateOut:
    """Save a template; an invalid one is a 422 naming the part (subject, html or text) and line."""
    template = await create_template(session, body)
    await session.commit()
    return TemplateOut.model_validate(template, from_attributes=True)


@router.get("/templates", response_model=Page[TemplateOut])
async def get_templates(session: Session, limit: LimitQuery = 50, cursor: CursorQuery = None) -> Page[TemplateOut]:
    return await list_templates(session, limit=limit, cursor=cursor)


@router.get("/templates/{template_id}", response_model=TemplateOut)
async def get_one_template(template_id: str, session: Session) -> TemplateOut:
    return TemplateOut.model_validate(await get_template(session, template_id), from_attributes=True)


@router.put("/templates/{template_id}", response_model=TemplateOut)
async def put_template(template_id: str, body: TemplateIn, session: Session) -> TemplateOut:
    template = await update_template(session, template_id, body)
    await session.commit()
    return TemplateOut.model_validate(template, from_attributes=True)


@router.post("/templates/{template_id}/preview", response_model=PreviewOut)
async def post_preview(template_id: str, body: PreviewIn, session: Session, request: Request) -> PreviewOut:
    """Render the template for one contact; a token empty for that contact is a 422 naming the part."""
    preview = await preview_template(
        session,
        template_id,
        body.contact_id,
        contacts=request.app.state.clients.get("contacts"),
        public_base_url=request.app.state.settings.public_base_url,
    )
    # The contact may have been copied from the contacts service just now; keep the copy.
    await session.commit()
    return preview
