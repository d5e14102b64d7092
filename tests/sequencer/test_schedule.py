"""Scheduling maths: delays, DST, send windows, quiet hours and the frequency cap."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from services.sequencer.schedule import (
    FrequencyCap,
    NoSendTimeError,
    add_duration,
    after_quiet_hours,
    classify_local_time,
    days_later_at,
    earliest_send_at,
    earliest_under_cap,
    next_in_window,
    next_weekday_at,
    preview_schedule,
    resolve_zone,
    to_instant,
    wait_ends_at,
)
from services.sequencer.sequences import QuietHours, SendWindow, WaitSpec, Weekday, parse_sequence
from services.sequencer.sequences.schema import Duration

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


@pytest.fixture(params=[None, "Asia/Kolkata", "America/Chicago"])
def process_tz(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """Run the test under several process timezones to prove the results do not depend on TZ."""
    previous = os.environ.get("TZ")
    if request.param is not None:
        os.environ["TZ"] = request.param
        time.tzset()
    try:
        yield request.param
    finally:
        if previous is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = previous
        time.tzset()


def test_process_tz_fixture_changes_local_time(process_tz: str | None) -> None:
    expected = {None: None, "Asia/Kolkata": "+0530", "America/Chicago": "-0600"}[process_tz]
    if expected is not None:
        assert time.strftime("%z", time.localtime(utc("2024-01-15T12:00Z").timestamp())) == expected


# --- case 20: send windows after the delay, per step, on the local calendar -------------------------


CASE_20 = {
    "name": "Berlin drip",
    "trigger": {"type": "manual"},
    "timezone": "UTC",
    "steps": [
        {"id": "e1", "email": {"template_id": "t1"}},
        {"wait": {"days": 5}},
        {"id": "e2", "email": {"template_id": "t2", "send_window": {"weekdays": ["mon", "tue", "wed", "thu", "fri"], "start": "09:00"}}},
        {"wait": {"days": 1}},
        {"id": "e3", "email": {"template_id": "t3", "send_window": {"weekdays": ["mon", "tue", "wed", "thu", "fri"], "start": "09:00"}}},
    ],
}


def test_case20_send_times(process_tz: str | None) -> None:
    definition = parse_sequence(CASE_20)

    planned = preview_schedule(definition, utc("2024-06-04T10:00+02:00"), contact_timezone="Europe/Berlin")

    assert [send.step_id for send in planned] == ["e1", "e2", "e3"]
    assert planned[0].due_at == utc("2024-06-04T08:00Z")
    assert planned[1].due_at == utc("2024-06-10T07:00Z")
    assert planned[2].due_at == utc("2024-06-11T07:00Z")


def test_case20_nothing_on_weekend_and_spaced() -> None:
    planned = preview_schedule(parse_sequence(CASE_20), utc("2024-06-04T10:00+02:00"), contact_timezone="Europe/Berlin")

    local_days = [send.due_at.astimezone(BERLIN).date().isoformat() for send in planned]
    assert "2024-06-08" not in local_days
    assert "2024-06-09" not in local_days
    gaps = [later.due_at - earlier.due_at for earlier, later in zip(planned, planned[1:])]
    assert all(gap >= timedelta(hours=1) for gap in gaps)


def test_case20_raw_due_is_sunday_then_moves_forward() -> None:
    raw = wait_ends_at(WaitSpec(days=5), utc("2024-06-04T08:00Z"), BERLIN)
    window = SendWindow(start="09:00")

    assert raw.astimezone(BERLIN).strftime("%a %H:%M") == "Sun 10:00"
    assert next_in_window(raw, window, BERLIN) == utc("2024-06-10T07:00Z")


def test_window_never_shortens_the_delay() -> None:
    # The window is applied after the delay: a due time on Monday 10:00 waits for Tuesday 09:00
    # rather than moving back to Monday 09:00.
    due = utc("2024-06-10T10:00+02:00")

    assert next_in_window(due, SendWindow(start="09:00"), BERLIN) == utc("2024-06-11T09:00+02:00")


def test_window_with_end_allows_any_moment_inside() -> None:
    window = SendWindow(start="09:00", end="17:00")

    assert next_in_window(utc("2024-06-10T10:30+02:00"), window, BERLIN) == utc("2024-06-10T10:30+02:00")
    assert next_in_window(utc("2024-06-10T17:00+02:00"), window, BERLIN) == utc("2024-06-11T09:00+02:00")
    assert next_in_window(utc("2024-06-07T18:00+02:00"), window, BERLIN) == utc("2024-06-10T09:00+02:00")


# --- case 21: DST and time zones --------------------------------------------------------------------


def test_case21a_next_day_0900_across_spring_forward(process_tz: str | None) -> None:
    wait = WaitSpec(days=1, at="09:00")

    due = wait_ends_at(wait, utc("2024-03-09T12:00-05:00"), NEW_YORK)

    assert due == utc("2024-03-10T13:00:00Z")
    assert due != utc("2024-03-10T14:00:00Z")


def test_case21b_next_day_0900_across_fall_back(process_tz: str | None) -> None:
    due = wait_ends_at(WaitSpec(days=1, at="09:00"), utc("2024-11-02T12:00-04:00"), NEW_YORK)

    assert due == utc("2024-11-03T14:00:00Z")


def test_case21c_24_hours_is_elapsed_time(process_tz: str | None) -> None:
    due = wait_ends_at(WaitSpec(hours=24), utc("2024-03-09T12:00-05:00"), NEW_YORK)

    assert due == utc("2024-03-10T17:00:00Z")
    assert due.astimezone(NEW_YORK).strftime("%H:%M %Z") == "13:00 EDT"


def test_case21d_wait_until_local_date(process_tz: str | None) -> None:
    wait = WaitSpec(until=datetime(2024, 7, 1, 9, 0))

    due = wait_ends_at(wait, utc("2024-06-20T15:00Z"), NEW_YORK)

    assert due == utc("2024-07-01T13:00Z")
    assert not due < utc("2024-07-01T13:00Z")


def test_case21e_scheduled_instant_round_trips(process_tz: str | None) -> None:
    definition = parse_sequence(
        {
            "name": "Launch",
            "trigger": {"type": "manual"},
            "timezone": "America/New_York",
            "steps": [{"wait": {"until": "2024-03-10T10:00"}}, {"email": {"template_id": "t"}}],
        }
    )
    stored = definition.model_dump_json(by_alias=True)
    reread = parse_sequence(stored)
    zone = resolve_zone(None, reread.timezone)

    first = wait_ends_at(definition.steps[0].wait, utc("2024-03-01T00:00Z"), zone)
    second = wait_ends_at(reread.steps[0].wait, utc("2024-03-01T00:00Z"), zone)

    assert first == utc("2024-03-10T14:00Z")
    assert second == first
    assert datetime.fromisoformat(first.isoformat()) == first


# --- DST rules --------------------------------------------------------------------------------------


def test_gap_time_moves_forward_by_gap() -> None:
    local = datetime(2024, 3, 10, 2, 30)

    assert classify_local_time(local, NEW_YORK) == "gap"
    assert to_instant(local, NEW_YORK) == utc("2024-03-10T03:30-04:00")


def test_fold_time_means_first_occurrence() -> None:
    local = datetime(2024, 11, 3, 1, 30)

    assert classify_local_time(local, NEW_YORK) == "fold"
    assert to_instant(local, NEW_YORK) == utc("2024-11-03T05:30Z")


def test_normal_time_classified_normal() -> None:
    assert classify_local_time(datetime(2024, 6, 1, 9, 0), NEW_YORK) == "normal"


def test_to_instant_rejects_aware_input() -> None:
    with pytest.raises(ValueError, match="naive"):
        to_instant(utc("2024-06-01T09:00Z"), NEW_YORK)


def test_one_day_keeps_wall_clock_across_dst() -> None:
    due = add_duration(utc("2024-03-09T10:00-05:00"), Duration(days=1), NEW_YORK)

    assert due == utc("2024-03-10T10:00-04:00")
    assert due - utc("2024-03-09T10:00-05:00") == timedelta(hours=23)


def test_one_day_into_gap_moves_forward() -> None:
    due = add_duration(utc("2024-03-09T02:30-05:00"), Duration(days=1), NEW_YORK)

    assert due == utc("2024-03-10T03:30-04:00")


def test_window_start_in_gap() -> None:
    # Santiago springs forward at local midnight: 2024-09-08 00:00 does not exist.
    santiago = ZoneInfo("America/Santiago")
    window = SendWindow(weekdays=list(Weekday), start="00:00")

    due = next_in_window(utc("2024-09-07T12:00-04:00"), window, santiago)

    assert due == utc("2024-09-08T01:00-03:00")


def test_weeks_and_hours_combine() -> None:
    due = add_duration(utc("2024-06-03T09:00+02:00"), Duration(weeks=1, hours=2, minutes=30), BERLIN)

    assert due == utc("2024-06-10T11:30+02:00")


def test_days_later_at_zero_days_today_or_tomorrow() -> None:
    assert days_later_at(utc("2024-06-03T08:00+02:00"), 0, datetime(1, 1, 1, 9).time(), BERLIN) == utc("2024-06-03T09:00+02:00")
    assert days_later_at(utc("2024-06-03T10:00+02:00"), 0, datetime(1, 1, 1, 9).time(), BERLIN) == utc("2024-06-04T09:00+02:00")


def test_next_weekday_at() -> None:
    tuesday_10 = datetime(1, 1, 1, 10).time()

    assert next_weekday_at(utc("2024-06-03T12:00+02:00"), Weekday.TUE, tuesday_10, BERLIN) == utc("2024-06-04T10:00+02:00")
    assert next_weekday_at(utc("2024-06-04T10:00+02:00"), Weekday.TUE, tuesday_10, BERLIN) == utc("2024-06-04T10:00+02:00")
    assert next_weekday_at(utc("2024-06-04T10:01+02:00"), Weekday.TUE, tuesday_10, BERLIN) == utc("2024-06-11T10:00+02:00")


def test_wait_until_weekday_in_definition() -> None:
    wait = WaitSpec(until_weekday="tue", at="10:00")

    assert wait_ends_at(wait, utc("2024-06-06T12:00+02:00"), BERLIN) == utc("2024-06-11T10:00+02:00")


def test_wait_for_event_ends_at_timeout() -> None:
    wait = WaitSpec(until_event={"event_type": "form_submitted"}, timeout={"days": 3})

    assert wait_ends_at(wait, utc("2024-06-03T09:00+02:00"), BERLIN) == utc("2024-06-06T09:00+02:00")


def test_wait_until_past_date_ends_at_start() -> None:
    wait = WaitSpec(until=datetime(2024, 1, 1, 9, 0))

    assert wait_ends_at(wait, utc("2024-06-03T09:00Z"), BERLIN) == utc("2024-06-03T09:00Z")


def test_naive_start_rejected() -> None:
    with pytest.raises(ValueError, match="started_at must be an aware datetime"):
        wait_ends_at(WaitSpec(days=1), datetime(2024, 6, 3, 9, 0), BERLIN)


def test_resolve_zone_falls_back_to_default() -> None:
    assert resolve_zone("Asia/Tokyo", "Europe/Berlin") == ZoneInfo("Asia/Tokyo")
    assert resolve_zone(None, "Europe/Berlin") == BERLIN
    assert resolve_zone("Not/AZone", "Europe/Berlin") == BERLIN
    with pytest.raises(ValueError, match="unknown default timezone"):
        resolve_zone(None, "Nowhere/Else")


# --- quiet hours ------------------------------------------------------------------------------------


def test_quiet_hours_across_midnight_defer_to_end() -> None:
    quiet = QuietHours(start="21:00", end="08:00")

    assert after_quiet_hours(utc("2024-06-04T22:30+02:00"), quiet, BERLIN) == utc("2024-06-05T08:00+02:00")
    assert after_quiet_hours(utc("2024-06-05T03:00+02:00"), quiet, BERLIN) == utc("2024-06-05T08:00+02:00")
    assert after_quiet_hours(utc("2024-06-05T12:00+02:00"), quiet, BERLIN) == utc("2024-06-05T12:00+02:00")


def test_quiet_hours_inside_a_day() -> None:
    quiet = QuietHours(start="12:00", end="14:00")

    assert after_quiet_hours(utc("2024-06-05T12:30+02:00"), quiet, BERLIN) == utc("2024-06-05T14:00+02:00")
    assert after_quiet_hours(utc("2024-06-05T11:59+02:00"), quiet, BERLIN) == utc("2024-06-05T11:59+02:00")


def test_quiet_hours_skip_disallowed_weekdays() -> None:
    quiet = QuietHours(start="20:00", end="08:00", weekdays=["mon", "tue", "wed", "thu", "fri"])

    due = after_quiet_hours(utc("2024-06-07T21:00+02:00"), quiet, BERLIN)

    assert due == utc("2024-06-10T08:00+02:00")


# --- frequency cap ----------------------------------------------------------------------------------


def test_cap_allows_under_limit() -> None:
    cap = FrequencyCap(max_sends=2, period=timedelta(days=1))
    sends = [utc("2024-06-03T09:00Z")]

    assert earliest_under_cap(utc("2024-06-03T12:00Z"), sends, cap) == utc("2024-06-03T12:00Z")


def test_cap_defers_until_oldest_leaves_window() -> None:
    cap = FrequencyCap(max_sends=2, period=timedelta(days=1))
    sends = [utc("2024-06-03T09:00Z"), utc("2024-06-03T11:00Z")]

    assert earliest_under_cap(utc("2024-06-03T12:00Z"), sends, cap) == utc("2024-06-04T09:00Z")


def test_cap_defers_past_several_sends() -> None:
    cap = FrequencyCap(max_sends=1, period=timedelta(hours=24))
    sends = [utc("2024-06-03T09:00Z"), utc("2024-06-04T08:00Z")]

    # 09:00 next day frees the first send, but the second one (08:00) is still in the window.
    assert earliest_under_cap(utc("2024-06-03T10:00Z"), sends, cap) == utc("2024-06-05T08:00Z")


def test_cap_never_drops() -> None:
    cap = FrequencyCap(max_sends=3, period=timedelta(days=7))
    sends = [utc("2024-06-03T09:00Z") + timedelta(hours=hour) for hour in range(10)]

    allowed = earliest_under_cap(utc("2024-06-03T20:00Z"), sends, cap)

    in_window = [sent for sent in sends if allowed - cap.period < sent <= allowed]
    assert len(in_window) < cap.max_sends
    assert allowed == utc("2024-06-10T16:00Z")


def test_cap_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="max_sends"):
        FrequencyCap(max_sends=0, period=timedelta(days=1))
    with pytest.raises(ValueError, match="period"):
        FrequencyCap(max_sends=1, period=timedelta(0))


# --- rules combined ---------------------------------------------------------------------------------


def test_cap_deferral_returns_into_window() -> None:
    cap = FrequencyCap(max_sends=1, period=timedelta(days=1))
    window = SendWindow(start="09:00")
    sends = [utc("2024-06-04T09:00+02:00")]

    due = earliest_send_at(utc("2024-06-04T09:00+02:00") + timedelta(minutes=1), BERLIN, send_window=window, cap=cap, recent_sends=sends)

    assert due == utc("2024-06-05T09:00+02:00")


def test_window_then_quiet_hours_then_cap_reach_fixpoint() -> None:
    window = SendWindow(start="07:00", end="22:00")
    quiet = QuietHours(start="20:00", end="09:30")
    cap = FrequencyCap(max_sends=1, period=timedelta(hours=12))
    sends = [utc("2024-06-05T00:00+02:00")]

    due = earliest_send_at(utc("2024-06-04T21:00+02:00"), BERLIN, send_window=window, quiet_hours=quiet, cap=cap, recent_sends=sends)

    assert due == utc("2024-06-05T12:00+02:00")


def test_impossible_rules_raise() -> None:
    window = SendWindow(start="03:00")
    quiet = QuietHours(start="00:00", end="06:00")

    with pytest.raises(NoSendTimeError, match="quiet hours"):
        earliest_send_at(utc("2024-06-04T09:00Z"), BERLIN, send_window=window, quiet_hours=quiet)


def test_preview_counts_planned_sends_against_cap() -> None:
    definition = parse_sequence(
        {
            "name": "Burst",
            "trigger": {"type": "manual"},
            "steps": [{"email": {"template_id": "a"}}, {"wait": {"minutes": 5}}, {"email": {"template_id": "b"}}],
        }
    )
    cap = FrequencyCap(max_sends=1, period=timedelta(days=1))

    planned = preview_schedule(definition, utc("2024-06-04T09:00Z"), contact_timezone="Europe/Berlin", cap=cap)

    assert [send.due_at for send in planned] == [utc("2024-06-04T09:00Z"), utc("2024-06-05T09:00Z")]


def test_preview_uses_sequence_quiet_hours() -> None:
    definition = parse_sequence(
        {
            "name": "Quiet",
            "trigger": {"type": "manual"},
            "timezone": "America/New_York",
            "quiet_hours": {"start": "20:00", "end": "08:00"},
            "steps": [{"email": {"template_id": "a"}}],
        }
    )

    planned = preview_schedule(definition, utc("2024-06-04T23:00-04:00"))

    assert planned[0].due_at == utc("2024-06-05T08:00-04:00")
