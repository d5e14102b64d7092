"""Simulating a candidate rule set over the stored history, without writing anything."""

import asyncio
from datetime import datetime
from typing import Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.kit import clock
from services.scoring.analysis.distribution import describe
from services.scoring.history.models import ContactFacts
from services.scoring.history.service import contact_document, events_of, facts_of
from services.scoring.jobs.rescore import replay_all
from services.scoring.rules import CompiledRuleSet
from services.scoring.rulesets.service import split_body, validate_rule_set
from services.scoring.schemas import CrossingSet, SimulationOut
from services.scoring.thresholds.models import ThresholdState
from services.scoring.thresholds.triggers import mql_trigger_key

CHUNK = 500


async def simulate(
    session: AsyncSession, model: str, body: dict[str, Any], *, sample_size: int, max_contacts: int
) -> SimulationOut:
    """Replay every contact's history with the candidate rule set and summarise the scores.

    The model need not exist yet. Contacts are read in contact-id order, at most `max_contacts`.
    """
    document, _options = split_body(body)
    compiled = validate_rule_set(document)
    now = clock.now()
    try:
        totals, truncated = await _simulated_totals(session, compiled, now, max_contacts)
    finally:
        compiled.close()

    threshold = float(compiled.mql_threshold)
    mqls = await _mql_contacts(session, model)
    crossing = sorted(contact_id for contact_id, total in totals.items() if total >= threshold)
    newly = [contact_id for contact_id in crossing if contact_id not in mqls]
    lost = sorted(contact_id for contact_id in mqls if contact_id in totals and totals[contact_id] < threshold)
    return SimulationOut(
        model=model,
        at=now,
        contacts=len(totals),
        truncated=truncated,
        mql_threshold=threshold,
        distribution=describe(list(totals.values())),
        would_cross=CrossingSet(count=len(crossing), sample=crossing[:sample_size]),
        newly_crossing=CrossingSet(count=len(newly), sample=newly[:sample_size]),
        no_longer_crossing=CrossingSet(count=len(lost), sample=lost[:sample_size]),
    )


async def _simulated_totals(
    session: AsyncSession, compiled: CompiledRuleSet, now: datetime, max_contacts: int
) -> tuple[dict[str, float], bool]:
    totals: dict[str, float] = {}
    after: str | None = None
    while len(totals) < max_contacts:
        limit = min(CHUNK, max_contacts - len(totals))
        query = select(ContactFacts.contact_id).order_by(ContactFacts.contact_id).limit(limit)
        if after is not None:
            query = query.where(ContactFacts.contact_id > after)
        ids = list((await session.exec(query)).all())
        if not ids:
            return totals, False

        facts = await facts_of(session, ids)
        history = await events_of(session, ids)
        contacts = {contact_id: contact_document(facts.get(contact_id)) for contact_id in ids}
        replayed = await asyncio.to_thread(replay_all, compiled, contacts, history, now)
        totals.update((contact_id, result.score.total) for contact_id, result in replayed.items())
        after = ids[-1]

    more = select(ContactFacts.contact_id).where(ContactFacts.contact_id > (after or "")).limit(1)
    return totals, (await session.exec(more)).first() is not None


async def _mql_contacts(session: AsyncSession, model: str) -> set[str]:
    query = select(ThresholdState.contact_id).where(
        ThresholdState.trigger == mql_trigger_key(model), col(ThresholdState.fired).is_(True)
    )
    return set((await session.exec(query)).all())
