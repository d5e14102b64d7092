import datetime as dt

from services.contacts.segments import TimeWindow, filter_dependencies, parse_filter, time_windows

FILTER = {
    "all": [
        {"field": "company.industry", "op": "eq", "value": "SaaS"},
        {"event": "page_view", "where": [{"property": "url", "op": "contains", "value": "/pricing"}], "within_days": 14},
        {
            "any": [
                {"not": {"event": "form_submitted", "within_days": 30}},
                {"event": "email_opened", "between": {"start": "2024-01-01T00:00:00Z", "end": "2024-02-01T00:00:00Z"}},
                {"field": "score.default", "op": "gte", "value": 40},
            ]
        },
    ]
}


def test_rolling_windows_listed_with_paths() -> None:
    windows = time_windows(parse_filter(FILTER))

    assert windows == (
        TimeWindow(path="filter.all[1]", event="page_view", days=14),
        TimeWindow(path="filter.all[2].any[0].not", event="form_submitted", days=30),
    )


def test_fixed_ranges_not_listed() -> None:
    node = parse_filter({"event": "email_opened", "between": {"start": "2024-01-01T00:00:00Z", "end": "2024-02-01T00:00:00Z"}})

    assert time_windows(node) == ()


def test_attribute_only_filter_has_no_windows() -> None:
    assert time_windows(parse_filter({"field": "stage", "op": "eq", "value": "mql"})) == ()


def test_window_start() -> None:
    window = TimeWindow(path="filter", event="page_view", days=14)
    now = dt.datetime(2024, 6, 15, 12, 0, tzinfo=dt.UTC)

    assert window.starts_at(now) == dt.datetime(2024, 6, 1, 12, 0, tzinfo=dt.UTC)
    assert window.length == dt.timedelta(days=14)


def test_dependencies() -> None:
    dependencies = filter_dependencies(parse_filter(FILTER))

    assert dependencies.fields == {"company.industry", "score.default"}
    assert dependencies.event_types == {"page_view", "form_submitted", "email_opened"}
