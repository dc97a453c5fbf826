"""When periodic tasks run: :class:`schedule` (an interval), :class:`crontab` and :class:`solar`.

Celery's classes and semantics. Each has ``is_due(last_run_at)``, returning
``schedstate(is_due, next)`` where ``next`` is the number of seconds until it
should be asked again, and ``remaining_estimate(last_run_at)``, a ``timedelta``
until the next run. The current time comes from ``nowfun`` when given (tests pass
a fake clock), else from ``app.now()``.

Crontab fields are read in the app's time zone (``timezone``; UTC when it is not
set and ``enable_utc`` is on, the machine's zone when both are off); see
:mod:`celeriac._cron` for the field syntax and how daylight saving time is handled.

``solar`` needs the ``ephem`` package (``pip install celeriac[solar]``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta, timezone, tzinfo
from typing import TYPE_CHECKING, Any, NamedTuple

from ._cron import ParseException, crontab_parser, next_fire, parse_field

if TYPE_CHECKING:
    from .app import Celery

__all__ = [
    "BaseSchedule",
    "ParseException",
    "crontab",
    "crontab_parser",
    "maybe_schedule",
    "schedstate",
    "schedule",
    "solar",
]

Cronspec = int | str | Iterable[int]


class schedstate(NamedTuple):
    is_due: bool
    next: float


class BaseSchedule:
    """What all schedules share: the clock (``nowfun`` or the app's) and the time zone."""

    def __init__(self, nowfun: Callable[[], datetime] | None = None, app: Celery | None = None) -> None:
        self.nowfun = nowfun
        self._app = app

    @property
    def app(self) -> Celery:
        if self._app is None:
            from ._state import get_current_app

            return get_current_app()
        return self._app

    @app.setter
    def app(self, app: Celery) -> None:
        self._app = app

    @property
    def tz(self) -> tzinfo:
        """The zone wall-clock fields are read in (the app's, as in Celery)."""
        return app_timezone(self.app)

    def now(self) -> datetime:
        return self.maybe_make_aware(self.nowfun() if self.nowfun is not None else self.app.now())

    def maybe_make_aware(self, dt: datetime) -> datetime:
        """A naive datetime is taken as UTC, as Celery does."""
        return dt if dt.tzinfo is not None else dt.replace(tzinfo=timezone.utc)

    def remaining_estimate(self, last_run_at: datetime) -> timedelta:
        raise NotImplementedError

    def is_due(self, last_run_at: datetime) -> schedstate:
        raise NotImplementedError

    def __eq__(self, other: object) -> bool:
        if isinstance(other, BaseSchedule):
            return other.nowfun == self.nowfun
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]


def app_timezone(app: Celery) -> tzinfo:
    if app.conf.timezone:
        return app.timezone
    if app.conf.enable_utc:
        return timezone.utc
    local = datetime.now().astimezone().tzinfo
    return local or timezone.utc


class schedule(BaseSchedule):
    """Run every ``run_every`` (a ``timedelta`` or seconds).

    Args:
        relative: round the next run down to the interval's resolution (whole
            days, hours, minutes or seconds), as Celery does.
    """

    def __init__(
        self,
        run_every: float | timedelta | None = None,
        relative: bool = False,
        nowfun: Callable[[], datetime] | None = None,
        app: Celery | None = None,
    ) -> None:
        super().__init__(nowfun=nowfun, app=app)
        self.run_every = _timedelta(run_every)
        self.relative = relative

    @property
    def seconds(self) -> float:
        return max(self.run_every.total_seconds(), 0.0)

    @property
    def human_seconds(self) -> str:
        return _humanize(self.seconds)

    def remaining_estimate(self, last_run_at: datetime) -> timedelta:
        end = self.maybe_make_aware(last_run_at) + self.run_every
        if self.relative:
            end = _round_down(end, self.run_every)
        return end - self.now()

    def is_due(self, last_run_at: datetime) -> schedstate:
        remaining = max(self.remaining_estimate(last_run_at).total_seconds(), 0.0)
        if remaining == 0:
            return schedstate(True, self.seconds)
        return schedstate(False, remaining)

    def __repr__(self) -> str:
        return f"<freq: {self.human_seconds}>"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, schedule):
            return self.run_every == other.run_every
        return self.run_every == other

    def __reduce__(self) -> tuple[Any, ...]:
        return self.__class__, (self.run_every, self.relative, self.nowfun)


