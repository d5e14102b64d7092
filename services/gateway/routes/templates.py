"""Public routes for email templates and their previews."""

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from services.gateway.keys.auth import require_scope
from services.gateway.routes.forward import forward
from services.gateway.routes.json_body import StrictJsonRoute
from services.kit.pagination import CursorQuery, LimitQuery, Page
from services.sequencer.templates.store import PreviewIn, PreviewOut, TemplateIn, TemplateOut

router = APIRouter(prefix="/v1", tags=["templates"], route_class=StrictJsonRoute)

ReadSequences = Annotated[object, Depends(require_scope("sequences:read"))]
WriteSequences = Annotated[object, Depends(require_scope("sequences:write"))]
# A preview renders a contact's fields into the template, so it reads the contact too.
ReadSequencesAndContacts = Annotated[object, Depends(require_scope("sequences:read", "contacts:read"))]


@router.post("/templates", status_code=201, response_model=TemplateOut)
async def create_template(body: TemplateIn, request: Request, _: WriteSequences) -> Response:
    """Save a template; an invalid one is a 422 whose errors name the part (subject, html or text) and line."""
    return await forward(request, "sequencer", "POST", "/templates", json=body.model_dump(mode="json"))


@router.get("/templates", response_model=Page[TemplateOut])
async def list_templates(request: Request, _: ReadSequences, limit: LimitQuery = 50, cursor: CursorQuery = None) -> Response:
    """List templates, oldest first."""
    return await forward(request, "sequencer", "GET", "/templates", params={"limit": limit, "cursor": cursor})


@router.get("/templates/{template_id}", response_model=TemplateOut)
async def read_template(template_id: str, request: Request, _: ReadSequences) -> Response:
    """Read one template."""
    return await forward(request, "sequencer", "GET", f"/templates/{template_id}")


@router.put("/templates/{template_id}", response_model=TemplateOut)
async def replace_template(template_id: str, body: TemplateIn, request: Request, _: WriteSequences) -> Response:
    """Replace a template; emails not sent yet use the new version."""
    return await forward(request, "sequencer", "PUT", f"/templates/{template_id}", json=body.model_dump(mode="json"))


@router.post("/templates/{template_id}/preview", response_model=PreviewOut)
async def preview_template(template_id: str, body: PreviewIn, request: Request, _: ReadSequencesAndContacts) -> Response:
    """Render the template for one contact: subject, HTML and text, without open and click tracking."""
    path = f"/templates/{template_id}/preview"
    return await forward(request, "sequencer", "POST", path, json=body.model_dump(mode="json"))
