"""The scheduler on fake clocks: due runs sent once, leases, and claims that a stale leader can't win."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from celeriac import Celery
from celeriac._beat_store import MemoryScheduleStore, ScheduleStore, SQLiteScheduleStore, encode_state
from celeriac.beat import PersistentScheduler, Scheduler, Service, load_scheduler_class, store_for_app
from celeriac.exceptions import ImproperlyConfigured
from celeriac.schedules import crontab, schedule

UTC = timezone.utc


class Clock:
    """A fake clock for both the schedule (datetimes) and the lease (seconds)."""

    def __init__(self) -> None:
        self.now = datetime(2024, 5, 6, 12, 0, tzinfo=UTC)
        self.seconds = 1000.0

    def __call__(self) -> datetime:
        return self.now

    def lease(self) -> float:
        return self.seconds

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
        self.seconds += seconds


class Recording(Scheduler):
    """Records what it would send instead of sending it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.sent: list[tuple[str, str]] = []
        super().__init__(*args, **kwargs)

    def apply_async(self, entry: Any, producer: Any = None, advance: bool = True, **kwargs: Any) -> Any:
        self.sent.append((entry.name, kwargs["task_id"]))
        return None


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, clock: Clock, tmp_path: Path) -> Iterator[ScheduleStore]:
    if request.param == "memory":
        made: ScheduleStore = MemoryScheduleStore(clock=clock.lease)
    else:
        made = SQLiteScheduleStore(str(tmp_path / "beat.db"), "t", clock=clock.lease)
    yield made
    made.close()


def make_app(broker_url: str, clock: Clock, **entries: Any) -> Celery:
    app = Celery("t", broker=broker_url, backend="memory://", set_as_current=False)
    app.conf.beat_schedule = {
        name: {"task": "t.tick", "schedule": schedule(seconds, nowfun=clock, app=app)}
        for name, seconds in (entries or {"every-10s": 10}).items()
    }
    return app


def test_a_due_entry_is_sent_once_per_interval(broker_url: str, clock: Clock, store: ScheduleStore) -> None:
    app = make_app(broker_url, clock)
    beat = Recording(app, store=store, lease_timeout=10)
    assert beat.tick() == pytest.approx(10 / 3)  # sleeps at most a third of the lease
    assert beat.sent == []  # a new entry's first run is one interval after it is first seen
    clock.advance(10)
    beat.tick()
    beat.tick()
    assert [name for name, _ in beat.sent] == ["every-10s"]
    clock.advance(10)
    beat.tick()
    assert len(beat.sent) == 2
    assert len({task_id for _, task_id in beat.sent}) == 2
    state = store.load()["every-10s"]
    assert state.total_run_count == 2 and state.last_run_at == clock.now


def test_missed_intervals_give_one_run(broker_url: str, clock: Clock, store: ScheduleStore) -> None:
    app = make_app(broker_url, clock)
    beat = Recording(app, store=store, lease_timeout=10)
    beat.tick()
    clock.advance(95)  # nine intervals while beat was "down"
    beat.tick()
    beat.tick()
    assert len(beat.sent) == 1


def test_a_restarted_scheduler_neither_repeats_nor_skips(broker_url: str, clock: Clock, store: ScheduleStore) -> None:
    app = make_app(broker_url, clock)
    first = Recording(app, store=store, lease_timeout=10)
    first.tick()
    clock.advance(10)
    first.tick()
    first.close()  # releases the lease
    second = Recording(app, store=store, lease_timeout=10)
    second.tick()
    assert second.sent == []  # no repeat of the run the first one sent
    clock.advance(10)
    second.tick()
    assert len(second.sent) == 1  # no skip either
    assert store.load()["every-10s"].total_run_count == 2


def test_only_the_lease_holder_sends_and_a_standby_takes_over(
    broker_url: str, clock: Clock, store: ScheduleStore
) -> None:
    app = make_app(broker_url, clock)
    a = Recording(app, store=store, lease_timeout=10)
    b = Recording(app, store=store, lease_timeout=10)
    a.tick()
    b.tick()
    assert a.is_leader and not b.is_leader
    clock.advance(10)
    a.tick()
    b.tick()
    assert len(a.sent) == 1 and b.sent == []
    # a stops renewing (dies); b takes over once the lease has run out, not before.
    clock.advance(5)
    b.tick()
    assert not b.is_leader
    clock.advance(6)
    b.tick()
    assert b.is_leader and len(b.sent) == 1


