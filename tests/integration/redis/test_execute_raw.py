"""execute_raw: one connection of its own per client and process, the pool for other threads."""

from __future__ import annotations

import threading

import pytest
import redis

from celeriac._redis import _slots, client_from_url, close_dedicated, execute_raw, pack_commands


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


def test_commands_are_packed_by_hiredis_as_redis_py_packs_them(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    conn = client_from_url(redis_url).connection_pool.make_connection()
    usual = (
        ("LPUSH", "q", b"x" * 10_000),
        ("SET", "k", 1, "EX", 2.5),
        ("GET", b"k"),
        ("SET", "k", "\u00e9"),
    )
    two_words = (("GET", "k"), ("CONFIG GET", "maxmemory"))
    expected = {cmds: b"".join(conn.pack_commands(cmds)) for cmds in (usual, two_words)}
    packed_by_redis_py: list[tuple[object, ...]] = []
    pack = conn._command_packer.pack

    def counting(*args: object) -> list[bytes]:
        packed_by_redis_py.append(args)
        return pack(*args)

    monkeypatch.setattr(conn._command_packer, "pack", counting)
    assert b"".join(pack_commands(conn, usual)) == expected[usual]
    assert packed_by_redis_py == []  # hiredis alone, no Python of redis-py's per command
    assert b"".join(pack_commands(conn, two_words)) == expected[two_words]  # split in two, as redis-py does
    assert packed_by_redis_py == list(two_words)
    with pytest.raises(redis.exceptions.DataError):
        pack_commands(conn, (("SET", "k", None),))  # redis-py's own error for what hiredis refuses
    with pytest.raises(UnicodeEncodeError):
        pack_commands(conn, (("SET", "k", "\ud800"),))  # as redis-py's packer raises it
