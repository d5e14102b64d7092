"""Public routes for the nurturing reports."""

from fastapi import APIRouter

router = APIRouter(prefix="/v1", tags=["reports"])
