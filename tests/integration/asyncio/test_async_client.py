"""The awaitable client: ``await task.adelay()``, ``await result``, from plain asyncio and Starlette."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import httpx
import pytest
import redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from celeriac.exceptions import TimeoutError
from tests.conftest import Project
from tests.integration.asyncio.conftest import on_broker

# aio-pika's connection finalizer creates a close() coroutine that is never awaited when a
# connection of an earlier (amqp) test is collected after its loop ended: noise, not a leak of ours.
pytestmark = [
    pytest.mark.filterwarnings("ignore:coroutine 'Connection.close' was never awaited:RuntimeWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]


def test_await_results_on_every_broker(any_broker: Project) -> None:
    worker = any_broker.worker("tasks", "-P", "asyncio", "-c", "50")
    from tasks import add, double, fails  # type: ignore[import-not-found]

    async def main() -> None:
        first = await double.adelay(4)
        assert await first == 8
        second = await add.aapply_async((2, 3), countdown=0.2)
        assert await second.aget(timeout=30) == 5
        assert await second.aready()
        assert await second.astate() == "SUCCESS"
        many = [await double.adelay(i) for i in range(100)]
        assert await asyncio.gather(*many) == [i * 2 for i in range(100)]
        failed = await fails.adelay()
        with pytest.raises(KeyError, match="async boom"):
            await failed
        assert isinstance(await failed.aget(propagate=False), KeyError)

    asyncio.run(main())
    assert worker.stop() == 0


def test_waiting_takes_no_thread_and_one_connection_on_redis(request: pytest.FixtureRequest, project: Project) -> None:
    on_broker("redis", request, project)
    worker = project.worker("tasks", "-P", "asyncio", "-c", "300")
    from tasks import nap  # type: ignore[import-not-found]

    admin = redis.Redis.from_url(project.broker_url)

    def pubsub_clients() -> int:
        return len(admin.client_list(_type="pubsub"))

    async def main() -> None:
        before = pubsub_clients()
        results = [await nap.adelay(1.0) for _ in range(200)]
        threads = threading.enumerate()  # with the executor's threads that published them
        waiting = asyncio.gather(*results)
        await asyncio.sleep(0.5)  # all 200 are being awaited now
        assert threading.enumerate() == threads  # not a thread more for waiting
        assert pubsub_clients() - before == 1  # one pub/sub connection for every waiting result
        assert len(await waiting) == 200

    asyncio.run(main())
    admin.close()
    assert worker.stop() == 0


def test_timeout_and_the_blocking_api_in_a_loop(request: pytest.FixtureRequest, project: Project) -> None:
    on_broker("redis", request, project)
    from tasks import double  # type: ignore[import-not-found]

    async def main() -> None:
        never = await double.adelay(1)  # no worker runs it
        with pytest.raises(TimeoutError):
            await never.aget(timeout=0.3)
        with pytest.warns(RuntimeWarning, match="blocks the running event loop; use `await result`"):
            with pytest.raises(TimeoutError):
                never.get(timeout=0.1)

    asyncio.run(main())


def test_a_starlette_app_awaits_results(request: pytest.FixtureRequest, project: Project) -> None:
    on_broker("redis", request, project)
    worker = project.worker("tasks", "-P", "asyncio", "-c", "20")
    from tasks import add, double  # type: ignore[import-not-found]

    async def compute(request: Request) -> JSONResponse:
        x = int(request.path_params["x"])
        doubled = await double.adelay(x)
        total = await add.adelay(await doubled.aget(timeout=30), 1)
        return JSONResponse({"value": await total})

    web = Starlette(routes=[Route("/compute/{x}", compute)])

    async def main() -> list[Any]:
        transport = httpx.ASGITransport(app=web)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            responses = await asyncio.gather(*(client.get(f"/compute/{i}") for i in range(20)))
        return [r.json()["value"] for r in responses]

    assert asyncio.run(main()) == [i * 2 + 1 for i in range(20)]
    assert worker.stop() == 0


def test_eager_async_tasks(request: pytest.FixtureRequest, project: Project) -> None:
    on_broker("sqlite", request, project)
    from tasks import app, double, fails, whoami  # type: ignore[import-not-found]

    app.conf.task_always_eager = True
    assert double.delay(2).get() == 4  # sync caller: runs on the process loop, the caller waits
    assert double.apply((3,)).get() == 6

    async def main() -> None:
        assert await double(5) == 10  # calling the task runs the coroutine function
        assert await (await double.adelay(6)) == 12  # eager: awaited on this loop
        who = await whoami.adelay()
        assert (await who)["id"] == who.id
        with pytest.raises(KeyError):
            await fails.adelay()

    app.conf.task_eager_propagates = True
    asyncio.run(main())
