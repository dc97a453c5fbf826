"""The broker delivery contract on the two in-process brokers, plus SQLite's leases across consumers."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from celeriac.brokers import create_broker
from celeriac.brokers.base import Broker, Envelope
from celeriac.brokers.memory import MemoryBroker
from celeriac.brokers.sqlite import SQLiteBroker


def envelope(name: str, priority: int | None = None) -> Envelope:
    properties: dict[str, Any] = {"correlation_id": name}
    if priority is not None:
        properties["priority"] = priority
    return Envelope(name.encode(), {"id": name, "task": "tasks.t"}, properties, "application/json", "utf-8")


def bodies(deliveries: list[Any]) -> list[bytes]:
    return [d.envelope.body for d in deliveries]


def dead(broker: Broker) -> list[tuple[str, str, str]]:
    """(queue, reason, message id) of each dead-lettered message, whatever the broker's record looks like."""
    if isinstance(broker, MemoryBroker):
        return [(queue, reason, env.headers["id"]) for queue, reason, env in broker.dead_letters()]
    assert isinstance(broker, SQLiteBroker)
    return [(d["queue"], d["reason"], d["headers"]["id"]) for d in broker.dead_letters()]


@pytest.fixture(params=["memory", "sqlite"])
def broker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Broker]:
    url = f"memory://{uuid.uuid4().hex}" if request.param == "memory" else f"sqlite:///{tmp_path / 'broker.db'}"
    instance = create_broker(url)
    instance.open()
    yield instance
    instance.close()


def test_scheme_table_picks_the_implementation(broker: Broker) -> None:
    assert type(broker) in (MemoryBroker, SQLiteBroker)
    assert broker.supports_priority and broker.native_delay


def test_publish_get_ack(broker: Broker) -> None:
    broker.publish(envelope("m1"), exchange="", routing_key="q")
    assert broker.queue_size("q") == 1
    (delivery,) = broker.get(["q"], max_messages=10, timeout=0)
    assert delivery.envelope.body == b"m1" and delivery.queue == "q" and not delivery.redelivered
    assert delivery.envelope.headers["id"] == "m1"
    assert delivery.envelope.properties["correlation_id"] == "m1"
    assert (delivery.envelope.content_type, delivery.envelope.content_encoding) == ("application/json", "utf-8")
    assert broker.queue_size("q") == 0  # handed out: in flight, not waiting
    assert broker.get(["q"], max_messages=10, timeout=0) == []  # one consumer at a time
    broker.ack(delivery)
    assert broker.queue_size("q") == 0 and broker.get(["q"], max_messages=10, timeout=0) == []


def test_fifo_within_a_priority_and_max_messages(broker: Broker) -> None:
    for name in ("a", "b", "c"):
        broker.publish(envelope(name), exchange="", routing_key="q")
    assert bodies(broker.get(["q"], max_messages=2, timeout=0)) == [b"a", b"b"]
    assert bodies(broker.get(["q"], max_messages=2, timeout=0)) == [b"c"]


def test_queues_are_separate(broker: Broker) -> None:
    broker.publish(envelope("one"), exchange="", routing_key="q1")
    broker.publish(envelope("two"), exchange="", routing_key="q2")
    assert bodies(broker.get(["q2"], max_messages=10, timeout=0)) == [b"two"]
    assert bodies(broker.get(["q1", "q2"], max_messages=10, timeout=0)) == [b"one"]


def test_reject_requeue_redelivers_with_flag(broker: Broker) -> None:
    broker.publish(envelope("m1"), exchange="", routing_key="q")
    (first,) = broker.get(["q"], max_messages=1, timeout=0)
    broker.reject(first, requeue=True)
    assert broker.queue_size("q") == 1
    (again,) = broker.get(["q"], max_messages=1, timeout=0)
    assert again.envelope.body == b"m1" and again.redelivered is True
    broker.ack(again)
    assert broker.get(["q"], max_messages=1, timeout=0) == [] and dead(broker) == []


def test_reject_without_requeue_dead_letters(broker: Broker) -> None:
    broker.publish(envelope("poison"), exchange="", routing_key="q")
    (delivery,) = broker.get(["q"], max_messages=1, timeout=0)
    broker.reject(delivery, requeue=False, reason="bad input")
    assert broker.get(["q"], max_messages=1, timeout=0) == []
    assert broker.queue_size("q") == 0
    assert dead(broker) == [("q", "bad input", "poison")]


