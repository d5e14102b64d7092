"""Score models and rule-set versions: validation, versioning, and the compiled rule sets in memory.

A rule set is validated and compiled by the rules library before it is stored, so every stored
version is one the engine runs. Compiled rule sets are kept per process, keyed by model and
version: versions never change, so a cached one never goes stale.
"""

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func
from sqlalchemy.exc import IntegrityError
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.kit import clock
from services.kit.logging import get_logger
from services.kit.problems import Conflict, NotFound, Unprocessable
from services.scoring.db import dialect_name
from services.scoring.rules import CompiledRuleSet, RuleSet, RuleSetInvalid, load_rule_set, parse_rule_set
from services.scoring.rulesets.models import RuleSetVersion, ScoreModel

# Fields of a PUT body that configure the model rather than belong to the rule set.
MODEL_OPTIONS = ("description", "demote_below_threshold")
COMPILED_CACHE_SIZE = 128

log = get_logger(__name__)


@dataclass(frozen=True)
class ActiveModel:
    """A model that scores new events, with its active rule set compiled."""

    name: str
    version: int
    compiled: CompiledRuleSet
    demote_below_threshold: bool

    @property
    def rule_set(self) -> RuleSet:
        return self.compiled.rule_set

    @property
    def mql_threshold(self) -> float:
        return float(self.compiled.mql_threshold)


@dataclass(frozen=True)
class PutResult:
    model: ScoreModel
    version: RuleSetVersion
    version_created: bool


class CompiledCache:
    """Compiled rule sets of this process, least recently used first out."""

    def __init__(self, size: int = COMPILED_CACHE_SIZE) -> None:
        self.size = size
        self._items: OrderedDict[tuple[str, int], CompiledRuleSet] = OrderedDict()

    def get(self, model: str, version: int) -> CompiledRuleSet | None:
        key = (model, version)
        compiled = self._items.get(key)
        if compiled is not None:
            self._items.move_to_end(key)
        return compiled

    def put(self, model: str, version: int, compiled: CompiledRuleSet) -> None:
        self._items[(model, version)] = compiled
        self._items.move_to_end((model, version))
        while len(self._items) > self.size:
            _, evicted = self._items.popitem(last=False)
            evicted.close()


compiled_cache = CompiledCache()


def validate_rule_set(document: dict[str, Any]) -> CompiledRuleSet:
    """Validate and compile a rule-set document, or raise a 422 naming each rule and field."""
    try:
        return load_rule_set(document)
    except RuleSetInvalid as error:
        errors = [{**entry, "type": "rule_set"} for entry in error.as_dicts()]
        raise Unprocessable(str(error), errors=errors) from None


