"""Pydantic models of a drip sequence definition.

A definition is data: a trigger that enrols a contact, a list of steps (`email`, `wait`, `branch`),
an optional goal that takes the contact out, a re-entry rule, quiet hours and a default timezone.
Each step is an object with exactly one of the keys `email`, `wait` or `branch`, so a validation error
reads like the JSON it points at, e.g. `steps[2].wait.days`. Use `parse_sequence` (in
`sequences.validation`) to turn a request body into a definition with every error named by field path.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, time
from enum import StrEnum
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, Discriminator, Field, Tag, model_validator

from services.sequencer.sequences.conditions import EventMatch, PropertyCondition, Stage, StrictModel
from services.sequencer.sequences.errors import FieldErrors, Location
from services.sequencer.sequences.validation import check_step_graph

# Ten years: a longer wait is a typo, and timedelta arithmetic stays far from its limits.
MAX_WAIT_DAYS = 3650

STEP_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class Weekday(StrEnum):
    """Day of the week in the contact's local calendar."""

    MON = "mon"
    TUE = "tue"
    WED = "wed"
    THU = "thu"
    FRI = "fri"
    SAT = "sat"
    SUN = "sun"

    @property
    def index(self) -> int:
        """Day number as `datetime.weekday()` returns it: Monday is 0."""
        return list(Weekday).index(self)


WORKDAYS: tuple[Weekday, ...] = (Weekday.MON, Weekday.TUE, Weekday.WED, Weekday.THU, Weekday.FRI)
ALL_WEEKDAYS: tuple[Weekday, ...] = tuple(Weekday)


def _naive_time(value: time) -> time:
    if value.tzinfo is not None:
        raise ValueError("must be a local wall-clock time such as 09:00, without an offset")
    return value


