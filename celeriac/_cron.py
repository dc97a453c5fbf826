"""Crontab fields and the search for the next matching instant, in a given time zone.

Fields use Celery's syntax: ``*``, ``*/15``, ``1-5``, ``0-30/10``, lists
(``1,13,30-45``), names in ``day_of_week`` (``mon-fri``, ``sunday``) and
``month_of_year`` (``jan``, ``feb-jun``), and ranges that wrap (``fri-mon``).

Wall-clock times are turned into instants with :mod:`zoneinfo`, so daylight
saving time is handled the same way everywhere:

* a time that doesn't exist on a spring-forward day (02:30 in New York) is read
  with the offset in force before the change (PEP 495's ``fold=0``): it fires
  once, an hour after 01:30, at 03:30 summer time;
* a time that happens twice on a fall-back day (01:30) fires once, at its first
  occurrence, unless the hour field is ``*``: then it fires at both, so an hourly
  job keeps running every hour through the night.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable
from datetime import date, datetime, time, timedelta, timezone, tzinfo

__all__ = ["FIELDS", "ParseException", "crontab_parser", "next_fire", "parse_field"]

WEEKDAYS = {name: i for i, name in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}
MONTHS = {name: i + 1 for i, name in enumerate(calendar.month_abbr[1:])}
MONTHS = {name.lower(): number for name, number in MONTHS.items()}

# field name -> (smallest value, number of values, names accepted)
FIELDS: dict[str, tuple[int, int, dict[str, int]]] = {
    "minute": (0, 60, {}),
    "hour": (0, 24, {}),
    "day_of_week": (0, 7, WEEKDAYS),
    "day_of_month": (1, 31, {}),
    "month_of_year": (1, 12, MONTHS),
}

# Offsets within one zone differ by at most this much (2 h is the largest change on record);
# a wall time this much later than another can't be an earlier instant.
_MAX_SHIFT = timedelta(hours=3)
_SEARCH_YEARS = 30  # Feb 29 on a Monday comes round every 28 years


class ParseException(ValueError):
    """A crontab field can't be parsed (Celery's name; a ``ValueError`` too)."""


class crontab_parser:
    """Celery's parser for one field, by range: ``crontab_parser(60).parse('*/15') == {0, 15, 30, 45}``."""

    ParseException = ParseException

    def __init__(self, max_: int = 60, min_: int = 0) -> None:
        self.max_, self.min_ = max_, min_

    def parse(self, spec: str) -> set[int]:
        names = MONTHS if (self.min_, self.max_) == (1, 12) else WEEKDAYS if (self.min_, self.max_) == (0, 7) else {}
        values = _parse_string("field", spec, self.min_, self.min_ + self.max_ - 1, names)
        for value in values:
            if not self.min_ <= value < self.min_ + self.max_:
                raise ValueError(f"{spec!r}: {value} is out of range {self.min_}-{self.min_ + self.max_ - 1}")
        return values


def parse_field(field: str, spec: object) -> frozenset[int]:
    """Expand one field (``'*/15'``, ``'mon-fri'``, ``7``, ``[0, 30]``) to the set of values it matches."""
    low, count, names = FIELDS[field]
    high = low + count - 1
    if isinstance(spec, bool):
        raise TypeError(f"crontab {field}: expected an int, a string or a list of ints, got {spec!r}")
    if isinstance(spec, int):
        values = {spec}
    elif isinstance(spec, str):
        values = _parse_string(field, spec, low, high, names)
    elif isinstance(spec, Iterable):
        values = set()
        for item in spec:
            if isinstance(item, bool) or not isinstance(item, int):
                raise TypeError(f"crontab {field}: list items must be ints, got {item!r}")
            values.add(item)
    else:
        raise TypeError(f"crontab {field}: expected an int, a string or a list of ints, got {type(spec).__name__}")
    for value in values:
        if not low <= value <= high:
            raise ValueError(f"crontab {field}={spec!r}: {value} is out of range {low}-{high}")
    if not values:
        raise ValueError(f"crontab {field}={spec!r} matches nothing")
    return frozenset(values)


