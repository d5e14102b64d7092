"""Provider webhooks (no API key; each provider is verified its own way)."""

from fastapi import APIRouter

router = APIRouter(prefix="/v1", tags=["webhooks"])
