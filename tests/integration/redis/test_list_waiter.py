"""The broker's wait for a message (a BLMOVE per list that outlives the call): a reply, a stall."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest
import redis

from celeriac.brokers._redis_peek import ListWaiter


def test_a_wait_answered_between_two_calls_is_read_not_taken_for_a_stall(redis_url: str, rclient: redis.Redis) -> None:
    # A caller that waits now and then (a dashboard waiting for remote-control replies): its
    # first wait ends before Redis answers the BLMOVE it sent; the answer then sits on the
    # socket until the next call, which must read it rather than call the connection stalled.
    client = redis.Redis.from_url(redis_url)
    waiter = ListWaiter(client.connection_pool.make_connection, block=0.2, socket_timeout=0.2)
    try:
        assert waiter.wait(["replies"], timeout=0.01) is False
        time.sleep(0.8)  # Redis answered (empty) long ago; nobody has read it
        assert waiter.wait(["replies"], timeout=0.01) is False
        rclient.lpush("replies", b"x")
        assert waiter.wait(["replies"], timeout=5) is True
        assert rclient.llen("replies") == 1  # seen, not taken
    finally:
        waiter.close()
        client.close()


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP port that takes connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    try:
        yield server.getsockname()[1]
    finally:
        server.close()


def test_a_wait_nobody_answers_is_a_stall(silent_server: int) -> None:
    def connect() -> redis.Connection:
        no_setinfo = redis.DriverInfo(name=None, lib_version=None)  # with RESP2: nothing to answer on connecting
        return redis.Connection(
            host="127.0.0.1", port=silent_server, socket_timeout=5, driver_info=no_setinfo, protocol=2
        )

    waiter = ListWaiter(connect, block=0.1, socket_timeout=0.1)
    waiter.supported = True  # the silent server would not answer COMMAND INFO either
    with pytest.raises(redis.exceptions.TimeoutError, match="stalled"):
        waiter.wait(["q"], timeout=10)