def _parse_string(field: str, spec: str, low: int, high: int, names: dict[str, int]) -> set[int]:
    values: set[int] = set()
    for part in spec.replace(" ", "").lower().split(","):
        if not part:
            raise ParseException(f"crontab {field}={spec!r}: empty item in the list")
        body, slash, step_text = part.partition("/")
        step = 1
        if slash:
            if not step_text.isdigit() or int(step_text) == 0:
                raise ParseException(f"crontab {field}={spec!r}: step {step_text!r} must be a positive number")
            step = int(step_text)
        if body == "*":
            span = list(range(low, high + 1))
        elif "-" in body:
            first_text, _, last_text = body.partition("-")
            first = _number(field, spec, first_text, names)
            last = _number(field, spec, last_text, names)
            # A range that wraps (fri-mon, 22-2) runs to the end and starts again, as in Celery.
            span = list(range(first, last + 1)) if first <= last else [*range(first, high + 1), *range(low, last + 1)]
        elif slash:
            raise ParseException(f"crontab {field}={spec!r}: a step needs a range or '*' before it (e.g. '*/{step}')")
        else:
            span = [_number(field, spec, body, names)]
        values.update(span[::step])
    return values


def _number(field: str, spec: str, text: str, names: dict[str, int]) -> int:
    if text.isdigit():
        return int(text)
    if names:
        value = names.get(text) if len(text) == 3 else _full_name(text, names)
        if value is not None:
            return value
        raise ParseException(f"crontab {field}={spec!r}: unknown name {text!r} (use numbers or {', '.join(names)})")
    if text.startswith("-") and text[1:].isdigit():
        raise ParseException(f"crontab {field}={spec!r}: negative numbers are not allowed")
    raise ParseException(f"crontab {field}={spec!r}: {text!r} is not a number")


def _full_name(text: str, names: dict[str, int]) -> int | None:
    long_names = [*calendar.day_name, *calendar.month_name[1:]]
    if text in (n.lower() for n in long_names):
        return names.get(text[:3])
    return None


def next_fire(
    after: datetime,
    tz: tzinfo,
    minute: frozenset[int],
    hour: frozenset[int],
    day_of_week: frozenset[int],
    day_of_month: frozenset[int],
    month_of_year: frozenset[int],
) -> datetime:
    """The first instant strictly after ``after`` (aware) whose wall time in ``tz`` matches every field.

    As in Celery, the day must match ``day_of_week`` *and* ``day_of_month``.

    Raises:
        ValueError: no such instant in the next thirty years (e.g. February 30).
    """
    start = after.astimezone(tz).replace(tzinfo=None)
    hours, minutes = sorted(hour), sorted(minute)
    both_folds = len(hour) == 24
    day = start.date()
    last_day = date(min(day.year + _SEARCH_YEARS, 9999), 12, 31)
    while day <= last_day:
        if day.month not in month_of_year:
            day = _first_of_next_month(day)
            continue
        if day.day in day_of_month and (day.isoweekday() % 7) in day_of_week:
            found = _first_on_day(day, start - _MAX_SHIFT, after, tz, hours, minutes, both_folds)
            if found is not None:
                return found.astimezone(tz)
        day += timedelta(days=1)
    raise ValueError("this crontab never matches a date (check day_of_month, month_of_year and day_of_week)")


def _first_on_day(
    day: date,
    earliest_wall: datetime,
    after: datetime,
    tz: tzinfo,
    hours: list[int],
    minutes: list[int],
    both_folds: bool,
) -> datetime | None:
    best: datetime | None = None
    best_wall: datetime | None = None
    for h in hours:
        for m in minutes:
            wall = datetime.combine(day, time(h, m))
            if wall < earliest_wall:
                continue
            if best_wall is not None and wall > best_wall + _MAX_SHIFT:
                return best
            for instant in _instants(wall, tz, both_folds):
                if instant > after and (best is None or instant < best):
                    best, best_wall = instant, wall
    return best


def _instants(wall: datetime, tz: tzinfo, both_folds: bool) -> list[datetime]:
    """The UTC instants a naive wall time stands for in ``tz`` (see the module docstring for DST)."""
    first = wall.replace(tzinfo=tz, fold=0).astimezone(timezone.utc)
    second = wall.replace(tzinfo=tz, fold=1).astimezone(timezone.utc)
    if first == second:
        return [first]
    if both_folds and first.astimezone(tz).replace(tzinfo=None) == wall:
        return [first, second]  # the wall time happens twice (fall back)
    return [first]  # once (fall back, named hour) or not at all (spring forward): fold=0


def _first_of_next_month(day: date) -> date:
    return date(day.year + 1, 1, 1) if day.month == 12 else date(day.year, day.month + 1, 1)
