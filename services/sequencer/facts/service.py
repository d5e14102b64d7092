"""Reading and updating the local contact copy, and turning it into what rules and templates see.

Every update carries the time of the event behind it and is ignored when the stored value is newer,
so events that the queue delivers out of order never move a fact backwards.
"""

from collections.abc import Mapping, Set
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.kit import clock
from services.kit.consumer import BATCH_CACHE
from services.kit.contracts.contacts import ContactSnapshot
from services.kit.erasure import erased_key
from services.kit.http import ServiceClient
from services.kit.logging import get_logger
from services.kit.problems import NotFound, Problem
from services.sequencer.facts.models import ContactFact, ErasedContact
from services.sequencer.sequences import ContactFacts, Stage
from services.sequencer.templates import Recipient

OVERALL = "*"
CONSENT_STATUSES = frozenset({"subscribed", "unsubscribed", "bounced", "complained"})
_OVERALL_KEYS = frozenset({OVERALL, "status", "overall", "global", ""})

# Key of the batch cache entry that contains the batch's `BatchFacts`.
_BATCH_FACTS = "facts"

log = get_logger(__name__)


def contact_hash(contact_id: str) -> str:
    """Return the one-way hash under which an erased contact is remembered."""
    return erased_key(contact_id)


@dataclass
class BatchFacts:
    """The facts and erasures of a batch's contacts, read at once for the batch's transaction."""

    checked: set[str] = field(default_factory=set)
    erased: set[str] = field(default_factory=set)
    facts: dict[str, ContactFact] = field(default_factory=dict)


def _batch_facts(session: AsyncSession) -> BatchFacts | None:
    cache = session.info.get(BATCH_CACHE)
    return cache.get(_BATCH_FACTS) if cache is not None else None


async def prefetch_facts(session: AsyncSession, contact_ids: Set[str]) -> None:
    """Read the facts rows and erasures of a batch's contacts with two statements."""
    ids = sorted(contact_ids)
    hashes = {contact_hash(contact_id): contact_id for contact_id in ids}
    erased_query = select(ErasedContact.contact_hash).where(col(ErasedContact.contact_hash).in_(list(hashes)))
    erased = {hashes[value] for value in (await session.exec(erased_query)).all()}
    rows = (await session.exec(select(ContactFact).where(col(ContactFact.contact_id).in_(ids)))).all()
    session.info[BATCH_CACHE][_BATCH_FACTS] = BatchFacts(set(ids), erased, {row.contact_id: row for row in rows})


def forget_batch_cache(session: AsyncSession) -> None:
    """Drop everything the batch cached (facts, enrolments, definitions): an erasure just detached its rows."""
    cache = session.info.get(BATCH_CACHE)
    if cache is not None:
        cache.clear()


async def is_erased(session: AsyncSession, contact_id: str) -> bool:
    batch = _batch_facts(session)
    if batch is not None and contact_id in batch.checked:
        return contact_id in batch.erased
    return await session.get(ErasedContact, contact_hash(contact_id)) is not None


async def get_facts(session: AsyncSession, contact_id: str, *, lock: bool = False) -> ContactFact | None:
    """Return the stored facts of a contact; `lock` takes the row lock on PostgreSQL."""
    batch = _batch_facts(session)
    if batch is not None and not lock and contact_id in batch.checked:
        return batch.facts.get(contact_id)
    query = select(ContactFact).where(ContactFact.contact_id == contact_id)
    if lock:
        query = query.with_for_update()
    return (await session.exec(query)).first()


async def _facts_for_update(session: AsyncSession, contact_id: str) -> ContactFact | None:
    """Return the row to update, created empty when missing; None for an erased contact."""
    if await is_erased(session, contact_id):
        return None
    fact = await get_facts(session, contact_id)
    if fact is None:
        fact = ContactFact(contact_id=contact_id, updated_at=clock.now())
        session.add(fact)
        batch = _batch_facts(session)
        if batch is not None and contact_id in batch.checked:
            batch.facts[contact_id] = fact
    return fact


def _newer(stored: datetime | None, incoming: datetime) -> bool:
    return stored is None or incoming >= stored


