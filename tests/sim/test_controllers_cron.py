"""The CronJob controller's 5-field cron parser and its missed-run arithmetic."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clusters.sim.controllers.cron import CronError, most_recent, parse_schedule
from clusters.sim.controllers.cronjobs import job_name

AT = datetime(2026, 11, 21, 22, 30, 15, tzinfo=UTC)  # a Saturday


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        ("* * * * *", datetime(2026, 11, 21, 22, 31, tzinfo=UTC)),
        ("*/15 * * * *", datetime(2026, 11, 21, 22, 45, tzinfo=UTC)),
        ("0 * * * *", datetime(2026, 11, 21, 23, 0, tzinfo=UTC)),
        ("30 9 * * MON-FRI", datetime(2026, 11, 23, 9, 30, tzinfo=UTC)),
        ("0 0 1 JAN *", datetime(2027, 1, 1, 0, 0, tzinfo=UTC)),
        ("0 12 * * 7", datetime(2026, 11, 22, 12, 0, tzinfo=UTC)),  # 7 is Sunday
        ("0 12 * * 0", datetime(2026, 11, 22, 12, 0, tzinfo=UTC)),
        ("5,10 22 * * *", datetime(2026, 11, 22, 22, 5, tzinfo=UTC)),
        ("0 0 13 * FRI", datetime(2026, 11, 27, 0, 0, tzinfo=UTC)),  # either day field matches
        ("@hourly", datetime(2026, 11, 21, 23, 0, tzinfo=UTC)),
        ("@daily", datetime(2026, 11, 22, 0, 0, tzinfo=UTC)),
        ("0 0 29 2 *", datetime(2028, 2, 29, 0, 0, tzinfo=UTC)),
    ],
)
def test_the_next_run_follows_standard_cron(schedule: str, expected: datetime) -> None:
    assert parse_schedule(schedule).next_after(AT) == expected


@pytest.mark.parametrize(
    ("schedule", "complaint"),
    [
        ("* * * *", "expected 5 fields"),
        ("60 * * * *", "minute: 60 is outside 0-59"),
        ("* 24 * * *", "hour"),
        ("* * 0 * *", "day-of-month"),
        ("* * * 13 *", "month"),
        ("* * * * 8", "day-of-week"),
        ("*/0 * * * *", "step must be positive"),
        ("5-1 * * * *", "runs backwards"),
        ("a * * * *", "not a number"),
        ("@every 5m", "expected 5 fields"),
        ("TZ=UTC * * * * *", "spec.timeZone"),
    ],
)
def test_bad_schedules_say_which_field_is_wrong(schedule: str, complaint: str) -> None:
    with pytest.raises(CronError, match=complaint):
        parse_schedule(schedule)


def test_a_schedule_that_never_matches_is_an_error_not_a_hang() -> None:
    with pytest.raises(CronError):
        parse_schedule("0 0 30 2 *").next_after(AT)


def test_only_the_most_recent_missed_run_counts() -> None:
    schedule = parse_schedule("*/10 * * * *")
    since = datetime(2026, 11, 21, 21, 0, tzinfo=UTC)
    assert most_recent(schedule, since, AT) == datetime(2026, 11, 21, 22, 30, tzinfo=UTC)
    assert most_recent(schedule, datetime(2026, 11, 21, 22, 30, tzinfo=UTC), AT) is None


def test_a_long_unattended_frequent_schedule_is_cheap_to_catch_up() -> None:
    since = datetime(2016, 1, 1, tzinfo=UTC)
    assert most_recent(parse_schedule("* * * * *"), since, AT) == datetime(
        2026, 11, 21, 22, 30, tzinfo=UTC
    )
    assert most_recent(parse_schedule("@yearly"), since, AT) == datetime(2026, 1, 1, tzinfo=UTC)


def test_jobs_are_named_after_the_scheduled_minute() -> None:
    assert job_name("backup", datetime(1970, 1, 1, 0, 10, tzinfo=UTC)) == "backup-10"
    # 2026-11-21T22:30:00Z is 1795300200 seconds after the epoch
    assert job_name("backup", datetime(2026, 11, 21, 22, 30, tzinfo=UTC)) == "backup-29921670"


field = st.one_of(
    st.just("*"),
    st.integers(0, 5).map(str),
    st.integers(1, 5).map(lambda n: f"*/{n}"),
    st.tuples(st.integers(0, 3), st.integers(3, 6)).map(lambda t: f"{t[0]}-{t[1]}"),
)


@given(st.tuples(field, field, field, field, field), st.integers(0, 10**8))
def test_any_next_run_matches_the_schedule_and_is_later(
    fields: tuple[str, ...], offset_minutes: int
) -> None:
    text = " ".join(
        f if i != 2 and i != 3 else f.replace("0", "1") for i, f in enumerate(fields)
    )  # day and month start at 1
    schedule = parse_schedule(text)
    start = datetime.fromtimestamp(offset_minutes * 60 + 17, UTC)
    try:
        nxt = schedule.next_after(start)
    except CronError:
        return  # e.g. day 31 of a month that never has it within the search window
    assert nxt > start
    assert schedule.matches(nxt)
