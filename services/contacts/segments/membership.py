"""Keeping segment membership current and publishing who enters and who leaves.

Membership is re-evaluated in three cases. The contacts a transaction changed are evaluated in the
segments whose filter reads what changed. Every contact is evaluated when a segment is created.
The worker's periodic check evaluates segments with rolling windows, whose members can change
without any new data.
Inserts and deletes return the rows they really changed, so two evaluations racing each other
publish each entry and exit once.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import delete, literal, union_all
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.contacts.attributes.types import AttributeDefinition
from services.contacts.changes import CREATED, ContactChanges
from services.contacts.segments.compiler import CONTACT, FilterCompiler, member_query
from services.contacts.segments.filter import FilterNode
from services.contacts.segments.models import Segment, SegmentMembership
from services.contacts.segments.validation import load_filter
from services.contacts.settings import ContactsSettings
from services.contacts.timeline.models import TimelineEvent
from services.kit import clock
from services.kit.db import insert_new
from services.kit.contracts import contacts as topics
from services.kit.logging import get_logger
from services.kit.outbox import Outbox

log = get_logger(__name__)

MEMBERSHIP = SegmentMembership.__table__  # type: ignore[attr-defined]
# Ids per statement, well below SQLite's limit of 32,766 bound parameters.
ID_CHUNK = 500
# A window moves past an event a moment after `occurred_at + days`, because the window includes its start.
WINDOW_MARGIN = dt.timedelta(seconds=1)
# Parsed filters by (segment id, updated_at); parsing is the costly part of evaluating one contact.
_PARSED: dict[tuple[str, dt.datetime], FilterNode] = {}
_PARSED_MAX = 1000


def dialect_of(session: AsyncSession) -> str:
    return session.bind.dialect.name  # type: ignore[union-attr]


def parsed_filter(segment: Segment) -> FilterNode:
    """Return the segment's filter as models, parsed once per version of the segment."""
    key = (segment.id, segment.updated_at)
    node = _PARSED.get(key)
    if node is None:
        if len(_PARSED) >= _PARSED_MAX:
            _PARSED.clear()
        node = _PARSED[key] = load_filter(segment.filter)
    return node


def _compiler(session: AsyncSession, definitions: Mapping[str, AttributeDefinition], settings: ContactsSettings) -> FilterCompiler:
    return FilterCompiler(dialect_of(session), clock.now(), definitions, default_consent=settings.default_consent)


async def matching_contacts(
    session: AsyncSession,
    segment: Segment,
    definitions: Mapping[str, AttributeDefinition],
    settings: ContactsSettings,
) -> set[str]:
    """Return the ids of every contact that matches the segment now."""
    query = member_query(_compiler(session, definitions, settings).compile(parsed_filter(segment)))
    return set((await session.exec(query)).scalars().all())


async def _matches_by_segment(
    session: AsyncSession,
    plans: Sequence[tuple[Segment, list[str]]],
    definitions: Mapping[str, AttributeDefinition],
    settings: ContactsSettings,
) -> dict[str, set[str]]:
    """Evaluate several segments, each for its own contacts, in as few queries as the parameter limit allows."""
    compiler = _compiler(session, definitions, settings)
    matched: dict[str, set[str]] = {segment.id: set() for segment, _ in plans}
    parts = [
        member_query(compiler.compile(parsed_filter(segment)))
        .add_columns(literal(segment.id).label("segment_id"))
        .where(CONTACT.c.id.in_(chunk))
        for segment, scope in plans
        for chunk in _chunks(scope)
    ]
    for group in _groups(parts, [len(chunk) for _, scope in plans for chunk in _chunks(scope)]):
        query = group[0] if len(group) == 1 else union_all(*group)
        for contact_id, segment_id in (await session.exec(query)).all():  # type: ignore[call-overload]
            matched[segment_id].add(contact_id)
    return matched


def _groups(parts: list[Any], sizes: list[int]) -> Iterable[list[Any]]:
    group: list[Any] = []
    total = 0
    for part, size in zip(parts, sizes, strict=True):
        if group and total + size > ID_CHUNK:
            yield group
            group, total = [], 0
        group.append(part)
        total += size
    if group:
        yield group


async def sync_members(
    session: AsyncSession,
    outbox: Outbox,
    segment_id: str,
    matched: set[str],
    scope: Collection[str] | None,
) -> tuple[list[str], list[str]]:
    """Make the stored members equal `matched` (within `scope` when given); return who entered and who left."""
    current = await current_members(session, segment_id, scope)
    now = clock.now()
    entered = await _insert(session, segment_id, sorted(matched - current), now)
    left = await _delete(session, segment_id, sorted(current - matched))

    for contact_id in entered:
        payload = topics.SegmentMembershipChanged(segment_id=segment_id, contact_id=contact_id, at=now)
        outbox.publish(session, topics.SEGMENT_ENTERED, payload)
    for contact_id in left:
        payload = topics.SegmentMembershipChanged(segment_id=segment_id, contact_id=contact_id, at=now)
        outbox.publish(session, topics.SEGMENT_LEFT, payload)
    if entered or left:
        log.info("segment.members_changed", segment_id=segment_id, entered=len(entered), left=len(left))
    return entered, left


