"""The worker's start-up banner, laid out like Celery's."""

from __future__ import annotations

import platform
from datetime import datetime
from typing import TYPE_CHECKING

from .._version import __version__

if TYPE_CHECKING:
    from ..worker.main import WorkController

__all__ = ["worker_banner"]

ARTLINES = [
    " --------------",
    "--- ***** -----",
    "-- ******* ----",
    "- *** --- * ---",
    "- ** ----------",
    "- ** ----------",
    "- ** ----------",
    "- ** ----------",
    "- ** ----------",
    "- *** --- * ---",
    "-- ******* ----",
    "--- ***** -----",
    " --------------",
]


def worker_banner(worker: WorkController) -> str:
    app = worker.app
    broker_info = worker.broker.info() if worker.broker is not None else {}
    backend = app.backend
    events = "ON" if worker.send_events else "OFF (enable -E to monitor tasks in this worker)"
    lines = [
        f"{worker.hostname} v{__version__} (celeriac)",
        "",
        f"{platform.platform()} {datetime.now().strftime('%Y-%m-%d %H:%M:%S')}",
        "",
        "[config]",
        f".> app:         {app.main or '__main__'}:{id(app):#x}",
        f".> transport:   {broker_info.get('url', '?')}",
        f".> results:     {_backend_url(backend)}",
        f".> concurrency: {_concurrency(worker)} ({worker.pool_kind})",
        f".> task events: {events}",
        "",
        "[queues]",
    ]
    banner = []
    for index, art in enumerate(ARTLINES):
        text = lines[index] if index < len(lines) else ""
        banner.append(f"{art} {text}".rstrip())
    for name in worker.queues:
        banner.append(f"                .> {name:<16} exchange={name}(direct) key={name}")
    tasks = sorted(name for name in app.tasks if not name.startswith("celery."))
    banner += ["", "[tasks]"] + [f"  . {name}" for name in tasks] + [""]
    return "\n".join(banner)


def _concurrency(worker: WorkController) -> str:
    if worker.autoscale and worker.pool_kind != "solo":
        return f"{min(worker.autoscale)}-{max(worker.autoscale)} (autoscale)"
    return str(worker.concurrency)


def _backend_url(backend: object) -> str:
    from ..config import mask_url

    url = getattr(backend, "url", "") or ""
    if getattr(backend, "path", None):
        return f"sqlite:///{backend.path}"  # type: ignore[attr-defined]
    return mask_url(url) if url else type(backend).__name__
