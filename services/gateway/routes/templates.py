"""Public routes for email templates and their previews."""

from fastapi import APIRouter

router = APIRouter(prefix="/v1", tags=["templates"])