def test_higher_priority_first(broker: Broker) -> None:
    broker.publish(envelope("low", 0), exchange="", routing_key="q")
    broker.publish(envelope("none"), exchange="", routing_key="q")
    broker.publish(envelope("high", 9), exchange="", routing_key="q")
    broker.publish(envelope("mid", 5), exchange="", routing_key="q")
    assert bodies(broker.get(["q"], max_messages=10, timeout=0)) == [b"high", b"mid", b"low", b"none"]


def test_not_before_keeps_message_invisible_until_due(broker: Broker) -> None:
    due = datetime.now(timezone.utc) + timedelta(seconds=0.3)
    broker.publish(envelope("later"), exchange="", routing_key="q", not_before=due)
    broker.publish(envelope("now"), exchange="", routing_key="q")
    assert bodies(broker.get(["q"], max_messages=10, timeout=0)) == [b"now"]
    assert broker.get(["q"], max_messages=10, timeout=0) == []
    assert broker.queue_size("q") == 1  # scheduled messages wait in the broker
    (delivery,) = broker.get(["q"], max_messages=10, timeout=2)
    assert delivery.envelope.body == b"later"
    assert datetime.now(timezone.utc) >= due  # never early


def test_not_before_in_the_past_is_ready(broker: Broker) -> None:
    past = datetime.now(timezone.utc) - timedelta(hours=1)
    broker.publish(envelope("overdue"), exchange="", routing_key="q", not_before=past)
    assert bodies(broker.get(["q"], max_messages=1, timeout=0)) == [b"overdue"]


def test_get_waits_for_a_message_up_to_timeout(broker: Broker) -> None:
    assert broker.get(["empty"], max_messages=1, timeout=0.1) == []


def test_purge_and_queue_size(broker: Broker) -> None:
    for name in ("a", "b", "c"):
        broker.publish(envelope(name), exchange="", routing_key="q")
    later = datetime.now(timezone.utc) + timedelta(hours=1)
    broker.publish(envelope("scheduled"), exchange="", routing_key="q", not_before=later)
    broker.publish(envelope("other"), exchange="", routing_key="other")
    (held,) = broker.get(["q"], max_messages=1, timeout=0)
    assert broker.queue_size("q") == 3 and broker.queue_size("other") == 1
    assert broker.purge("q") == 3
    assert broker.queue_size("q") == 0 and broker.queue_size("other") == 1
    assert broker.purge("q") == 0
    broker.ack(held)  # a message held by a consumer is not purged, and can still be acked
    assert broker.get(["q"], max_messages=10, timeout=0) == []


# -- SQLite: leases shared by consumers on one file --------------------------------------


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'shared.db'}"


