"""Simulated recipients: they open and click the nurture emails as a mail client would.

Whether a person opens or clicks depends only on the real outcome `y`: people who later subscribed
a term deposit engage more. Nothing else about the person plays a part, so any link the score
finds between engagement and the outcome is the one put in here, and the fit rules get no help.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import httpx

from services.cli.demo.client import MAX_TRIES, TRANSPORT_ERRORS
from services.cli.demo.dataset import Lead
from services.cli.demo.errors import DemoError
from services.cli.demo.mailbox import Delivered

# Chance that a person opens one email, and that a person who opened it clicks its link.
OPEN_PROBABILITY = {True: 0.45, False: 0.18}
CLICK_PROBABILITY = {True: 0.40, False: 0.12}
# A full desktop browser user agent, so the platform's bot rules count the hits as a person's.
BROWSER_USER_AGENT = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36"
)
PARALLEL_HITS = 16


@dataclass
class Engagement:
    """Emails the simulated recipients opened and clicked so far."""

    opened: int = 0
    clicked: int = 0


class TrackingError(DemoError):
    """The gateway did not accept a tracking request as a mail client would expect."""


def mail_client(gateway_url: str) -> httpx.AsyncClient:
    """Return the HTTP client the recipients read their email with.

    It sends no API key, because tracking routes are public, and follows no redirect, so a click
    stops at the gateway instead of going on to the bank's (made-up) site.
    """
    return httpx.AsyncClient(
        base_url=gateway_url, headers={"User-Agent": BROWSER_USER_AGENT}, follow_redirects=False, timeout=60.0
    )


class Recipients:
    """The people behind the leads' addresses, reading their email through the gateway's tracking routes."""

    def __init__(self, http: httpx.AsyncClient, leads: Mapping[str, Lead], rng: random.Random) -> None:
        self.http = http
        self.leads = leads
        self.rng = rng
        self.engagement = Engagement()

    def decide(self, message: Delivered) -> list[str]:
        """Return the tracking paths this recipient requests for one email: none, the pixel, or pixel and link."""
        lead = self.leads.get(message.recipient)
        if lead is None or message.open_path is None:
            return []
        if self.rng.random() >= OPEN_PROBABILITY[lead.subscribed]:
            return []
        if message.click_paths and self.rng.random() < CLICK_PROBABILITY[lead.subscribed]:
            return [message.open_path, message.click_paths[0]]
        return [message.open_path]

    async def read(self, messages: Sequence[Delivered]) -> None:
        """Let each recipient read the emails delivered to them, a few requests at a time."""
        visits = [paths for paths in (self.decide(message) for message in messages) if paths]
        gate = asyncio.Semaphore(PARALLEL_HITS)

        async def visit(paths: list[str]) -> None:
            async with gate:
                for path in paths:
                    await self._request(path)

        await asyncio.gather(*(visit(paths) for paths in visits))
        self.engagement.opened += len(visits)
        self.engagement.clicked += sum(1 for paths in visits if len(paths) > 1)

    async def _request(self, path: str) -> None:
        for attempt in range(1, MAX_TRIES + 1):
            try:
                response = await self.http.get(path)
                break
            except TRANSPORT_ERRORS:
                # The gateway closed a keep-alive connection as the request went out, so the hit never arrived.
                if attempt == MAX_TRIES:
                    raise
                await asyncio.sleep(0.1 * attempt)
        if response.status_code not in (200, 302):
            raise TrackingError(f"GET {path[:40]}... returned {response.status_code}: {response.text[:200]}")