def validate_timezone(name: str) -> str:
    """Return `name` unchanged when it is a known IANA zone, else raise ValueError."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise ValueError(f"unknown IANA timezone {name!r}; use a name such as 'Europe/Berlin'") from error
    return name


LocalTime = Annotated[time, AfterValidator(_naive_time), Field(description="Local wall-clock time, HH:MM")]
TimezoneName = Annotated[str, AfterValidator(validate_timezone), Field(description="IANA timezone name")]


# --- trigger ---------------------------------------------------------------------------------------


class EventTrigger(EventMatch):
    """Enrol a contact when a matching event arrives."""

    type: Literal["event"]


class SegmentEnteredTrigger(StrictModel):
    """Enrol a contact when it enters the segment."""

    type: Literal["segment_entered"]
    segment_id: str = Field(min_length=1, max_length=100)


class StageReachedTrigger(StrictModel):
    """Enrol a contact when it moves into the stage."""

    type: Literal["stage_reached"]
    stage: Stage


class ManualTrigger(StrictModel):
    """Enrol only by hand (`POST /v1/sequences/{id}/enrollments`)."""

    type: Literal["manual"]


Trigger = Annotated[
    EventTrigger | SegmentEnteredTrigger | StageReachedTrigger | ManualTrigger,
    Field(discriminator="type"),
]


# --- goal ------------------------------------------------------------------------------------------


class StageGoal(StrictModel):
    """The contact reached this stage or a later one (see `stage_reached`)."""

    type: Literal["stage_reached"]
    stage: Stage


class EventGoal(EventMatch):
    """A matching event happened after enrolment, e.g. a `form_submitted` or a reply."""

    type: Literal["event"]


class SegmentLeftGoal(StrictModel):
    """The contact left the segment."""

    type: Literal["segment_left"]
    segment_id: str = Field(min_length=1, max_length=100)


Goal = Annotated[StageGoal | EventGoal | SegmentLeftGoal, Field(discriminator="type")]


# --- re-entry, quiet hours, send windows -----------------------------------------------------------


class Reentry(StrictModel):
    """Whether a contact who was enrolled before may be enrolled again.

    `after` counts `days` from the start of the contact's previous enrolment.
    """

    mode: Literal["never", "after", "always"] = "never"
    days: int | None = Field(default=None, ge=1, le=MAX_WAIT_DAYS)

    @model_validator(mode="after")
    def _check_days(self) -> Reentry:
        if self.mode == "after" and self.days is None:
            raise FieldErrors([(("days",), "is required when mode is 'after'")])
        if self.mode != "after" and self.days is not None:
            raise FieldErrors([(("days",), f"is only allowed when mode is 'after', not {self.mode!r}")])
        return self


class QuietHours(StrictModel):
    """Local hours and weekdays when no email goes out. A send due inside them waits.

    `start`..`end` is the quiet period and may cross midnight (21:00 to 08:00). `weekdays` are the days
    on which sending is allowed at all, and every other day is quiet from start to end.
    """

    start: LocalTime
    end: LocalTime
    weekdays: list[Weekday] = Field(default_factory=lambda: list(ALL_WEEKDAYS), min_length=1)

    @model_validator(mode="after")
    def _check_span(self) -> QuietHours:
        if self.start == self.end:
            raise FieldErrors([(("end",), "must differ from start; omit quiet_hours for none")])
        return self


class SendWindow(StrictModel):
    """Local weekdays and time at which an email may go out, applied after the delay before it.

    Without `end` the step sends exactly at `start` (e.g. Mon-Fri at 09:00). With `end`, any moment in
    [start, end) is allowed (e.g. Mon-Fri 09:00 to 17:00).
    """

    weekdays: list[Weekday] = Field(default_factory=lambda: list(WORKDAYS), min_length=1)
    start: LocalTime
    end: LocalTime | None = None

    @model_validator(mode="after")
    def _check_span(self) -> SendWindow:
        if self.end is not None and self.end <= self.start:
            raise FieldErrors([(("end",), "must be later than start on the same day")])
        return self


# --- steps -----------------------------------------------------------------------------------------


class Duration(StrictModel):
    """Elapsed or calendar time: weeks and days move the local date, hours and minutes are elapsed."""

    weeks: int = Field(default=0, ge=0, le=MAX_WAIT_DAYS // 7)
    days: int = Field(default=0, ge=0, le=MAX_WAIT_DAYS)
    hours: int = Field(default=0, ge=0, le=MAX_WAIT_DAYS * 24)
    minutes: int = Field(default=0, ge=0, le=MAX_WAIT_DAYS * 24 * 60)

    def is_zero(self) -> bool:
        """Return whether every part is zero."""
        return not (self.weeks or self.days or self.hours or self.minutes)




class EmailSpec(StrictModel):
    """Send one email rendered from a template.

    `send_window`, if set, moves the instant the email falls due (the end of the wait before it) to
    the next moment inside the window. It never moves a send earlier.
    """

    template_id: str = Field(min_length=1, max_length=100)
    topic: str | None = Field(default=None, max_length=100, description="Consent topic the email belongs to")
    send_window: SendWindow | None = None


class WaitSpec(StrictModel):
    """Hold the contact before the next step, in one of four ways.

    - a duration: `weeks` and `days` are calendar days in the contact's local time, and `hours` and
      `minutes` are elapsed. With `at`, the wait ends at that local time on the day reached by weeks
      and days.
    - `until_weekday` with `at`: the next such weekday at that local time;
    - `until`: a fixed date and time, local to the contact when it has no offset;
    - `until_event` with `timeout`: until a matching event arrives, or the timeout passes.
    """

    weeks: int = Field(default=0, ge=0, le=MAX_WAIT_DAYS // 7)
    days: int = Field(default=0, ge=0, le=MAX_WAIT_DAYS)
    hours: int = Field(default=0, ge=0, le=MAX_WAIT_DAYS * 24)
    minutes: int = Field(default=0, ge=0, le=MAX_WAIT_DAYS * 24 * 60)
    at: LocalTime | None = None
    until_weekday: Weekday | None = None
    until: datetime | None = None
    until_event: EventMatch | None = None
    timeout: Duration | None = None

    @property
    def mode(self) -> Literal["duration", "weekday", "until", "event"]:
        """Which of the four kinds of wait this is."""
        if self.until_weekday is not None:
            return "weekday"
        if self.until is not None:
            return "until"
        if self.until_event is not None:
            return "event"
        return "duration"

    def duration(self) -> Duration:
        """Return the duration part of a duration wait."""
        return Duration(weeks=self.weeks, days=self.days, hours=self.hours, minutes=self.minutes)

    @model_validator(mode="after")
    def _check_mode(self) -> WaitSpec:
        errors = _wait_errors(self)
        if errors:
            raise FieldErrors(errors)
        return self


def _wait_errors(wait: WaitSpec) -> list[tuple[Location, str]]:
    has_duration = not wait.duration().is_zero()
    modes = [
        name
        for name, present in (
            ("until_weekday", wait.until_weekday is not None),
            ("until", wait.until is not None),
            ("until_event", wait.until_event is not None),
        )
        if present
    ]
    if len(modes) > 1:
        return [((modes[1],), f"cannot be combined with {modes[0]}; a wait has one kind")]

    if not modes:
        return _duration_wait_errors(wait, has_duration)

    errors: list[tuple[Location, str]] = []
    kind = modes[0]
    for field in ("weeks", "days", "hours", "minutes"):
        if getattr(wait, field):
            errors.append(((field,), f"cannot be combined with {kind}"))
    if kind == "until_weekday" and wait.at is None:
        errors.append((("at",), "is required with until_weekday, e.g. 'at': '10:00'"))
    if kind != "until_weekday" and wait.at is not None:
        errors.append((("at",), f"cannot be combined with {kind}"))
    if kind == "until_event" and wait.timeout is None:
        errors.append((("timeout",), "is required with until_event, e.g. {'days': 3}"))
    if kind == "until_event" and wait.timeout is not None and wait.timeout.is_zero():
        errors.append((("timeout",), "must be longer than zero"))
    if kind != "until_event" and wait.timeout is not None:
        errors.append((("timeout",), "is only allowed with until_event"))
    return errors


def _duration_wait_errors(wait: WaitSpec, has_duration: bool) -> list[tuple[Location, str]]:
    errors: list[tuple[Location, str]] = []
    if wait.timeout is not None:
        errors.append((("timeout",), "is only allowed with until_event"))
    if wait.at is not None:
        for field in ("hours", "minutes"):
            if getattr(wait, field):
                errors.append(((field,), "cannot be combined with at; use days and at, e.g. next day at 09:00"))
    if not has_duration and wait.at is None:
        errors.append((("days",), "a wait needs a duration, at, until_weekday, until or until_event"))
    return errors


EngagementAction = Literal["opened", "clicked"]


class AttributeCondition(PropertyCondition):
    """Branch on a contact attribute, e.g. industry equals SaaS."""

    type: Literal["attribute"]


class SegmentCondition(StrictModel):
    """Branch on membership of a segment."""

    type: Literal["segment"]
    segment_id: str = Field(min_length=1, max_length=100)
    is_member: bool = True


class StageCondition(StrictModel):
    """Branch on the contact's current stage being one of `stages`."""

    type: Literal["stage"]
    stages: list[Stage] = Field(min_length=1)


