"""Saving, reading and previewing templates."""

from datetime import datetime

from pydantic import BaseModel, Field
from sqlalchemy import and_, or_
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.kit import clock
from services.kit.http import ServiceClient
from services.kit.pagination import Page, decode_time_cursor, encode_cursor
from services.kit.problems import NotFound, Unprocessable, field_error, invalid
from services.sequencer.facts.service import ensure_facts, recipient
from services.sequencer.ids import new_id
from services.sequencer.templates import (
    EmailTemplate,
    Recipient,
    RenderedEmail,
    TemplateRenderError,
    TemplateValidationError,
    TrackingLinks,
    render_email,
    validate_template,
)
from services.sequencer.templates.models import Template


class TemplateIn(BaseModel):
    """A template as callers send it."""

    name: str = Field(min_length=1, max_length=200)
    subject: str = Field(min_length=1, max_length=1000)
    html: str = Field(min_length=1, max_length=500_000)
    text: str | None = Field(default=None, max_length=200_000)


class TemplateOut(BaseModel):
    id: str
    name: str
    subject: str
    html: str
    text: str | None
    created_at: datetime
    updated_at: datetime


class PreviewIn(BaseModel):
    contact_id: str = Field(min_length=1, max_length=64)


class PreviewOut(BaseModel):
    """A template rendered for one contact, without open and click tracking."""

    template_id: str
    contact_id: str
    subject: str
    html: str
    text: str


def _check(body: TemplateIn) -> None:
    try:
        validate_template(body.subject, body.html, body.text)
    except TemplateValidationError as error:
        errors = [
            field_error(issue.part, f"line {issue.line}: {issue.message}" if issue.line else issue.message)
            for issue in error.issues
        ]
        fields = ", ".join(sorted({issue.part for issue in error.issues}))
        raise Unprocessable(f"invalid template in {fields}", errors=errors) from None


async def create_template(session: AsyncSession, body: TemplateIn) -> Template:
    """Validate and store a new template (the caller commits)."""
    _check(body)
    now = clock.now()
    template = Template(id=new_id("tpl"), **body.model_dump(), created_at=now, updated_at=now)
    session.add(template)
    return template


async def update_template(session: AsyncSession, template_id: str, body: TemplateIn) -> Template:
    """Replace a template's sources; emails not yet sent use the new version."""
    _check(body)
    template = await get_template(session, template_id)
    for name, value in body.model_dump().items():
        setattr(template, name, value)
    template.updated_at = clock.now()
    return template


async def get_template(session: AsyncSession, template_id: str) -> Template:
    template = await session.get(Template, template_id)
    if template is None:
        raise NotFound(f"no template has id {template_id}")
    return template


async def list_templates(session: AsyncSession, *, limit: int, cursor: str | None) -> Page[TemplateOut]:
    """List templates oldest first, a page at a time."""
    query = select(Template).order_by(col(Template.created_at), col(Template.id)).limit(limit + 1)
    if cursor is not None:
        after, last_id = decode_time_cursor(cursor)
        query = query.where(
            or_(col(Template.created_at) > after, and_(col(Template.created_at) == after, col(Template.id) > last_id))
        )
    rows = list((await session.exec(query)).all())
    items = [TemplateOut.model_validate(row, from_attributes=True) for row in rows[:limit]]
    next_cursor = encode_cursor(rows[limit - 1].created_at.isoformat(), rows[limit - 1].id) if len(rows) > limit else None
    return Page[TemplateOut](items=items, next_cursor=next_cursor)


def as_email_template(template: Template) -> EmailTemplate:
    return EmailTemplate(template.subject, template.html, template.text)


async def preview_template(
    session: AsyncSession, template_id: str, contact_id: str, *, contacts: ServiceClient | None, public_base_url: str
) -> PreviewOut:
    """Render a template for one contact, as the email would read, without tracking.

    Raises:
        NotFound: no such template or contact.
        Unprocessable: the template cannot be rendered for this contact; the error names the part.
    """
    template = await get_template(session, template_id)
    fact = await ensure_facts(session, contact_id, contacts)
    unsubscribe_url = f"{public_base_url.rstrip('/')}/u/preview"
    links = TrackingLinks(unsubscribe_url=lambda: unsubscribe_url)
    rendered = render_for(template, recipient(fact), links)
    return PreviewOut(
        template_id=template.id, contact_id=contact_id, subject=rendered.subject, html=rendered.html, text=rendered.text
    )


def render_for(template: Template, person: Recipient, links: TrackingLinks) -> RenderedEmail:
    """Render a stored template, turning a failure into a 422 that names the part."""
    try:
        return render_email(as_email_template(template), person, links)
    except TemplateValidationError as error:
        raise Unprocessable(
            "the template is invalid",
            errors=[field_error(issue.part, issue.message) for issue in error.issues],
        ) from None
    except TemplateRenderError as error:
        raise invalid(error.part, str(error).removeprefix(f"{error.part}: "), "render") from None
