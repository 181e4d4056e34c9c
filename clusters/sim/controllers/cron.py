"""A minimal standard 5-field cron schedule, as the CronJob controller reads ``spec.schedule``.

Fields: minute hour day-of-month month day-of-week, each ``*``, ``?``, a number, a name
(JAN-DEC, SUN-SAT), a range ``a-b``, a step ``*/n`` or ``a-b/n``, or a comma list. Day of
week 7 is Sunday too. As in Vixie cron (and robfig/cron, which Kubernetes uses), when both
day fields are restricted a day matches if either does. The ``@hourly``-style macros are
accepted; ``@every`` is not (Kubernetes rejects it too).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from mypy_extensions import mypyc_attr

from clusters.errors import ClusterUsageError

_MONTHS = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
_DAYS = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]

_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

# A schedule that matches nothing (Feb 30) must not loop forever.
_SEARCH_LIMIT = timedelta(days=366 * 5)


@mypyc_attr(native_class=False)  # its base is a Python class
class CronError(ClusterUsageError):
    """A CronJob schedule that cannot be parsed."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Schedule:
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    days_restricted: bool
    weekdays_restricted: bool

    def matches(self, moment: datetime) -> bool:
        if moment.minute not in self.minutes or moment.hour not in self.hours:
            return False
        if moment.month not in self.months:
            return False
        return self._day_matches(moment)

    def _day_matches(self, moment: datetime) -> bool:
        day_ok = moment.day in self.days
        weekday_ok = (moment.isoweekday() % 7) in self.weekdays
        if self.days_restricted and self.weekdays_restricted:
            return day_ok or weekday_ok
        return day_ok and weekday_ok

    def next_after(self, moment: datetime) -> datetime:
        """The first matching minute strictly after ``moment`` (same tzinfo)."""
        candidate = moment.replace(second=0, microsecond=0) + timedelta(minutes=1)
        limit = moment + _SEARCH_LIMIT
        while candidate <= limit:
            if candidate.month not in self.months:
                # jump to the first day of the next month
                year = candidate.year + (candidate.month == 12)
                month = candidate.month % 12 + 1
                candidate = candidate.replace(year=year, month=month, day=1, hour=0, minute=0)
                continue
            if not self._day_matches(candidate):
                candidate = candidate.replace(hour=0, minute=0) + timedelta(days=1)
                continue
            if candidate.hour not in self.hours:
                candidate = candidate.replace(minute=0) + timedelta(hours=1)
                continue
            if candidate.minute not in self.minutes:
                candidate += timedelta(minutes=1)
                continue
            return candidate
        raise CronError("the schedule matches no time in the next five years")


def _value(token: str, names: list[str] | None, low: int, high: int, field: str) -> int:
    upper = token.upper()
    if names is not None and upper in names:
        return names.index(upper) + (low if names is _MONTHS else 0)
    try:
        number = int(token)
    except ValueError:
        raise CronError(f"{field}: {token!r} is not a number") from None
    if not low <= number <= high:
        raise CronError(f"{field}: {number} is outside {low}-{high}")
    return number


def _field(text: str, low: int, high: int, field: str, names: list[str] | None = None) -> set[int]:
    values: set[int] = set()
    for part in text.split(","):
        if not part:
            raise CronError(f"{field}: empty list item in {text!r}")
        base, _, step_text = part.partition("/")
        step = 1
        if step_text:
            try:
                step = int(step_text)
            except ValueError:
                raise CronError(f"{field}: step {step_text!r} is not a number") from None
            if step <= 0:
                raise CronError(f"{field}: step must be positive, got {step}")
        if base in ("*", "?"):
            start, end = low, high
        elif "-" in base:
            first, _, last = base.partition("-")
            start = _value(first, names, low, high, field)
            end = _value(last, names, low, high, field)
            if end < start:
                raise CronError(f"{field}: range {base!r} runs backwards")
        else:
            start = _value(base, names, low, high, field)
            end = high if step_text else start
        values.update(range(start, end + 1, step))
    return values


def parse_schedule(text: str) -> Schedule:
    """Parse a CronJob schedule; raises CronError naming the field that is wrong."""
    source = text.strip()
    if source.startswith("TZ=") or source.startswith("CRON_TZ="):
        raise CronError("set the time zone with spec.timeZone, not in the schedule")
    source = _MACROS.get(source.lower(), source)
    fields = source.split()
    if len(fields) != 5:
        raise CronError(f"expected 5 fields (minute hour day month weekday), got {len(fields)}")
    minute, hour, day, month, weekday = fields
    return Schedule(
        minutes=frozenset(_field(minute, 0, 59, "minute")),
        hours=frozenset(_field(hour, 0, 23, "hour")),
        days=frozenset(_field(day, 1, 31, "day-of-month")),
        months=frozenset(_field(month, 1, 12, "month", _MONTHS)),
        # 7 is Sunday as well as 0, so ranges like MON-7 work.
        weekdays=frozenset(v % 7 for v in _field(weekday, 0, 7, "day-of-week", _DAYS)),
        days_restricted=not day.startswith(("*", "?")),
        weekdays_restricted=not weekday.startswith(("*", "?")),
    )


def most_recent(schedule: Schedule, after: datetime, until: datetime) -> datetime | None:
    """The latest scheduled time in ``(after, until]``, or None (the CronJob's missed run)."""
    # A frequent schedule left alone for long has many missed times; only the latest
    # matters, so look in the last two days first and only then from `after`.
    if until - after > timedelta(days=2):
        found = _last_in(schedule, until - timedelta(days=2), until)
        if found is not None:
            return found
    return _last_in(schedule, after, until)


def _last_in(schedule: Schedule, after: datetime, until: datetime) -> datetime | None:
    found: datetime | None = None
    moment = after
    while True:
        try:
            nxt = schedule.next_after(moment)
        except CronError:
            return found
        if nxt > until:
            return found
        found = nxt
        moment = nxt
