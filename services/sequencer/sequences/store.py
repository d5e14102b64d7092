"""Creating, editing, activating and pausing sequences, and reading their versions."""

from collections import OrderedDict
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import and_, or_
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.kit import clock
from services.kit.consumer import BATCH_CACHE
from services.kit.logging import get_logger
from services.kit.pagination import Page, decode_time_cursor, encode_cursor
from services.kit.problems import Conflict, NotFound, Unprocessable, field_error
from services.sequencer.ids import new_id
from services.sequencer.sequences import SequenceDefinition, SequenceValidationError, parse_sequence
from services.sequencer.sequences.errors import format_path
from services.sequencer.sequences.models import Sequence, SequenceVersion
from services.sequencer.templates.models import Template

# Parsed definitions by (sequence id, version, last edit); a version in use never changes.
_DEFINITIONS: OrderedDict[tuple[str, int, str], SequenceDefinition] = OrderedDict()
_CACHE_SIZE = 512

log = get_logger(__name__)


class SequenceOut(BaseModel):
    id: str
    name: str
    status: str
    version: int
    definition: SequenceDefinition
    created_at: datetime
    updated_at: datetime
    activated_at: datetime | None


def parse_or_422(body: dict[str, Any]) -> SequenceDefinition:
    """Validate a definition, raising a 422 whose errors name each field by its path."""
    try:
        return parse_sequence(body)
    except SequenceValidationError as error:
        errors = [field_error(item.path or "body", item.message) for item in error.errors]
        fields = ", ".join(item.path or "body" for item in error.errors)
        raise Unprocessable(f"invalid sequence: {fields}", errors=errors) from None


def definition_document(definition: SequenceDefinition) -> dict[str, Any]:
    """Return the definition as stored: JSON with every step id filled in."""
    return definition.model_dump(mode="json", by_alias=True, exclude_none=True)


async def create_sequence(session: AsyncSession, body: dict[str, Any]) -> tuple[Sequence, SequenceVersion]:
    """Store a new sequence as a draft with version 1 (the caller commits)."""
    definition = parse_or_422(body)
    now = clock.now()
    sequence = Sequence(id=new_id("seq"), name=definition.name, created_at=now, updated_at=now)
    version = SequenceVersion(
        sequence_id=sequence.id, version=1, definition=definition_document(definition), created_at=now, updated_at=now
    )
    session.add(sequence)
    session.add(version)
    return sequence, version


async def update_sequence(session: AsyncSession, sequence_id: str, body: dict[str, Any]) -> tuple[Sequence, SequenceVersion]:
    """Replace a draft's definition, or add a version to a sequence that was activated."""
    definition = parse_or_422(body)
    sequence = await get_sequence(session, sequence_id, lock=True)
    now = clock.now()
    if sequence.status == "draft":
        version = await get_version(session, sequence.id, sequence.current_version)
        version.definition = definition_document(definition)
        version.updated_at = now
    else:
        await check_templates_exist(session, definition)
        version = SequenceVersion(
            sequence_id=sequence.id,
            version=sequence.current_version + 1,
            definition=definition_document(definition),
            created_at=now,
            updated_at=now,
        )
        session.add(version)
        sequence.current_version = version.version
        log.info("sequence.versioned", sequence_id=sequence.id, version=version.version)
    sequence.name = definition.name
    sequence.updated_at = now
    return sequence, version


async def activate_sequence(session: AsyncSession, sequence_id: str) -> tuple[Sequence, SequenceVersion]:
    """Start a draft or resume a paused sequence; every template it names must exist."""
    sequence = await get_sequence(session, sequence_id, lock=True)
    version = await get_version(session, sequence.id, sequence.current_version)
    if sequence.status != "active":
        await check_templates_exist(session, definition_of(version))
        sequence.status = "active"
        sequence.activated_at = sequence.activated_at or clock.now()
        sequence.updated_at = clock.now()
        log.info("sequence.activated", sequence_id=sequence.id, version=version.version)
    return sequence, version


async def pause_sequence(session: AsyncSession, sequence_id: str) -> tuple[Sequence, SequenceVersion]:
    """Stop sending; enrolled contacts keep their place and continue when the sequence is activated again."""
    sequence = await get_sequence(session, sequence_id, lock=True)
    if sequence.status == "draft":
        raise Conflict(f"sequence {sequence_id} is a draft; only an active sequence can be paused")
    if sequence.status == "active":
        sequence.status = "paused"
        sequence.updated_at = clock.now()
        log.info("sequence.paused", sequence_id=sequence.id)
    return sequence, await get_version(session, sequence.id, sequence.current_version)


