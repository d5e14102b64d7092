"""A simulated sales team that reviews the MQLs once a day through the public stage API.

The team goes by the bank's records: an MQL who really subscribed (`y` = yes) is accepted as
an SQL, becomes an opportunity a few days later and a customer a few days after that. Any other MQL
is rejected with a reason: most go back to lead to be nurtured further, some are disqualified.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from services.cli.demo.client import DemoClient
from services.cli.demo.dataset import Lead

ACTOR = "sales:demo-team"
DISQUALIFY_SHARE = 0.25
# Days from accepting an MQL to the opportunity, and from the opportunity to the signed deposit.
DAYS_TO_OPPORTUNITY = (1, 4)
DAYS_TO_CUSTOMER = (2, 8)
PARALLEL_MOVES = 8

ACCEPTED = "accepted by sales: wants to hear about a term deposit"
NOT_READY = "rejected by sales: not ready to save yet, keep nurturing"
NOT_INTERESTED = "rejected by sales: not interested in saving products"
OPPORTUNITY = "adviser meeting booked"
CUSTOMER = "term deposit signed"


@dataclass
class SalesActivity:
    """Counts of what the team did; the summary itself reads the report APIs."""

    accepted: int = 0
    returned_to_lead: int = 0
    disqualified: int = 0
    opportunities: int = 0
    customers: int = 0


@dataclass
class _Deal:
    contact_id: str
    stage: str
    next_move_at: datetime


@dataclass
class SalesTeam:
    client: DemoClient
    leads: Mapping[str, Lead]
    rng: random.Random
    activity: SalesActivity = field(default_factory=SalesActivity)
    deals: list[_Deal] = field(default_factory=list)

    async def review(self, now: datetime) -> None:
        """Decide on every MQL of ours, then move the deals whose next step is due."""
        mqls = [contact for contact in await self.client.items("/v1/contacts", stage="mql") if contact["email"] in self.leads]
        moves = [self._decide(contact, now) for contact in mqls]
        moves.extend(self._advance_deals(now))
        await _run_all(moves)

    def _decide(self, contact: dict[str, str], now: datetime) -> Awaitable[None]:
        lead = self.leads[contact["email"]]
        if lead.subscribed:
            self.activity.accepted += 1
            self.deals.append(_Deal(contact["id"], "sql", now + self._days(DAYS_TO_OPPORTUNITY)))
            return self._move(contact["id"], "sql", ACCEPTED)

        if self.rng.random() < DISQUALIFY_SHARE:
            self.activity.disqualified += 1
            return self._move(contact["id"], "disqualified", NOT_INTERESTED)

        self.activity.returned_to_lead += 1
        return self._move(contact["id"], "lead", NOT_READY)

    def _advance_deals(self, now: datetime) -> list[Awaitable[None]]:
        moves: list[Awaitable[None]] = []
        for deal in self.deals:
            if deal.stage == "customer" or deal.next_move_at > now:
                continue
            if deal.stage == "sql":
                deal.stage, deal.next_move_at = "opportunity", now + self._days(DAYS_TO_CUSTOMER)
                self.activity.opportunities += 1
                moves.append(self._move(deal.contact_id, "opportunity", OPPORTUNITY))
            else:
                deal.stage = "customer"
                self.activity.customers += 1
                moves.append(self._move(deal.contact_id, "customer", CUSTOMER))
        return moves

    def _days(self, bounds: tuple[int, int]) -> timedelta:
        return timedelta(days=self.rng.randint(*bounds), hours=self.rng.randint(0, 8))

    async def _move(self, contact_id: str, stage: str, reason: str) -> None:
        body = {"stage": stage, "reason": reason, "actor": ACTOR}
        await self.client.post(f"/v1/contacts/{contact_id}/stage", body)


async def _run_all(moves: list[Awaitable[None]]) -> None:
    gate = asyncio.Semaphore(PARALLEL_MOVES)

    async def run(move: Awaitable[None]) -> None:
        async with gate:
            await move

    await asyncio.gather(*(run(move) for move in moves))
