"""execute_raw: one connection of its own per client and process, the pool for other threads."""

from __future__ import annotations

import threading

import pytest
import redis

from celeriac._redis import _slots, client_from_url, close_dedicated, execute_raw


def test_replies_errors_and_argument_types(redis_url: str) -> None:
    client = client_from_url(redis_url)
    assert execute_raw(client, ("SET", "k", "v"), ("GET", "k"), ("RPUSH", "l", 1, 2.5, b"x", "\u00e9")) == [
        b"OK",
        b"v",
        4,
    ]
    assert client.lrange("l", 0, -1) == [b"1", b"2.5", b"x", "\u00e9".encode()]
    with pytest.raises(redis.exceptions.ResponseError):
        execute_raw(client, ("INCR", "k"), ("SET", "after", "1"))
    assert client.get("after") == b"1"  # the replies after the error were read: the connection is usable
    assert execute_raw(client, ("GET", "k")) == [b"v"]
    with pytest.raises(redis.exceptions.DataError):
        execute_raw(client, ("SET", "k", True))  # refused as redis-py refuses it, nothing sent
    assert execute_raw(client, ("GET", "k")) == [b"v"]
    close_dedicated(client)


def test_a_connection_closed_by_the_server_is_reopened(redis_url: str, rclient: redis.Redis) -> None:
    client = client_from_url(redis_url)
    (own_id,) = execute_raw(client, ("SET", "k", "1"), ("CLIENT", "ID"))[1:]
    assert _slots[client].conn is not None
    rclient.client_kill_filter(_id=own_id)
    assert execute_raw(client, ("GET", "k")) == [b"1"]  # a Redis restart looks the same to the client
    close_dedicated(client)


def test_threads_at_once_share_the_dedicated_connection_and_the_pool(redis_url: str) -> None:
    client = client_from_url(redis_url)
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(200):
                assert execute_raw(client, ("SET", f"k{n}", i), ("GET", f"k{n}")) == [b"OK", str(i).encode()]
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    close_dedicated(client)
