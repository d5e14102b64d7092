"""Open pixel, click redirect and unsubscribe pages (no API key; signed tokens)."""

from fastapi import APIRouter

router = APIRouter(prefix="", tags=["tracking"])
