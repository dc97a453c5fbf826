"""No result store: tasks run, their results are not kept.

URL: ``disabled://``. What you get with a real broker and no ``result_backend``,
as in Celery. Storing is a no-op; reading raises an error that says how to
configure a backend.
"""

from __future__ import annotations

from typing import ClassVar

from .base import ResultBackend, ResultMeta

__all__ = ["DisabledBackend"]

E_NO_BACKEND = (
    "No result backend is configured, so task states and results are not kept. "
    "Set one with Celery('tasks', backend='redis://localhost') or app.conf.result_backend = '...' "
    "(with no broker configured, celeriac keeps results in its embedded SQLite store)."
)


class DisabledBackend(ResultBackend):
    persistent: ClassVar[bool] = False

    def store(self, meta: ResultMeta) -> None:
        pass

    def load(self, task_id: str) -> ResultMeta | None:
        raise NotImplementedError(E_NO_BACKEND)

    def forget(self, task_id: str) -> None:
        raise NotImplementedError(E_NO_BACKEND)

    def wait_for(
        self, task_id: str, *, timeout: float | None = None, interval: float = 0.5, just_sent: bool = False
    ) -> ResultMeta:
        raise NotImplementedError(E_NO_BACKEND)

    async def await_for(
        self, task_id: str, *, timeout: float | None = None, interval: float = 0.5, just_sent: bool = False
    ) -> ResultMeta:
        raise NotImplementedError(E_NO_BACKEND)

    def ensure_chords_allowed(self) -> None:
        raise NotImplementedError(
            "Starting chords requires a result backend to be configured, but none exists: "
            "set result_backend (e.g. redis://, db+postgresql://, sqlite://)."
        )

    def get_meta(self, task_id: str) -> ResultMeta:
        raise NotImplementedError(E_NO_BACKEND)
