"""Beat with a real worker, on the embedded SQLite broker and on Redis: sends, restarts, -B, failover."""

from __future__ import annotations

import signal

from tests.integration.beat.conftest import T0, BeatProject, kill, wait_until


def task_ids(project: BeatProject) -> list[str]:
    return [line.split()[1] for line in project.runs()]


def test_beat_sends_tasks_added_by_on_after_configure(beat_project: BeatProject) -> None:
    beat_project.worker()
    beat = beat_project.beat(REAL_ENTRY="1")
    beat.wait_for("Acquired the leader lease")
    beat_project.wait_runs("real", 3)
    assert "Scheduler: Sending due task real (tasks.record)" in beat.output
    assert beat.stop() == 0
    assert "beat: Shutting down..." in beat.output
    ids = task_ids(beat_project)
    assert len(ids) == len(set(ids))


def test_a_restart_neither_repeats_nor_skips_a_run(beat_project: BeatProject) -> None:
    beat_project.worker()
    fast = ("--max-interval", "0.25")
    first = beat_project.beat(*fast, FAKE_ENTRY="1")
    first.wait_ticks(2)
    beat_project.set_clock(T0 + 60)
    beat_project.wait_runs("fake", 1)
    assert first.stop() == 0
    # Restarted at the same (fake) time: the run already sent is not sent again.
    second = beat_project.beat(*fast, FAKE_ENTRY="1")
    second.wait_ticks(5)
    assert second.sends == 0 and len(beat_project.runs("fake")) == 1
    assert second.stop() == 0
    # Down for five intervals: the missed run is sent once when beat is back, not five times.
    beat_project.set_clock(T0 + 60 + 300)
    third = beat_project.beat(*fast, FAKE_ENTRY="1")
    beat_project.wait_runs("fake", 2)
    third.wait_ticks(5)
    assert third.sends == 1
    # And the schedule carries on from there.
    beat_project.set_clock(T0 + 60 + 300 + 60)
    beat_project.wait_runs("fake", 3)
    third.wait_ticks(3)
    assert third.sends == 2 and len(beat_project.runs("fake")) == 3
    assert third.stop() == 0


def test_worker_with_embedded_beat(beat_project: BeatProject) -> None:
    worker = beat_project.worker("-B", REAL_ENTRY="1")
    beat_project.wait_runs("real", 2)
    assert "Scheduler: Sending due task real (tasks.record)" in worker.output
    assert worker.stop() == 0


def test_failover_when_the_leader_is_killed(beat_project: BeatProject) -> None:
    beat_project.worker()
    lease = ("--lease-timeout", "2", "--max-interval", "0.25")
    first = beat_project.beat(*lease, FAKE_ENTRY="1")
    first.wait_for("Acquired the leader lease")
    second = beat_project.beat(*lease, FAKE_ENTRY="1")
    second.wait_for("standing by")
    beat_project.set_clock(T0 + 60)
    beat_project.wait_runs("fake", 1)
    assert first.sends == 1 and second.sends == 0

    kill(first, signal.SIGKILL)  # no chance to release the lease
    second.wait_for("Acquired the leader lease", timeout=15)
    beat_project.set_clock(T0 + 120)
    beat_project.wait_runs("fake", 2)
    second.wait_ticks(5)
    assert first.sends == 1 and second.sends == 1
    assert len(beat_project.runs("fake")) == 2
    ids = task_ids(beat_project)
    assert len(set(ids)) == 2


def test_a_graceful_stop_hands_over_without_waiting_for_the_lease(beat_project: BeatProject) -> None:
    # A standby checks every second here; a handover that waited for the lease to lapse would time out.
    lease = ("--lease-timeout", "30", "--max-interval", "1")
    first = beat_project.beat(*lease, FAKE_ENTRY="1")
    first.wait_for("Acquired the leader lease")
    second = beat_project.beat(*lease, FAKE_ENTRY="1")
    second.wait_for("standing by")
    assert first.stop() == 0
    second.wait_for("Acquired the leader lease", timeout=20)


def test_a_paused_leader_does_not_send_again_when_it_wakes(redis_beat_project: BeatProject) -> None:
    project = redis_beat_project
    project.worker()
    lease = ("--lease-timeout", "2", "--max-interval", "0.25")
    first = project.beat(*lease, FAKE_ENTRY="1")
    first.wait_for("Acquired the leader lease")
    second = project.beat(*lease, FAKE_ENTRY="1")
    second.wait_for("standing by")
    project.set_clock(T0 + 60)
    project.wait_runs("fake", 1)

    kill(first, signal.SIGSTOP)
    try:
        second.wait_for("Acquired the leader lease", timeout=15)
        project.set_clock(T0 + 120)
        project.wait_runs("fake", 2)
    finally:
        kill(first, signal.SIGCONT)
    first.wait_for("Lost the leader lease", timeout=15)
    first.wait_ticks(3)
    second.wait_ticks(3)
    assert first.sends == 1 and second.sends == 1
    assert len(project.runs("fake")) == 2
    wait_until(lambda: len(project.runs()) == 2, 1, lambda: "no more runs")