class ScoreCondition(StrictModel):
    """Branch on a score model's total, e.g. default >= 50."""

    type: Literal["score"]
    model: str = Field(default="default", min_length=1, max_length=100)
    op: Literal["gt", "gte", "lt", "lte", "equals"] = "gte"
    value: float


class EngagementCondition(StrictModel):
    """Branch on whether the contact opened or clicked the email of an earlier step (human hits only)."""

    type: Literal["engagement"]
    step_id: str = Field(pattern=STEP_ID_PATTERN)
    action: EngagementAction


BranchCondition = Annotated[
    AttributeCondition | SegmentCondition | StageCondition | ScoreCondition | EngagementCondition,
    Field(discriminator="type"),
]


def _branch_target_kind(value: Any) -> str:
    return "goto" if isinstance(value, str) else "steps"


BranchTarget = Annotated[
    Annotated[list["Step"], Tag("steps")] | Annotated[Annotated[str, Field(pattern=STEP_ID_PATTERN)], Tag("goto")],
    Discriminator(_branch_target_kind),
]


class BranchSpec(StrictModel):
    """Take `then` when the condition holds, else `else`.

    Each side is a list of steps, run before continuing after the branch, or the id of a later step to
    jump to.
    """

    condition: BranchCondition
    then_steps: BranchTarget = Field(default_factory=list, alias="then")
    else_steps: BranchTarget = Field(default_factory=list, alias="else")


class Step(StrictModel):
    """One step: exactly one of `email`, `wait` or `branch`, with an optional stable `id`.

    Steps without an id get `step-N`, numbered depth-first, when the definition is validated.
    """

    id: str | None = Field(default=None, pattern=STEP_ID_PATTERN)
    email: EmailSpec | None = None
    wait: WaitSpec | None = None
    branch: BranchSpec | None = None

    @property
    def kind(self) -> Literal["email", "wait", "branch"]:
        """Which key the step carries."""
        if self.email is not None:
            return "email"
        if self.wait is not None:
            return "wait"
        return "branch"

    @model_validator(mode="after")
    def _check_one_kind(self) -> Step:
        present = [name for name in ("email", "wait", "branch") if getattr(self, name) is not None]
        if len(present) != 1:
            found = ", ".join(present) or "none"
            raise FieldErrors([((), f"a step needs exactly one of email, wait or branch (found: {found})")])
        return self


BranchSpec.model_rebuild()


# --- the definition --------------------------------------------------------------------------------


class SequenceDefinition(StrictModel):
    """A drip sequence as stored and as posted to `POST /v1/sequences`."""

    name: str = Field(min_length=1, max_length=200)
    trigger: Trigger
    steps: list[Step] = Field(min_length=1)
    goal: Goal | None = None
    reentry: Reentry = Field(default_factory=Reentry)
    quiet_hours: QuietHours | None = None
    timezone: TimezoneName = Field(default="UTC", description="IANA zone for contacts without a timezone")

    @model_validator(mode="after")
    def _check_steps(self) -> SequenceDefinition:
        errors = check_step_graph(self)
        if errors:
            raise FieldErrors(errors)
        return self

    def iter_steps(self) -> Iterator[tuple[Location, Step]]:
        """Yield every step depth-first in document order, with its location."""
        yield from iter_step_tree(self.steps, ("steps",))

    def step(self, step_id: str) -> Step:
        """Return the step with `step_id`, or raise KeyError."""
        for _, step in self.iter_steps():
            if step.id == step_id:
                return step
        raise KeyError(f"sequence {self.name!r} has no step {step_id!r}")


def iter_step_tree(
    steps: list[Step], location: Location
) -> Iterator[tuple[Location, Step]]:
    """Yield the steps of a list and of its nested branches depth-first, with their locations."""
    for index, step in enumerate(steps):
        step_location = (*location, index)
        yield step_location, step
        if step.branch is None:
            continue
        for side, alias in ((step.branch.then_steps, "then"), (step.branch.else_steps, "else")):
            if isinstance(side, list):
                yield from iter_step_tree(side, (*step_location, "branch", alias))