async def apply_snapshot(session: AsyncSession, snapshot: ContactSnapshot, at: datetime) -> ContactFact | None:
    """Copy a contact snapshot (from contact.changed) unless a newer one was applied."""
    fact = await _facts_for_update(session, snapshot.id)
    if fact is None or not _newer(fact.profile_at, at):
        return fact

    fact.email = snapshot.email
    fact.first_name = snapshot.first_name
    fact.last_name = snapshot.last_name
    fact.timezone = snapshot.timezone
    fact.attributes = dict(snapshot.attributes)
    fact.company = dict(snapshot.company or {})
    fact.profile_at = at
    _set_stage(fact, snapshot.stage, at)
    for topic, status in consent_entries(snapshot.consent).items():
        _set_consent(fact, topic, status, at)
    fact.updated_at = clock.now()
    return fact


async def apply_stage(session: AsyncSession, contact_id: str, stage: str, at: datetime) -> ContactFact | None:
    fact = await _facts_for_update(session, contact_id)
    if fact is not None:
        _set_stage(fact, stage, at)
        fact.updated_at = clock.now()
    return fact


async def apply_consent(
    session: AsyncSession, contact_id: str, topic: str | None, status: str, at: datetime
) -> ContactFact | None:
    fact = await _facts_for_update(session, contact_id)
    if fact is not None:
        _set_consent(fact, topic or OVERALL, status, at)
        fact.updated_at = clock.now()
    return fact


async def apply_segment(
    session: AsyncSession, contact_id: str, segment_id: str, member: bool, at: datetime
) -> ContactFact | None:
    fact = await _facts_for_update(session, contact_id)
    if fact is None:
        return None
    current = fact.segments.get(segment_id)
    if current is None or _newer(datetime.fromisoformat(current["at"]), at):
        fact.segments = {**fact.segments, segment_id: {"member": member, "at": at.isoformat()}}
        fact.updated_at = clock.now()
    return fact


async def apply_score(
    session: AsyncSession, contact_id: str, model: str, total: float, at: datetime
) -> ContactFact | None:
    fact = await _facts_for_update(session, contact_id)
    if fact is None:
        return None
    current = fact.scores.get(model)
    if current is None or _newer(datetime.fromisoformat(current["at"]), at):
        fact.scores = {**fact.scores, model: {"total": total, "at": at.isoformat()}}
        fact.updated_at = clock.now()
    return fact


def _set_stage(fact: ContactFact, stage: str | None, at: datetime) -> None:
    if stage and _newer(fact.stage_at, at):
        fact.stage = stage
        fact.stage_at = at


def _set_consent(fact: ContactFact, topic: str, status: str, at: datetime) -> None:
    current = fact.consent.get(topic)
    if current is None or _newer(datetime.fromisoformat(current["at"]), at):
        fact.consent = {**fact.consent, topic: {"status": status, "at": at.isoformat()}}


def consent_entries(consent: Mapping[str, Any]) -> dict[str, str]:
    """Read consent statuses per topic from a contact snapshot's `consent` object.

    Accepted shapes: `{"status": "subscribed", "topics": {"news": "unsubscribed"}}`, topics mapped to
    a status or to `{"status": ...}`, and `*`, `overall` or `global` for the contact's overall consent.
    """
    entries: dict[str, str] = {}
    for key, value in consent.items():
        if key == "topics" and isinstance(value, Mapping):
            for topic, topic_value in value.items():
                status = _status_of(topic_value)
                if status is not None:
                    entries[str(topic)] = status
            continue
        status = _status_of(value)
        if status is not None:
            entries[OVERALL if key in _OVERALL_KEYS else str(key)] = status
    return entries


def _status_of(value: Any) -> str | None:
    if isinstance(value, Mapping):
        value = value.get("status")
    return value if isinstance(value, str) and value in CONSENT_STATUSES else None


def consent_status(fact: ContactFact, topic: str | None = None) -> str | None:
    """Return the consent status that applies to an email of `topic`: a topic's own, else the overall."""
    overall = (fact.consent.get(OVERALL) or {}).get("status")
    if overall is not None and overall != "subscribed":
        return str(overall)
    if topic is not None:
        own = (fact.consent.get(topic) or {}).get("status")
        if own is not None:
            return str(own)
    return str(overall) if overall is not None else None