async def current_members(session: AsyncSession, segment_id: str, scope: Collection[str] | None) -> set[str]:
    query = select(SegmentMembership.contact_id).where(SegmentMembership.segment_id == segment_id)
    if scope is None:
        return set((await session.exec(query)).all())

    members: set[str] = set()
    for chunk in _chunks(list(scope)):
        members.update((await session.exec(query.where(col(SegmentMembership.contact_id).in_(chunk)))).all())
    return members


async def _insert(session: AsyncSession, segment_id: str, contact_ids: list[str], now: dt.datetime) -> list[str]:
    rows = [{"segment_id": segment_id, "contact_id": contact_id, "entered_at": now} for contact_id in contact_ids]
    return [contact_id for (contact_id,) in await insert_new(session, MEMBERSHIP, rows, MEMBERSHIP.c.contact_id)]


async def _delete(session: AsyncSession, segment_id: str, contact_ids: list[str]) -> list[str]:
    deleted: list[str] = []
    for chunk in _chunks(contact_ids):
        statement = (
            delete(MEMBERSHIP)
            .where(MEMBERSHIP.c.segment_id == segment_id, MEMBERSHIP.c.contact_id.in_(chunk))
            .returning(MEMBERSHIP.c.contact_id)
        )
        deleted.extend((await session.exec(statement)).scalars().all())  # type: ignore[call-overload]
    return deleted


async def refresh_segment(
    session: AsyncSession,
    outbox: Outbox,
    segment: Segment,
    definitions: Mapping[str, AttributeDefinition],
    settings: ContactsSettings,
) -> tuple[list[str], list[str]]:
    """Re-evaluate every contact of one segment and plan its next rolling-window check."""
    matched = await matching_contacts(session, segment, definitions, settings)
    result = await sync_members(session, outbox, segment.id, matched, None)
    segment.next_window_check_at = await next_window_check(session, segment, settings)
    session.add(segment)
    return result


async def refresh_for_changes(
    session: AsyncSession,
    outbox: Outbox,
    changes: ContactChanges,
    definitions: Mapping[str, AttributeDefinition],
    settings: ContactsSettings,
) -> None:
    """Re-evaluate the changed contacts in the segments whose filters read what changed."""
    segments = (await session.exec(select(Segment))).all()
    plans: list[tuple[Segment, list[str]]] = []
    for segment in segments:
        scope = [
            contact_id
            for contact_id in changes.touched()
            if depends_on(segment, changes.fields.get(contact_id, set()), changes.event_types.get(contact_id, set()), contact_id in changes.scored)
        ]
        if scope:
            plans.append((segment, scope))
        _bring_window_check_forward(segment, changes)
    if not plans:
        return

    matched = await _matches_by_segment(session, plans, definitions, settings)
    current = await _memberships(session, {contact_id for _, scope in plans for contact_id in scope})
    for segment, scope in plans:
        in_scope = set(scope)
        members = {contact_id for contact_id in current.get(segment.id, set()) if contact_id in in_scope}
        if members != matched[segment.id]:
            await sync_members(session, outbox, segment.id, matched[segment.id], scope)


async def _memberships(session: AsyncSession, contact_ids: set[str]) -> dict[str, set[str]]:
    """Return the segments of the given contacts as {segment id: contact ids}."""
    found: dict[str, set[str]] = {}
    for chunk in _chunks(sorted(contact_ids)):
        query = select(SegmentMembership.segment_id, SegmentMembership.contact_id).where(col(SegmentMembership.contact_id).in_(chunk))
        for segment_id, contact_id in (await session.exec(query)).all():
            found.setdefault(segment_id, set()).add(contact_id)
    return found


def depends_on(segment: Segment, fields: set[str], event_types: set[str], scored: bool) -> bool:
    """Tell whether a contact's changes can change its membership of `segment`."""
    if CREATED in fields:
        return True

    if event_types & set(segment.event_types):
        return True

    return any(_reads(path, fields, scored) for path in segment.fields)


def _reads(path: str, fields: set[str], scored: bool) -> bool:
    if path.startswith("score."):
        return scored

    if path == "updated_at":
        return bool(fields)

    root = path.split(".")[0]
    if root in ("company", "consent"):
        return root in fields

    return path in fields


def _bring_window_check_forward(segment: Segment, changes: ContactChanges) -> None:
    for window in segment.windows:
        oldest = changes.oldest_event_by_type.get(window["event"])
        if oldest is None:
            continue
        due = oldest + dt.timedelta(days=window["days"]) + WINDOW_MARGIN
        if segment.next_window_check_at is None or due < segment.next_window_check_at:
            segment.next_window_check_at = due


async def next_window_check(session: AsyncSession, segment: Segment, settings: ContactsSettings) -> dt.datetime | None:
    """Return when a rolling window of the segment next moves past an event, capped by the recheck interval."""
    if not segment.windows:
        return None

    now = clock.now()
    candidates = [now + dt.timedelta(seconds=settings.segment_window_recheck_s)]
    for window in segment.windows:
        length = dt.timedelta(days=window["days"])
        query = select(TimelineEvent.occurred_at).where(
            TimelineEvent.type == window["event"], TimelineEvent.occurred_at >= now - length
        )
        oldest = (await session.exec(query.order_by(col(TimelineEvent.occurred_at)).limit(1))).first()
        if oldest is not None:
            candidates.append(oldest + length + WINDOW_MARGIN)
    return min(candidates)


def _chunks(items: Sequence[str]) -> Iterable[list[str]]:
    for start in range(0, len(items), ID_CHUNK):
        yield list(items[start : start + ID_CHUNK])