class crontab(BaseSchedule):
    """Run at the times a cron line would: ``crontab(minute=0, hour='*/3', day_of_week='mon-fri')``.

    Fields: ``minute`` (0-59), ``hour`` (0-23), ``day_of_week`` (0-6, Sunday is 0,
    or names), ``day_of_month`` (1-31), ``month_of_year`` (1-12 or names). Each is an
    int, a list of ints or a cron string. A day must match both ``day_of_week`` and
    ``day_of_month`` (Celery's rule, not cron's "either").

    Raises:
        ValueError: a field is malformed or out of range (:class:`ParseException` for syntax).
    """

    def __init__(
        self,
        minute: Cronspec = "*",
        hour: Cronspec = "*",
        day_of_week: Cronspec = "*",
        day_of_month: Cronspec = "*",
        month_of_year: Cronspec = "*",
        **kwargs: Any,
    ) -> None:
        self._orig = (minute, hour, day_of_week, day_of_month, month_of_year)
        self._orig_kwargs = kwargs
        self.minute = parse_field("minute", minute)
        self.hour = parse_field("hour", hour)
        self.day_of_week = parse_field("day_of_week", day_of_week)
        self.day_of_month = parse_field("day_of_month", day_of_month)
        self.month_of_year = parse_field("month_of_year", month_of_year)
        super().__init__(**kwargs)

    @classmethod
    def from_string(cls, line: str) -> crontab:
        """``crontab.from_string('*/5 9-17 * * mon-fri')`` (minute hour day-of-month month day-of-week)."""
        fields = line.split()
        if len(fields) != 5:
            raise ParseException(f"a crontab line has 5 fields (minute hour day month weekday), got {line!r}")
        minute, hour, day_of_month, month_of_year, day_of_week = fields
        return cls(minute, hour, day_of_week, day_of_month, month_of_year)

    def next_run_after(self, when: datetime) -> datetime:
        """The first matching instant strictly after ``when``, in the schedule's time zone."""
        return next_fire(
            self.maybe_make_aware(when), self.tz, self.minute, self.hour,
            self.day_of_week, self.day_of_month, self.month_of_year,
        )  # fmt: skip

    def remaining_estimate(self, last_run_at: datetime) -> timedelta:
        return self.next_run_after(last_run_at) - self.now()

    def is_due(self, last_run_at: datetime) -> schedstate:
        """Due when a matching time has passed since ``last_run_at``: one run, however many were missed.

        With ``beat_cron_starting_deadline`` set, a run missed by more than that many
        seconds is skipped (unless a later one falls within the deadline).
        """
        now = self.now()
        due = self.next_run_after(last_run_at) <= now
        deadline = self.app.conf.beat_cron_starting_deadline if due else None
        if deadline is not None and self.next_run_after(now - timedelta(seconds=deadline)) > now:
            due = False
        return schedstate(due, max((self.next_run_after(now) - now).total_seconds(), 0.0))

    def __repr__(self) -> str:
        m, h, dow, dom, moy = (_spec_repr(v) for v in self._orig)
        return f"<crontab: {m} {h} {dom} {moy} {dow} (m/h/dM/MY/d)>"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, crontab):
            return (
                other.minute == self.minute
                and other.hour == self.hour
                and other.day_of_week == self.day_of_week
                and other.day_of_month == self.day_of_month
                and other.month_of_year == self.month_of_year
                and super().__eq__(other)
            )
        return NotImplemented

    def __reduce__(self) -> tuple[Any, ...]:
        return self.__class__, self._orig, self._orig_kwargs

    def __setstate__(self, state: dict[str, Any]) -> None:
        BaseSchedule.__init__(self, **state)