async def check_templates_exist(session: AsyncSession, definition: SequenceDefinition) -> None:
    """Raise a 422 naming each email step whose template does not exist."""
    wanted = {
        format_path((*location, "email", "template_id")): step.email.template_id
        for location, step in definition.iter_steps()
        if step.email is not None
    }
    if not wanted:
        return
    found = set((await session.exec(select(Template.id).where(col(Template.id).in_(set(wanted.values()))))).all())
    errors = [
        field_error(path, f"no template has id {template_id!r}", "not_found")
        for path, template_id in wanted.items()
        if template_id not in found
    ]
    if errors:
        raise Unprocessable("the sequence names templates that do not exist", errors=errors)


async def get_sequence(session: AsyncSession, sequence_id: str, *, lock: bool = False) -> Sequence:
    query = select(Sequence).where(Sequence.id == sequence_id)
    if lock:
        query = query.with_for_update()
    sequence = (await session.exec(query)).first()
    if sequence is None:
        raise NotFound(f"no sequence has id {sequence_id}")
    return sequence


async def get_version(session: AsyncSession, sequence_id: str, version: int) -> SequenceVersion:
    query = select(SequenceVersion).where(SequenceVersion.sequence_id == sequence_id, SequenceVersion.version == version)
    row = (await session.exec(query)).first()
    if row is None:
        raise NotFound(f"sequence {sequence_id} has no version {version}")
    return row


def definition_of(version: SequenceVersion) -> SequenceDefinition:
    """Return the parsed definition of a stored version, parsing each version once per process."""
    key = (version.sequence_id, version.version, version.updated_at.isoformat())
    cached = _DEFINITIONS.get(key)
    if cached is not None:
        _DEFINITIONS.move_to_end(key)
        return cached

    definition = parse_sequence(version.definition)
    _DEFINITIONS[key] = definition
    if len(_DEFINITIONS) > _CACHE_SIZE:
        _DEFINITIONS.popitem(last=False)
    return definition


async def load_definition(session: AsyncSession, sequence_id: str, version: int) -> SequenceDefinition:
    """Return the definition of one version; a consumer's batch reads each version once."""
    cache = session.info.get(BATCH_CACHE)
    versions: dict[tuple[str, int], SequenceDefinition] | None = cache.setdefault("versions", {}) if cache is not None else None
    if versions is not None and (sequence_id, version) in versions:
        return versions[(sequence_id, version)]
    definition = definition_of(await get_version(session, sequence_id, version))
    if versions is not None:
        versions[(sequence_id, version)] = definition
    return definition


def sequence_out(sequence: Sequence, version: SequenceVersion) -> SequenceOut:
    return SequenceOut(
        id=sequence.id,
        name=sequence.name,
        status=sequence.status,
        version=version.version,
        definition=definition_of(version),
        created_at=sequence.created_at,
        updated_at=sequence.updated_at,
        activated_at=sequence.activated_at,
    )


async def list_sequences(session: AsyncSession, *, limit: int, cursor: str | None, status: str | None) -> Page[SequenceOut]:
    """List sequences oldest first with their current version."""
    query = select(Sequence).order_by(col(Sequence.created_at), col(Sequence.id)).limit(limit + 1)
    if status is not None:
        query = query.where(Sequence.status == status)
    if cursor is not None:
        after, last_id = decode_time_cursor(cursor)
        query = query.where(
            or_(col(Sequence.created_at) > after, and_(col(Sequence.created_at) == after, col(Sequence.id) > last_id))
        )
    rows = list((await session.exec(query)).all())
    items = [sequence_out(row, await get_version(session, row.id, row.current_version)) for row in rows[:limit]]
    next_cursor = encode_cursor(rows[limit - 1].created_at.isoformat(), rows[limit - 1].id) if len(rows) > limit else None
    return Page[SequenceOut](items=items, next_cursor=next_cursor)


async def active_definitions(session: AsyncSession) -> list[tuple[Sequence, SequenceDefinition]]:
    """Return every active sequence with the definition of its current version, for trigger matching.

    A consumer's batch reads them once, as if the whole batch ran at the instant of its first event.
    """
    cache = session.info.get(BATCH_CACHE)
    if cache is not None and "active" in cache:
        return list(cache["active"])
    query = (
        select(Sequence, SequenceVersion)
        .join(
            SequenceVersion,
            and_(
                col(SequenceVersion.sequence_id) == col(Sequence.id),
                col(SequenceVersion.version) == col(Sequence.current_version),
            ),
        )
        .where(Sequence.status == "active")
        .order_by(col(Sequence.created_at))
    )
    active = [(sequence, definition_of(version)) for sequence, version in (await session.exec(query)).all()]
    if cache is not None:
        cache["active"] = active
    return list(active)