def test_a_paused_leader_cannot_send_a_run_twice(broker_url: str, clock: Clock, store: ScheduleStore) -> None:
    app = make_app(broker_url, clock)
    a = Recording(app, store=store, lease_timeout=10)
    b = Recording(app, store=store, lease_timeout=10)
    a.tick()
    clock.advance(10)
    # a decides the entry is due... and is paused before it claims the run.
    assert a._hold_lease()
    states = a._load_states()
    entry = a.data["every-10s"]
    entry.last_run_at = states["every-10s"].last_run_at
    assert entry.is_due().is_due
    clock.advance(11)  # the lease runs out; b takes over and sends the run
    b.tick()
    assert len(b.sent) == 1
    a._claim_and_send(entry, states["every-10s"])  # a wakes up and carries on
    assert a.sent == []


def test_a_claim_from_stale_state_fails_even_with_the_lease(clock: Clock, store: ScheduleStore) -> None:
    assert store.acquire("a", 10)
    store.add("e", encode_state(clock.now, 0))
    store.add("e", encode_state(clock.now + timedelta(hours=1), 5))  # add never overwrites
    version = store.load()["e"].version
    assert json.loads(version)["total_run_count"] == 0
    assert store.claim("a", "e", version, encode_state(clock.now, 1))
    assert not store.claim("a", "e", version, encode_state(clock.now, 1))
    assert not store.claim("b", "e", store.load()["e"].version, encode_state(clock.now, 2))  # b has no lease
    assert not store.acquire("b", 10)
    store.release("a")
    assert store.acquire("b", 10)


def test_due_tasks_go_through_the_apps_send_path(broker_url: str, clock: Clock) -> None:
    app = make_app(broker_url, clock)
    app.conf.beat_schedule = {
        "routed": {
            "task": "t.unregistered",
            "schedule": schedule(1, nowfun=clock, app=app),
            "args": (1, 2),
            "kwargs": {"z": 3},
            "options": {"queue": "periodic", "expires": 30},
        }
    }
    beat = Scheduler(app, lease_timeout=10)
    beat.tick()
    clock.advance(1)
    beat.tick()
    broker = app.connection_for_write()
    assert broker.queue_size("periodic") == 1
    (delivery,) = broker.get(["periodic"], max_messages=1, timeout=1)
    assert delivery.envelope.headers["task"] == "t.unregistered"
    assert delivery.envelope.headers["expires"] is not None
    args, kwargs, _ = json.loads(delivery.envelope.body)
    assert (args, kwargs) == ([1, 2], {"z": 3})


def test_add_periodic_task_from_on_after_configure(broker_url: str, clock: Clock) -> None:
    app = Celery("t", broker=broker_url, backend="memory://", set_as_current=False)

    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    @app.on_after_configure.connect
    def setup(sender: Celery, **kwargs: Any) -> None:
        sender.add_periodic_task(10.0, add.s(1, 2), name="add every 10")
        sender.add_periodic_task(crontab(minute=0, hour=4), add.s(3, 4), expires=60)

    service = Service(app, lease_timeout=10)
    entries = service.scheduler.data
    assert entries["add every 10"].task == add.name
    assert entries["add every 10"].args == (1, 2)
    assert entries["add every 10"].schedule == schedule(10)
    unnamed = next(e for name, e in entries.items() if name == repr(add.s(3, 4)))
    assert unnamed.options == {"expires": 60} and unnamed.args == (3, 4)
    service.sync()


def test_bad_schedules_and_scheduler_classes_are_reported(broker_url: str) -> None:
    app = Celery("t", broker=broker_url, backend="memory://", set_as_current=False)
    app.conf.beat_schedule = {"x": {"task": "t.x"}}
    with pytest.raises(ImproperlyConfigured, match=r"beat_schedule\['x'\] needs 'task' and 'schedule'"):
        Scheduler(app)
    app.conf.beat_schedule = {"x": {"task": "t.x", "schedule": "daily"}}
    with pytest.raises(ImproperlyConfigured, match="a schedule is seconds"):
        Scheduler(app)
    with pytest.raises(ImproperlyConfigured, match="can't load the beat scheduler"):
        load_scheduler_class("nowhere:Nothing")
    assert load_scheduler_class("celery.beat:PersistentScheduler") is PersistentScheduler


def test_store_choice(tmp_path: Path, broker_url: str) -> None:
    sqlite_app = Celery("t", broker=f"sqlite:///{tmp_path / 'broker.db'}", set_as_current=False)
    store = store_for_app(sqlite_app)
    assert store.description == f"sqlite:///{tmp_path / 'broker.db'}"
    store.close()
    explicit = store_for_app(sqlite_app, str(tmp_path / "state"))
    assert explicit.description == f"sqlite:///{tmp_path / 'state'}"
    explicit.close()
    (tmp_path / "celery-shelve").write_bytes(b"\x00" * 512)
    with pytest.raises(ImproperlyConfigured, match="old Celery schedule file"):
        store_for_app(sqlite_app, str(tmp_path / "celery-shelve"))
    assert isinstance(store_for_app(Celery("t", broker=broker_url, set_as_current=False)), MemoryScheduleStore)
    sqlite_app.close()