class solar(BaseSchedule):
    """Run at a solar event (``'sunrise'``, ``'sunset'``, ``'dusk_civil'``...) at latitude/longitude.

    Needs ``ephem`` (``pip install celeriac[solar]``). When the sun doesn't rise or set
    that day (polar day or night), the schedule looks again after the next anti-transit.
    """

    # event -> (horizon, ephem method, use the sun's centre): Celery's table.
    _events: dict[str, tuple[str, str, bool]] = {
        "dawn_astronomical": ("-18", "next_rising", True),
        "dawn_nautical": ("-12", "next_rising", True),
        "dawn_civil": ("-6", "next_rising", True),
        "sunrise": ("-0:34", "next_rising", False),
        "solar_noon": ("0", "next_transit", False),
        "sunset": ("-0:34", "next_setting", False),
        "dusk_civil": ("-6", "next_setting", True),
        "dusk_nautical": ("-12", "next_setting", True),
        "dusk_astronomical": ("-18", "next_setting", True),
    }

    def __init__(self, event: str, lat: float, lon: float, **kwargs: Any) -> None:
        if event not in self._events:
            raise ValueError(f'Argument event "{event}" is invalid, must be one of {", ".join(sorted(self._events))}.')
        if not -90 <= lat <= 90:
            raise ValueError(f"Argument latitude {lat} is invalid, must be between -90 and 90.")
        if not -180 <= lon <= 180:
            raise ValueError(f"Argument longitude {lon} is invalid, must be between -180 and 180.")
        try:
            import ephem
        except ImportError:
            raise ImportError("solar schedules need the ephem package: pip install 'celeriac[solar]'") from None
        super().__init__(**kwargs)
        self.ephem: Any = ephem
        self.event, self.lat, self.lon = event, lat, lon
        horizon, self.method, self.use_center = self._events[event]
        self.cal: Any = ephem.Observer()
        self.cal.lat, self.cal.lon, self.cal.elev = str(lat), str(lon), 0
        self.cal.horizon, self.cal.pressure = horizon, 0

    def next_run_after(self, when: datetime) -> datetime:
        start = self.maybe_make_aware(when).astimezone(timezone.utc).replace(tzinfo=None)
        self.cal.date = start
        sun = self.ephem.Sun()
        method = getattr(self.cal, self.method)
        try:
            found = method(sun, start=start, use_center=True) if self.use_center else method(sun, start=start)
        except self.ephem.CircumpolarError:
            # No rising or setting that day (polar day or night): look again after the next anti-transit.
            found = self.ephem.Date(self.cal.next_antitransit(sun) + self.ephem.minute)
        result: datetime = found.datetime()
        return result.replace(tzinfo=timezone.utc)

    def remaining_estimate(self, last_run_at: datetime) -> timedelta:
        return self.next_run_after(last_run_at) - self.now()

    def is_due(self, last_run_at: datetime) -> schedstate:
        now = self.now()
        due = self.next_run_after(last_run_at) <= now
        return schedstate(due, max((self.next_run_after(now) - now).total_seconds(), 0.0))

    def __repr__(self) -> str:
        return f"<solar: {self.event} at latitude {self.lat}, longitude: {self.lon}>"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, solar):
            return (other.event, other.lat, other.lon) == (self.event, self.lat, self.lon)
        return NotImplemented

    def __reduce__(self) -> tuple[Any, ...]:
        return self.__class__, (self.event, self.lat, self.lon)


def maybe_schedule(s: Any, relative: bool = False, app: Celery | None = None) -> Any:
    """A number or ``timedelta`` becomes a :class:`schedule`; a schedule object is returned as is."""
    if s is None:
        return None
    if isinstance(s, (int, float, timedelta)) and not isinstance(s, bool):
        return schedule(s, relative, app=app)
    if not callable(getattr(s, "is_due", None)):
        raise TypeError(f"a schedule is seconds, a timedelta, crontab(...), solar(...) or schedule(...), got {s!r}")
    if app is not None and isinstance(s, BaseSchedule) and s._app is None:
        s._app = app
    return s


def _timedelta(value: float | timedelta | None) -> timedelta:
    if isinstance(value, timedelta):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise ValueError(f"run_every must be a finite number of seconds, got {value!r}")
        return timedelta(seconds=value)
    raise TypeError(f"run_every must be a number of seconds or a timedelta, got {value!r}")


def _round_down(when: datetime, interval: timedelta) -> datetime:
    """Celery's ``delta_resolution``: drop the units smaller than the interval's own."""
    seconds = interval.total_seconds()
    if seconds >= 86400:
        return when.replace(hour=0, minute=0, second=0, microsecond=0)
    if seconds >= 3600:
        return when.replace(minute=0, second=0, microsecond=0)
    if seconds >= 60:
        return when.replace(second=0, microsecond=0)
    return when.replace(microsecond=0)


def _humanize(seconds: float) -> str:
    """Celery's ``humanize_seconds``: ``'10.00 seconds'``, ``'1.00 hour'``."""
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        if seconds >= size or unit == "second":
            n = seconds / size
            return f"{n:.2f} {unit}{'' if n == 1 else 's'}"
    raise AssertionError("unreachable")


def _spec_repr(spec: Any) -> str:
    if isinstance(spec, (str, int)):
        return str(spec)
    return ",".join(str(v) for v in sorted(spec))
