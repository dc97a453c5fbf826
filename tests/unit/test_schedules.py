"""Schedules: crontab fields, due times on a fake clock, daylight saving time, intervals and solar events."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from celeriac import Celery, schedules
from celeriac.schedules import ParseException, crontab, maybe_schedule, schedule, solar

UTC = timezone.utc
NEW_YORK = ZoneInfo("America/New_York")
LONDON = ZoneInfo("Europe/London")


class FakeClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def make_app(broker_url: str) -> Iterator[Callable[..., Celery]]:
    apps: list[Celery] = []

    def make(**settings: object) -> Celery:
        app = Celery("t", broker=broker_url, backend="memory://", set_as_current=False, **settings)
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.close()


def test_public_imports() -> None:
    from celeriac.schedules import crontab as c
    from celeriac.schedules import schedule as s
    from celeriac.schedules import solar as so

    assert (c, s, so) == (schedules.crontab, schedules.schedule, schedules.solar)


# -- parsing ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("field", "spec", "expected"),
    [
        ("minute", "*/15", {0, 15, 30, 45}),
        ("minute", "1,13,30-33", {1, 13, 30, 31, 32, 33}),
        ("minute", "0-30/10", {0, 10, 20, 30}),
        ("minute", 7, {7}),
        ("minute", [0, 30], {0, 30}),
        ("hour", "*/4", {0, 4, 8, 12, 16, 20}),
        ("hour", "22-1", {22, 23, 0, 1}),
        ("day_of_week", "mon-fri", {1, 2, 3, 4, 5}),
        ("day_of_week", "sunday,sat", {0, 6}),
        ("day_of_week", "fri-mon", {5, 6, 0, 1}),
        ("day_of_week", "*", set(range(7))),
        ("day_of_month", "*/3", {1, 4, 7, 10, 13, 16, 19, 22, 25, 28, 31}),
        ("day_of_month", "1-7,15-21", {*range(1, 8), *range(15, 22)}),
        ("month_of_year", "jan", {1}),
        ("month_of_year", "2-12/2", {2, 4, 6, 8, 10, 12}),
        ("month_of_year", "Jun-AUG,december", {6, 7, 8, 12}),
    ],
)
def test_crontab_fields(field: str, spec: object, expected: set[int]) -> None:
    assert set(getattr(crontab(**{field: spec}), field)) == expected


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"minute": 60}, "crontab minute=60: 60 is out of range 0-59"),
        ({"minute": "0-60"}, "60 is out of range 0-59"),
        ({"hour": "24"}, "crontab hour='24': 24 is out of range 0-23"),
        ({"day_of_week": 7}, "7 is out of range 0-6"),
        ({"day_of_month": 0}, "crontab day_of_month=0: 0 is out of range 1-31"),
        ({"month_of_year": "13"}, "13 is out of range 1-12"),
        ({"minute": "*/0"}, "step '0' must be a positive number"),
        ({"minute": "*/x"}, "step 'x' must be a positive number"),
        ({"minute": "5/15"}, "a step needs a range or '*' before it"),
        ({"minute": "1,,2"}, "empty item in the list"),
        ({"minute": ""}, "empty item in the list"),
        ({"hour": "1-"}, "'' is not a number"),
        ({"minute": "abc"}, "'abc' is not a number"),
        ({"minute": "jan"}, "'jan' is not a number"),
        ({"day_of_week": "funday"}, "unknown name 'funday'"),
        ({"day_of_week": "jan"}, "unknown name 'jan'"),
        ({"month_of_year": "mon"}, "unknown name 'mon'"),
        ({"minute": []}, "matches nothing"),
    ],
)
def test_bad_crontab_fields_raise_a_clear_value_error(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError) as info:
        crontab(**kwargs)  # type: ignore[arg-type]
    assert message in str(info.value)


def test_syntax_errors_are_celerys_parse_exception() -> None:
    with pytest.raises(ParseException):
        crontab(minute="*/0")
    assert issubclass(ParseException, ValueError)


@pytest.mark.parametrize("spec", [1.5, True, object()])
def test_wrong_field_types_raise_type_error(spec: object) -> None:
    with pytest.raises(TypeError, match="crontab minute"):
        crontab(minute=spec)  # type: ignore[arg-type]


def test_from_string_and_repr() -> None:
    c = crontab.from_string("*/5 9-17 1 jan mon-fri")
    assert c == crontab(minute="*/5", hour="9-17", day_of_month=1, month_of_year="jan", day_of_week="mon-fri")
    assert repr(c) == "<crontab: */5 9-17 1 jan mon-fri (m/h/dM/MY/d)>"
    with pytest.raises(ValueError, match="5 fields"):
        crontab.from_string("* * *")


# -- next run, is_due, remaining_estimate on a fake clock -------------------------------------------
def test_is_due_and_remaining_estimate_with_a_fake_clock(make_app: Callable[..., Celery]) -> None:
    clock = FakeClock(datetime(2024, 5, 6, 8, 0, tzinfo=UTC))  # a Monday
    c = crontab(minute=0, hour=9, nowfun=clock, app=make_app())
    last = datetime(2024, 5, 5, 9, 0, 5, tzinfo=UTC)
    assert c.remaining_estimate(last) == timedelta(hours=1)
    assert c.is_due(last) == (False, 3600.0)
    clock.now = datetime(2024, 5, 6, 9, 0, 1, tzinfo=UTC)
    due, next_check = c.is_due(last)
    assert due and next_check == pytest.approx(86400 - 1)
    # Once sent (last_run_at = now), it isn't due again until tomorrow.
    assert c.is_due(clock.now) == (False, pytest.approx(86400 - 1))


def test_missed_runs_are_due_once_not_once_per_miss(make_app: Callable[..., Celery]) -> None:
    clock = FakeClock(datetime(2024, 5, 6, 12, 7, tzinfo=UTC))
    every_minute = crontab(nowfun=clock, app=make_app())
    last = datetime(2024, 5, 6, 12, 0, tzinfo=UTC)  # seven runs missed
    assert every_minute.is_due(last).is_due
    assert not every_minute.is_due(clock.now).is_due  # what the scheduler records after sending


def test_naive_datetimes_are_utc(make_app: Callable[..., Celery]) -> None:
    clock = FakeClock(datetime(2024, 5, 6, 8, 30))
    c = crontab(minute=0, hour=9, nowfun=clock, app=make_app())
    assert c.remaining_estimate(datetime(2024, 5, 6, 8, 0)) == timedelta(minutes=30)


def test_fields_are_read_in_the_app_timezone(make_app: Callable[..., Celery]) -> None:
    app = make_app(timezone="America/New_York")
    c = crontab(minute=0, hour=9, app=app)
    after = datetime(2024, 7, 1, 12, 0, tzinfo=UTC)  # 08:00 in New York (EDT)
    assert c.next_run_after(after) == datetime(2024, 7, 1, 13, 0, tzinfo=UTC)
    assert crontab(minute=0, hour=9, app=make_app()).next_run_after(after) == datetime(2024, 7, 2, 9, 0, tzinfo=UTC)


def test_day_of_month_and_month_of_year(make_app: Callable[..., Celery]) -> None:
    app = make_app()
    start = datetime(2024, 2, 1, tzinfo=UTC)
    assert crontab(0, 0, day_of_month=31, app=app).next_run_after(start) == datetime(2024, 3, 31, tzinfo=UTC)
    leap = crontab(0, 0, day_of_month=29, month_of_year=2, app=app)
    assert leap.next_run_after(datetime(2024, 3, 1, tzinfo=UTC)) == datetime(2028, 2, 29, tzinfo=UTC)
    quarterly = crontab(30, 6, day_of_month=1, month_of_year="*/3", app=app)
    assert quarterly.next_run_after(datetime(2024, 4, 1, 6, 30, tzinfo=UTC)) == datetime(2024, 7, 1, 6, 30, tzinfo=UTC)


def test_day_of_week_and_day_of_month_must_both_match(make_app: Callable[..., Celery]) -> None:
    first_monday = crontab(0, 10, day_of_week="mon", day_of_month="1-7", app=make_app())
    assert first_monday.next_run_after(datetime(2024, 5, 7, tzinfo=UTC)) == datetime(2024, 6, 3, 10, tzinfo=UTC)


def test_a_crontab_that_never_matches_says_so(make_app: Callable[..., Celery]) -> None:
    never = crontab(0, 0, day_of_month=30, month_of_year=2, app=make_app())
    with pytest.raises(ValueError, match="never matches"):
        never.next_run_after(datetime(2024, 1, 1, tzinfo=UTC))


def test_cron_starting_deadline_skips_runs_missed_too_long_ago(make_app: Callable[..., Celery]) -> None:
    clock = FakeClock(datetime(2024, 5, 6, 12, 0, tzinfo=UTC))
    app = make_app(beat_cron_starting_deadline=120)
    daily = crontab(minute=0, hour=9, nowfun=clock, app=app)
    last = datetime(2024, 5, 5, 9, 0, tzinfo=UTC)
    assert daily.is_due(last) == (False, 21 * 3600.0)  # missed three hours ago: skipped
    clock.now = datetime(2024, 5, 6, 9, 1, tzinfo=UTC)
    assert daily.is_due(last).is_due  # a minute late: within the deadline


# -- daylight saving time ------------------------------------------------------------------------
def simulate(c: crontab, clock: FakeClock, start: datetime, end: datetime) -> list[datetime]:
    """Drive ``c`` the way beat does: check every minute, record last_run_at = now when due."""
    runs: list[datetime] = []
    last = start
    clock.now = start
    while clock.now < end:
        clock.now += timedelta(minutes=1)
        if c.is_due(last).is_due:
            runs.append(clock.now)
            last = clock.now
    return runs


@pytest.mark.parametrize(
    ("zone", "day", "expected_local"),
    [
        # Spring forward at 02:00 -> 03:00: 02:30 doesn't exist; it runs once, at 03:30 (an hour after 01:30).
        ("America/New_York", datetime(2024, 3, 10), [(3, 30)]),
        # London springs forward at 01:00 -> 02:00: a 01:30 job runs once, at 02:30.
        ("Europe/London", datetime(2024, 3, 31), [(2, 30)]),
    ],
)
def test_spring_forward_a_skipped_time_runs_once(
    make_app: Callable[..., Celery], zone: str, day: datetime, expected_local: list[tuple[int, int]]
) -> None:
    tz = ZoneInfo(zone)
    clock = FakeClock(day.replace(tzinfo=tz))
    hour = 2 if zone == "America/New_York" else 1
    c = crontab(minute=30, hour=hour, nowfun=clock, app=make_app(timezone=zone))
    runs = simulate(c, clock, day.replace(tzinfo=tz).astimezone(UTC), (day + timedelta(days=1)).replace(tzinfo=tz))
    assert [(r.astimezone(tz).hour, r.astimezone(tz).minute) for r in runs] == expected_local
    # The next day it is back at its wall time.
    nxt = c.next_run_after(runs[-1]).astimezone(tz)
    assert (nxt.day, nxt.hour, nxt.minute) == ((day + timedelta(days=1)).day, hour, 30)


@pytest.mark.parametrize(
    ("zone", "day"), [("America/New_York", datetime(2024, 11, 3)), ("Europe/London", datetime(2024, 10, 27))]
)
def test_fall_back_a_repeated_time_runs_once(make_app: Callable[..., Celery], zone: str, day: datetime) -> None:
    tz = ZoneInfo(zone)
    clock = FakeClock(day.replace(tzinfo=tz))
    c = crontab(minute=30, hour=1, nowfun=clock, app=make_app(timezone=zone))
    start = day.replace(tzinfo=tz).astimezone(UTC)
    runs = simulate(c, clock, start, start + timedelta(hours=25))
    assert len(runs) == 1
    assert runs[0].astimezone(tz).fold == 0  # the first 01:30
    assert runs[0].astimezone(tz).replace(tzinfo=None) == day.replace(hour=1, minute=30)


def test_hourly_jobs_keep_running_every_hour_through_both_changes(make_app: Callable[..., Celery]) -> None:
    app = make_app(timezone="America/New_York")
    clock = FakeClock(datetime(2024, 1, 1, tzinfo=UTC))
    hourly = crontab(minute=30, nowfun=clock, app=app)
    spring = datetime(2024, 3, 10, tzinfo=NEW_YORK).astimezone(UTC)
    fall = datetime(2024, 11, 3, tzinfo=NEW_YORK).astimezone(UTC)
    spring_runs = simulate(hourly, clock, spring, datetime(2024, 3, 11, tzinfo=NEW_YORK))
    fall_runs = simulate(hourly, clock, fall, datetime(2024, 11, 4, tzinfo=NEW_YORK))
    assert len(spring_runs) == 23 and len(fall_runs) == 25  # the days are 23 and 25 hours long
    for runs in (spring_runs, fall_runs):
        gaps = {b - a for a, b in zip(runs, runs[1:], strict=False)}
        assert gaps == {timedelta(hours=1)}


def test_utc_schedules_ignore_local_dst(make_app: Callable[..., Celery]) -> None:
    clock = FakeClock(datetime(2024, 3, 10, tzinfo=UTC))
    c = crontab(minute=30, hour=2, nowfun=clock, app=make_app())
    runs = simulate(c, clock, datetime(2024, 3, 10, tzinfo=UTC), datetime(2024, 3, 12, tzinfo=UTC))
    assert runs == [datetime(2024, 3, 10, 2, 30, tzinfo=UTC), datetime(2024, 3, 11, 2, 30, tzinfo=UTC)]


# -- intervals ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("every", [10, 10.0, timedelta(seconds=10)])
def test_interval_schedules(make_app: Callable[..., Celery], every: float | timedelta) -> None:
    clock = FakeClock(datetime(2024, 5, 6, 12, 0, 0, tzinfo=UTC))
    s = maybe_schedule(every, app=make_app())
    s.nowfun = clock
    assert isinstance(s, schedule) and s.run_every == timedelta(seconds=10)
    last = clock.now
    assert s.is_due(last) == (False, 10.0)
    clock.now += timedelta(seconds=4)
    assert s.remaining_estimate(last) == timedelta(seconds=6)
    clock.now += timedelta(seconds=6)
    assert s.is_due(last) == (True, 10.0)
    clock.now += timedelta(minutes=5)  # thirty intervals missed: still one due run
    assert s.is_due(last) == (True, 10.0)
    assert not s.is_due(clock.now).is_due


def test_relative_interval_rounds_to_its_resolution(make_app: Callable[..., Celery]) -> None:
    clock = FakeClock(datetime(2024, 5, 6, 12, 59, 0, tzinfo=UTC))
    hourly = schedule(timedelta(hours=1), relative=True, nowfun=clock, app=make_app())
    assert hourly.remaining_estimate(datetime(2024, 5, 6, 12, 20, tzinfo=UTC)) == timedelta(minutes=1)


def test_interval_repr_equality_and_errors() -> None:
    assert repr(schedule(10)) == "<freq: 10.00 seconds>"
    assert repr(schedule(timedelta(hours=1))) == "<freq: 1.00 hour>"
    assert schedule(10) == schedule(timedelta(seconds=10))
    with pytest.raises(TypeError, match="run_every"):
        schedule("10")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="a schedule is"):
        maybe_schedule("every day")


# -- solar ------------------------------------------------------------------------------------------
def test_solar_sunrise_and_sunset(make_app: Callable[..., Celery]) -> None:
    clock = FakeClock(datetime(2024, 6, 21, 0, 0, tzinfo=UTC))
    app = make_app()
    sunrise = solar("sunrise", 51.5, -0.13, nowfun=clock, app=app)  # London, midsummer: 03:43 UTC
    first = sunrise.next_run_after(clock.now)
    assert datetime(2024, 6, 21, 3, 35, tzinfo=UTC) < first < datetime(2024, 6, 21, 3, 50, tzinfo=UTC)
    assert not sunrise.is_due(clock.now).is_due
    clock.now = first + timedelta(seconds=1)
    due, next_check = sunrise.is_due(datetime(2024, 6, 21, 0, 0, tzinfo=UTC))
    assert due and 23 * 3600 < next_check < 25 * 3600
    sunset = solar("sunset", 51.5, -0.13, app=app).next_run_after(clock.now)
    assert datetime(2024, 6, 21, 20, 15, tzinfo=UTC) < sunset < datetime(2024, 6, 21, 20, 30, tzinfo=UTC)


def test_solar_polar_night_checks_again_later(make_app: Callable[..., Celery]) -> None:
    start = datetime(2024, 12, 21, tzinfo=UTC)
    nxt = solar("sunrise", 78.2, 15.6, app=make_app()).next_run_after(start)  # Svalbard in December
    assert nxt > start


@pytest.mark.parametrize(
    ("args", "message"),
    [(("noon", 0, 0), "event"), (("sunrise", 91, 0), "latitude"), (("sunrise", 0, -181), "longitude")],
)
def test_solar_arguments_are_checked(args: tuple[str, float, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        solar(*args)


def test_a_schedule_without_an_app_uses_the_default_app(monkeypatch: pytest.MonkeyPatch) -> None:
    from celeriac import _state

    monkeypatch.setattr(_state, "_current_app", None)
    monkeypatch.setattr(_state, "_default_app", None)
    clock = FakeClock(datetime(2024, 5, 6, 8, 0, tzinfo=UTC))
    nine = crontab(minute=0, hour=9, nowfun=clock)
    assert nine.is_due(datetime(2024, 5, 5, 9, 0, tzinfo=UTC)) == (False, 3600.0)
    default = _state._default_app
    assert default is not None and default.main == "default"
    default.close()


def test_next_runs_agree_with_celerys_crontab_in_utc(make_app: Callable[..., Celery]) -> None:
    import random

    import celery
    from celery.schedules import crontab as celery_crontab

    reference = celery.Celery("reference", set_as_current=False)
    reference.conf.update(enable_utc=True, timezone="UTC")
    app = make_app()
    rnd = random.Random(20240506)

    def field(low: int, count: int) -> str:
        kind = rnd.choice(["*", "n", "range", "step", "list"])
        if kind == "*":
            return "*"
        if kind == "n":
            return str(rnd.randrange(low, low + count))
        if kind == "range":
            first = rnd.randrange(low, low + count)
            return f"{first}-{rnd.randrange(first, low + count)}"
        if kind == "step":
            return f"*/{rnd.randrange(1, count)}"
        return ",".join(str(rnd.randrange(low, low + count)) for _ in range(3))

    for _ in range(400):
        spec = {
            "minute": field(0, 60),
            "hour": field(0, 24),
            "day_of_week": field(0, 7),
            "day_of_month": field(1, 28),
            "month_of_year": field(1, 12),
        }
        last = datetime(2024, 1, 1, tzinfo=UTC) + timedelta(seconds=rnd.randrange(0, 3 * 365 * 86400))
        theirs = last + celery_crontab(**spec, app=reference, nowfun=lambda last=last: last).remaining_estimate(last)
        assert crontab(**spec, app=app).next_run_after(last) == theirs, (spec, last)


def test_celerys_module_names_are_there() -> None:
    import celery.beat
    import celery.schedules

    import celeriac.beat

    assert set(celery.schedules.__all__) <= set(dir(schedules))
    assert set(celery.beat.__all__) <= set(dir(celeriac.beat))
    assert schedules.crontab_parser(60).parse("*/15") == {0, 15, 30, 45}
    assert schedules.crontab_parser(12, 1).parse("2-12/2") == {2, 4, 6, 8, 10, 12}
    assert schedules.crontab_parser(7).parse("mon-fri") == {1, 2, 3, 4, 5}
    with pytest.raises(ValueError, match="out of range"):
        schedules.crontab_parser(24).parse("25")