def split_body(body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split a PUT body into the rule-set document and the model options."""
    options = {key: body[key] for key in MODEL_OPTIONS if key in body}
    document = {key: value for key, value in body.items() if key not in MODEL_OPTIONS}
    return document, options


async def get_model(session: AsyncSession, name: str, *, for_update: bool = False) -> ScoreModel:
    query = select(ScoreModel).where(ScoreModel.name == name)
    if for_update and dialect_name(session) == "postgresql":
        query = query.with_for_update()
    model = (await session.exec(query)).first()
    if model is None:
        raise NotFound(f"score model {name!r} not found")
    return model


async def get_version(session: AsyncSession, name: str, version: int) -> RuleSetVersion:
    query = select(RuleSetVersion).where(RuleSetVersion.model == name, RuleSetVersion.version == version)
    stored = (await session.exec(query)).first()
    if stored is None:
        raise NotFound(f"score model {name!r} has no version {version}")
    return stored


async def compiled_version(session: AsyncSession, name: str, version: int) -> CompiledRuleSet:
    """Return a stored version compiled, from this process's cache when it was compiled before."""
    compiled = compiled_cache.get(name, version)
    if compiled is None:
        stored = await get_version(session, name, version)
        compiled = load_rule_set(stored.document)
        compiled_cache.put(name, version, compiled)
    return compiled


async def put_model(session: AsyncSession, name: str, body: dict[str, Any]) -> PutResult:
    """Store a rule set as the model's new active version, unless it equals the active one.

    Options (description, demote_below_threshold) are updated without a new version. Commits.
    """
    document, options = split_body(body)
    _check_options(options)
    compiled = validate_rule_set(document)
    now = clock.now()

    model = (await session.exec(_model_query(session, name))).first()
    if model is None:
        return await _create_model(session, name, document, options, compiled, now)

    active = await get_version(session, name, model.active_version)
    same_rules = parse_rule_set(active.document) == compiled.rule_set
    changed_options = {key: value for key, value in options.items() if getattr(model, key) != value}
    if same_rules and not changed_options and model.active:
        return PutResult(model, active, version_created=False)

    for key, value in changed_options.items():
        setattr(model, key, value)
    model.updated_at = now
    model.active = True
    version = active
    if not same_rules:
        version = _new_version(name, await _latest_version(session, name) + 1, document, compiled, now)
        session.add(version)
        model.active_version = version.version
        model.mql_threshold = float(compiled.mql_threshold)
    session.add(model)
    await _commit(session, name)
    if not same_rules:
        compiled_cache.put(name, version.version, compiled)
    log.info("score_model.saved", model=name, version=version.version, version_created=not same_rules)
    return PutResult(model, version, version_created=not same_rules)


async def archive_model(session: AsyncSession, name: str) -> None:
    """Stop scoring new events with a model; its scores, ledger and versions stay. Commits."""
    model = await get_model(session, name, for_update=True)
    model.active = False
    model.updated_at = clock.now()
    session.add(model)
    await session.commit()
    log.info("score_model.archived", model=name)


async def active_models(session: AsyncSession) -> list[ActiveModel]:
    """Return every active model with its active rule set compiled, in name order.

    A stored version that no longer compiles (after a library change) is logged and skipped, so
    one broken model does not stop the others from scoring.
    """
    models = (await session.exec(select(ScoreModel).where(ScoreModel.active).order_by(ScoreModel.name))).all()
    result = []
    for model in models:
        try:
            compiled = await compiled_version(session, model.name, model.active_version)
        except RuleSetInvalid as error:
            log.error("score_model.invalid_version", model=model.name, version=model.active_version, error=str(error))
            continue
        result.append(ActiveModel(model.name, model.active_version, compiled, model.demote_below_threshold))
    return result


async def model_as_active(session: AsyncSession, model: ScoreModel) -> ActiveModel:
    """Return a model (archived or not) with its active version compiled."""
    compiled = await compiled_version(session, model.name, model.active_version)
    return ActiveModel(model.name, model.active_version, compiled, model.demote_below_threshold)


async def list_models(session: AsyncSession, *, after: str | None, limit: int) -> list[ScoreModel]:
    query = select(ScoreModel).order_by(ScoreModel.name).limit(limit)
    if after is not None:
        query = query.where(ScoreModel.name > after)
    return list((await session.exec(query)).all())


async def list_versions(session: AsyncSession, name: str, *, after: int | None, limit: int) -> list[RuleSetVersion]:
    await get_model(session, name)
    query = select(RuleSetVersion).where(RuleSetVersion.model == name).order_by(RuleSetVersion.version).limit(limit)
    if after is not None:
        query = query.where(RuleSetVersion.version > after)
    return list((await session.exec(query)).all())


def _model_query(session: AsyncSession, name: str) -> Any:
    query = select(ScoreModel).where(ScoreModel.name == name)
    if dialect_name(session) == "postgresql":
        query = query.with_for_update()
    return query


async def _create_model(
    session: AsyncSession,
    name: str,
    document: dict[str, Any],
    options: dict[str, Any],
    compiled: CompiledRuleSet,
    now: Any,
) -> PutResult:
    # A model created, archived and recreated keeps numbering after its old versions.
    version = _new_version(name, await _latest_version(session, name) + 1, document, compiled, now)
    model = ScoreModel(
        name=name,
        description=options.get("description"),
        active_version=version.version,
        mql_threshold=float(compiled.mql_threshold),
        demote_below_threshold=bool(options.get("demote_below_threshold", False)),
        created_at=now,
        updated_at=now,
    )
    session.add(model)
    session.add(version)
    await _commit(session, name)
    compiled_cache.put(name, version.version, compiled)
    log.info("score_model.created", model=name, version=version.version)
    return PutResult(model, version, version_created=True)


def _new_version(
    name: str, number: int, document: dict[str, Any], compiled: CompiledRuleSet, now: Any
) -> RuleSetVersion:
    return RuleSetVersion(
        model=name,
        version=number,
        document=document,
        mql_threshold=float(compiled.mql_threshold),
        created_at=now,
    )


async def _latest_version(session: AsyncSession, name: str) -> int:
    query = select(func.max(RuleSetVersion.version)).where(RuleSetVersion.model == name)
    return int((await session.exec(query)).one() or 0)


async def _commit(session: AsyncSession, name: str) -> None:
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        raise Conflict(f"score model {name!r} was changed at the same time; send the request again") from None


def _check_options(options: dict[str, Any]) -> None:
    description = options.get("description")
    if description is not None and (not isinstance(description, str) or len(description) > 500):
        raise Unprocessable(
            "description: must be a string of at most 500 characters",
            errors=[{"rule": None, "field": "description", "message": "must be a string of at most 500 characters", "type": "invalid"}],
        )
    demote = options.get("demote_below_threshold")
    if "demote_below_threshold" in options and not isinstance(demote, bool):
        raise Unprocessable(
            "demote_below_threshold: must be true or false",
            errors=[{"rule": None, "field": "demote_below_threshold", "message": "must be true or false", "type": "invalid"}],
        )