@pytest.fixture
def consumers(db_url: str) -> Iterator[tuple[SQLiteBroker, SQLiteBroker]]:
    first = SQLiteBroker(db_url, {"visibility_timeout": 0.3})
    second = SQLiteBroker(db_url, {"visibility_timeout": 0.3})
    yield first, second
    first.close()
    second.close()


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Every ``time.sleep`` of the test, recorded (and slept)."""
    import time

    recorded: list[float] = []
    real_sleep = time.sleep
    monkeypatch.setattr(time, "sleep", lambda s: (recorded.append(s), real_sleep(s)))
    return recorded


@pytest.fixture(params=["watch", "poll"])
def wake(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """How a waiter learns of a commit: the write-ahead log's watch (Linux), or polling (elsewhere,
    or with no inotify instance to be had)."""
    if request.param == "poll":
        force_polling(monkeypatch)
    return str(request.param)


def force_polling(monkeypatch: pytest.MonkeyPatch) -> None:
    import celeriac._sqlite

    def no_inotify(path: str) -> Any:
        raise OSError(24, "inotify instances used up")

    monkeypatch.setattr(celeriac._sqlite, "_LogWatch", no_inotify)


def test_expired_lease_is_redelivered_to_another_consumer(consumers: tuple[SQLiteBroker, SQLiteBroker]) -> None:
    a, b = consumers
    a.publish(envelope("job"), exchange="", routing_key="q")
    (held,) = a.get(["q"], max_messages=1, timeout=0)
    assert b.get(["q"], max_messages=1, timeout=0) == []  # leased to A
    (taken,) = b.get(["q"], max_messages=1, timeout=2)  # A never acks: its lease runs out
    assert taken.envelope.body == b"job" and taken.redelivered
    assert taken.envelope.headers["redelivered"] is True
    assert taken.tag == held.tag


def test_extend_leases_prevents_redelivery(consumers: tuple[SQLiteBroker, SQLiteBroker]) -> None:
    a, b = consumers
    a.publish(envelope("long job"), exchange="", routing_key="q")
    (held,) = a.get(["q"], max_messages=1, timeout=0)
    a.visibility_timeout = 30.0  # A renews for longer than the original 0.3s lease
    a.extend_leases([held])
    assert b.get(["q"], max_messages=1, timeout=1.0) == []  # well past the original lease
    a.ack(held)
    assert b.get(["q"], max_messages=1, timeout=0) == []
    assert a.queue_size("q") == 0


def test_extend_leases_repeatedly_keeps_the_message(consumers: tuple[SQLiteBroker, SQLiteBroker]) -> None:
    a, b = consumers
    a.visibility_timeout = 1.5
    a.publish(envelope("renewed"), exchange="", routing_key="q")
    (held,) = a.get(["q"], max_messages=1, timeout=0)
    for _ in range(5):  # 5 x 0.4s waits: longer than one lease, each well within a renewed one
        assert b.get(["q"], max_messages=1, timeout=0.4) == []
        a.extend_leases([held])
    a.ack(held)
    assert b.get(["q"], max_messages=1, timeout=0) == []


def test_ack_after_lost_lease_does_not_delete_the_new_holders_message(
    consumers: tuple[SQLiteBroker, SQLiteBroker],
) -> None:
    a, b = consumers
    a.publish(envelope("job"), exchange="", routing_key="q")
    (stale,) = a.get(["q"], max_messages=1, timeout=0)
    (current,) = b.get(["q"], max_messages=1, timeout=2)
    a.ack(stale)  # A's lease was lost: a no-op
    a.reject(stale, requeue=False)  # also a no-op: nothing dead-lettered
    a.reject(stale, requeue=True)  # also a no-op: B still holds it
    a.extend_leases([stale])  # cannot steal the lease back
    assert a.dead_letters() == []
    assert b.get(["q"], max_messages=1, timeout=0) == []
    b.ack(current)
    assert b.get(["q"], max_messages=1, timeout=0.5) == []  # gone for good
    assert b.queue_size("q") == 0


def test_messages_survive_reopening_the_file(db_url: str) -> None:
    writer = SQLiteBroker(db_url)
    writer.publish(envelope("durable", 4), exchange="", routing_key="q")
    writer.close()
    reader = SQLiteBroker(db_url)
    try:
        (delivery,) = reader.get(["q"], max_messages=1, timeout=0)
        assert delivery.envelope.body == b"durable"
        assert dict(delivery.envelope.headers) == {"id": "durable", "task": "tasks.t"}
        assert delivery.envelope.properties["priority"] == 4
        assert delivery.envelope.properties["correlation_id"] == "durable"
        assert (delivery.envelope.content_type, delivery.envelope.content_encoding) == ("application/json", "utf-8")
        reader.ack(delivery)
    finally:
        reader.close()


def test_a_message_sent_between_a_look_and_the_wait_ends_the_wait(
    wake: str, consumers: tuple[SQLiteBroker, SQLiteBroker], monkeypatch: pytest.MonkeyPatch, sleeps: list[float]
) -> None:
    """The lost wake-up: a message committed after the consumer found the queue empty, but before it
    began to wait, must end the wait at once (it used to sit there until the wait's timeout)."""
    waiting, sender = consumers
    claim = waiting._claim
    calls = []

    def claim_then_send(queues: Any, max_messages: int) -> Any:
        found = claim(queues, max_messages)
        if not calls:  # the first look finds nothing; the message lands before the wait begins
            sender.publish(envelope("late"), exchange="", routing_key="q")
        calls.append(found)
        return found

    monkeypatch.setattr(waiting, "_claim", claim_then_send)
    (delivery,) = waiting.get(["q"], max_messages=1, timeout=20)
    assert delivery.envelope.body == b"late"
    # One short sleep sees the change; the old wait slept in steps of up to 10 ms until the timeout.
    assert len(calls) == 2 and len(sleeps) <= 2, sleeps


def store_after_the_first_look(reader: Any, writer: Any, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Make ``reader``'s first look find nothing and ``writer`` store the result right after it, before
    the wait begins (the lost wake-up's window); returns the states each look saw."""
    get_meta = reader.get_meta
    looks: list[str] = []

    def look_then_store(task_id: str) -> Any:
        meta = get_meta(task_id)
        if not looks:
            writer.mark_as_done(task_id, 42)
        looks.append(meta.status)
        return meta

    monkeypatch.setattr(reader, "get_meta", look_then_store)
    return looks


def test_a_result_stored_between_a_look_and_the_wait_ends_the_wait(
    wake: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sleeps: list[float]
) -> None:
    from celeriac.backends.sqlite import SQLiteBackend

    url = f"sqlite:///{tmp_path / 'results.db'}"
    reader, writer = SQLiteBackend(url), SQLiteBackend(url)
    try:
        looks = store_after_the_first_look(reader, writer, monkeypatch)
        assert reader.wait_for("t1", timeout=20, interval=10).result == 42
        assert looks == ["PENDING", "SUCCESS"] and len(sleeps) <= 2, sleeps
    finally:
        reader.close()
        writer.close()


def test_a_result_stored_in_memory_between_a_look_and_the_wait_ends_the_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    """The in-process store has the same race as SQLite's: a result stored after the look, before the
    wait, must end the wait at once rather than at the next poll."""
    import threading

    from celeriac.backends.memory import MemoryBackend

    reader, writer = MemoryBackend("memory://"), MemoryBackend("memory://")
    looks = store_after_the_first_look(reader, writer, monkeypatch)
    seen: list[bool] = []
    condition_wait_for = threading.Condition.wait_for

    def recorded_wait_for(self: threading.Condition, predicate: Any, timeout: float | None = None) -> Any:
        result = condition_wait_for(self, predicate, timeout)
        seen.append(bool(result))
        return result

    monkeypatch.setattr(threading.Condition, "wait_for", recorded_wait_for)
    assert reader.wait_for("mem-race-1", timeout=20, interval=10).result == 42
    assert looks == ["PENDING", "SUCCESS"]
    # The one wait ended on the write it was told to look for, not at the end of its step.
    assert seen == [True]


def test_a_message_sent_just_after_an_empty_look_is_seen_within_half_a_millisecond(
    consumers: tuple[SQLiteBroker, SQLiteBroker], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An idle consumer polls the file; right after a look it polls again soon, then backs off. The
    message lands during the first pause: the consumer finds it at the end of that pause."""
    import time

    force_polling(monkeypatch)
    waiting, sender = consumers
    sleeps: list[float] = []
    real_sleep = time.sleep
    sent: list[bool] = []

    def sleep(seconds: float) -> None:
        if not sent:
            sender.publish(envelope("soon"), exchange="", routing_key="q")
            sent.append(True)
        sleeps.append(seconds)
        real_sleep(seconds)

    monkeypatch.setattr(time, "sleep", sleep)
    (delivery,) = waiting.get(["q"], max_messages=1, timeout=20)
    assert delivery.envelope.body == b"soon"
    assert len(sleeps) == 1 and sleeps[0] <= 0.0005, sleeps
    # Idle, it backs off to steps of 10 ms, not a busy loop.
    sleeps.clear()
    assert waiting.get(["q"], max_messages=1, timeout=0.2) == []
    assert max(sleeps[1:]) == pytest.approx(0.01) and len(sleeps) < 40, sleeps


def test_polling_interval_bounds_the_idle_steps(
    db_url: str, monkeypatch: pytest.MonkeyPatch, sleeps: list[float]
) -> None:
    from celeriac.exceptions import ImproperlyConfigured

    force_polling(monkeypatch)
    broker = SQLiteBroker(db_url, {"polling_interval": 0.002})
    try:
        assert broker.get(["q"], max_messages=1, timeout=0.05) == []
        assert max(sleeps) == pytest.approx(0.002), sleeps
    finally:
        broker.close()
    for bad in (0, -1):
        with pytest.raises(ImproperlyConfigured, match="polling_interval"):
            SQLiteBroker(db_url, {"polling_interval": bad})


PUBLISH_LATER = """
import sys, time
from celeriac.brokers.base import Envelope
from celeriac.brokers.sqlite import SQLiteBroker
time.sleep(float(sys.argv[2]))
sender = SQLiteBroker(sys.argv[1])
later = Envelope(b"later", {"id": "later", "task": "tasks.t"}, {}, "application/json", "utf-8")
sender.publish(later, exchange="", routing_key="q")
sender.close()
"""


def publish_later(db_url: str, seconds: float) -> Any:
    """Another process, which publishes one message to ``q`` after ``seconds``."""
    import subprocess
    import sys

    return subprocess.Popen([sys.executable, "-c", PUBLISH_LATER, db_url, str(seconds)])


def count_looks(db: Any, monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Every read of ``db``'s data_version from now on: one per look for a commit."""
    import time

    looks: list[float] = []
    read = db.data_version
    monkeypatch.setattr(db, "data_version", lambda: (looks.append(time.monotonic()), read())[1])
    return looks


linux_only = pytest.mark.skipif(__import__("sys").platform != "linux", reason="inotify is Linux's")


@linux_only
def test_an_idle_consumer_is_woken_by_a_commit_from_another_process(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With 60 s between safety looks, the consumer still gets the message as it is committed: the
    commit's write to the -wal file wakes it. Polling would have looked some twenty times by then."""
    import time

    waiting = SQLiteBroker(db_url, {"polling_interval": 60})
    try:
        assert waiting.get(["q"], max_messages=1, timeout=0) == []
        looks = count_looks(waiting.db, monkeypatch)
        sender = publish_later(db_url, 0.5)
        start = time.monotonic()
        (delivery,) = waiting.get(["q"], max_messages=1, timeout=100)
        woken_after = time.monotonic() - start
        assert sender.wait(timeout=60) == 0
        assert delivery.envelope.body == b"later"
        assert len(looks) <= 8, looks
        assert woken_after < 30, woken_after  # not by the safety look, 60 s in
    finally:
        waiting.close()


@linux_only
def test_each_process_has_its_own_watch_after_fork(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A forked child that kept its parent's inotify queue would read the parent's wake-ups (and the
    parent the child's). The child opens its own; both wait for one commit, both are woken by it."""
    import os
    import time

    waiting = SQLiteBroker(db_url, {"polling_interval": 60})

    def woken() -> bool:
        looks = count_looks(waiting.db, monkeypatch)
        version, start = waiting.db.data_version(), time.monotonic()
        waiting.db.wait_for_change(100, since=version, longest=60)
        # Changed, found by a handful of looks, and not by the safety look 60 s in.
        return waiting.db.data_version() != version and len(looks) <= 8 and time.monotonic() - start < 30

    try:
        assert waiting.get(["q"], max_messages=1, timeout=0.01) == []
        parent_watch = waiting.db._watch()
        assert parent_watch is not None
        child = os.fork()
        if child == 0:  # pragma: no cover (the child's exit code is the assertion)
            own = waiting.db._watch()
            os._exit(0 if own is not None and own is not parent_watch and woken() else 1)
        sender = publish_later(db_url, 0.5)
        assert woken()
        assert waiting.db._watch() is parent_watch
        assert sender.wait(timeout=60) == 0
        _, status = os.waitpid(child, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        waiting.close()


def test_without_inotify_a_consumer_polls_for_another_process_commit(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    force_polling(monkeypatch)
    waiting = SQLiteBroker(db_url, {"polling_interval": 0.05})
    try:
        looks = count_looks(waiting.db, monkeypatch)
        sender = publish_later(db_url, 0.3)
        (delivery,) = waiting.get(["q"], max_messages=1, timeout=100)
        assert sender.wait(timeout=60) == 0
        assert delivery.envelope.body == b"later"
        assert len(looks) > 8, looks  # it looked, in steps growing to 50 ms
    finally:
        waiting.close()


def inotify_instances() -> int:
    import os

    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:inotify"
        except FileNotFoundError:  # the listing's own descriptor, closed by now
            pass
    return count


@linux_only
def test_a_thread_that_ends_gives_back_its_inotify_instance(db_url: str) -> None:
    """A threaded server's request threads come and go; if each kept its watch, the 128 inotify
    instances a user has by default would soon be used up, and every wait would poll."""
    import gc
    import threading

    waiting = SQLiteBroker(db_url)
    try:
        before = inotify_instances()
        for _ in range(20):
            thread = threading.Thread(target=waiting.get, args=(["q"],), kwargs={"max_messages": 1, "timeout": 0.01})
            thread.start()
            thread.join()
        gc.collect()
        assert inotify_instances() <= before + 1
        waiting.get(["q"], max_messages=1, timeout=0.01)  # this thread's own
        assert inotify_instances() == before + 1
        waiting.close()
        gc.collect()
        assert inotify_instances() == before
    finally:
        waiting.close()