def blocking_consent(fact: ContactFact, topic: str | None = None) -> str | None:
    """Return why no marketing email of `topic` may go to the contact, or None when one may.

    NOTE: a contact without any consent record counts as sendable here. At send time the worker asks
    the contacts service's sendability route first, and uses this only when that service cannot answer.
    """
    status = consent_status(fact, topic)
    if status is None or status == "subscribed":
        return None
    return status


def segment_ids(fact: ContactFact) -> frozenset[str]:
    return frozenset(segment for segment, entry in fact.segments.items() if entry.get("member"))


def score_totals(fact: ContactFact) -> dict[str, float]:
    return {model: float(entry["total"]) for model, entry in fact.scores.items() if "total" in entry}


def stage_of(fact: ContactFact) -> Stage | None:
    try:
        return Stage(fact.stage) if fact.stage else None
    except ValueError:
        return None


def evaluation_facts(fact: ContactFact, engagement: Mapping[str, Set[str]] | None = None) -> ContactFacts:
    """Return the facts that branch and goal evaluation read."""
    return ContactFacts(
        attributes=dict(fact.attributes),
        segment_ids=segment_ids(fact),
        stage=stage_of(fact),
        scores=score_totals(fact),
        engagement=dict(engagement or {}),
    )


def recipient(fact: ContactFact) -> Recipient:
    """Return the contact as templates see it."""
    interests = fact.attributes.get("interests")
    return Recipient(
        contact={
            "id": fact.contact_id,
            "email": fact.email,
            "first_name": fact.first_name,
            "last_name": fact.last_name,
            "timezone": fact.timezone,
        },
        attributes=dict(fact.attributes),
        company=dict(fact.company),
        stage=fact.stage,
        segment_ids=segment_ids(fact),
        interests=[str(item) for item in interests] if isinstance(interests, list) else (),
    )


async def fetch_from_contacts(session: AsyncSession, contact_id: str, contacts: ServiceClient) -> ContactFact:
    """Copy a contact from the contacts service when no event has brought it here yet.

    Raises:
        NotFound: the contact does not exist or was erased.
        Unavailable: the contacts service cannot be reached.
    """
    if await is_erased(session, contact_id):
        raise NotFound(f"contact {contact_id} was erased")

    try:
        document = await contacts.request("GET", f"/contacts/{contact_id}")
    except Problem as problem:
        if problem.status == 404:
            raise NotFound(f"no contact has id {contact_id}") from None
        raise
    at = _parse_time(document.get("updated_at")) or clock.now()
    snapshot = ContactSnapshot.model_validate(
        {
            "id": document["id"],
            "email": document["email"],
            "first_name": document.get("first_name"),
            "last_name": document.get("last_name"),
            "timezone": document.get("timezone"),
            "attributes": document.get("attributes") or {},
            "company": document.get("company"),
            "stage": document.get("stage") or "subscriber",
            "consent": document.get("consent") or {},
        }
    )
    fact = await apply_snapshot(session, snapshot, at)
    if fact is None:
        raise NotFound(f"contact {contact_id} was erased")
    for model, score in (document.get("scores") or {}).items():
        total = score.get("total") if isinstance(score, Mapping) else score
        if isinstance(total, int | float):
            await apply_score(session, contact_id, str(model), float(total), at)
    log.info("facts.fetched", contact_id=contact_id)
    return fact


async def ensure_facts(session: AsyncSession, contact_id: str, contacts: ServiceClient | None) -> ContactFact:
    """Return the facts of a contact with an email address, asking the contacts service if needed.

    Raises:
        NotFound: the contact is unknown here and no contacts client was given, or it does not exist.
    """
    fact = await get_facts(session, contact_id)
    if fact is not None and fact.email:
        return fact
    if contacts is None:
        raise NotFound(f"contact {contact_id} is not known to the sequencer yet")
    return await fetch_from_contacts(session, contact_id, contacts)


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None
