"""Scheduling maths in the contact's local time: delays, send windows, quiet hours, frequency cap."""

from services.sequencer.schedule.cap import FrequencyCap, earliest_under_cap
from services.sequencer.schedule.delays import add_duration, days_later_at, next_weekday_at, until_local, wait_ends_at
from services.sequencer.schedule.local_time import (
    classify_local_time,
    local_datetime,
    local_instant,
    require_aware,
    resolve_zone,
    to_instant,
)
from services.sequencer.schedule.planner import (
    MAX_DEFERRAL,
    NoSendTimeError,
    PlannedSend,
    earliest_send_at,
    preview_schedule,
)
from services.sequencer.schedule.windows import after_quiet_hours, next_in_window

__all__ = (
    "MAX_DEFERRAL",
    "FrequencyCap",
    "NoSendTimeError",
    "PlannedSend",
    "add_duration",
    "after_quiet_hours",
    "classify_local_time",
    "days_later_at",
    "earliest_send_at",
    "earliest_under_cap",
    "local_datetime",
    "local_instant",
    "next_in_window",
    "next_weekday_at",
    "preview_schedule",
    "require_aware",
    "resolve_zone",
    "to_instant",
    "until_local",
    "wait_ends_at",
)
