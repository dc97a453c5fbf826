"""Cheap liveness for orchestrators: a file touched while the worker is healthy, and/or HTTP endpoints.

``celeriac inspect ping`` needs the broker and a round trip through every worker;
a Kubernetes probe only needs to know whether *this* worker is alive. Healthy means:
the consumer loop went round within ``stall_after`` seconds (it is not stuck) and the
last broker call succeeded.

* ``--liveness-file PATH`` (``worker_liveness_file``): touched every few seconds while
  healthy; probe with e.g. ``test $(( $(date +%s) - $(stat -c %Y PATH) )) -lt 30``.
* ``--healthcheck-port N`` (``worker_healthcheck_port``; address ``--healthcheck-address``,
  default 127.0.0.1): ``GET /healthz`` answers 200 when healthy, 503 otherwise, with a
  small JSON body; ``GET /readyz`` answers 200 once the worker consumes.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["HealthReporter"]

logger = logging.getLogger("celeriac.worker")


class HealthReporter:
    def __init__(
        self,
        status: Callable[[], dict[str, Any]],
        *,
        liveness_file: str | None = None,
        port: int | None = None,
        address: str = "127.0.0.1",
        interval: float = 5.0,
    ) -> None:
        self.status = status
        self.liveness_file = liveness_file
        self.port = port
        self.address = address
        self.interval = interval
        self._stop = threading.Event()
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        if self.liveness_file:
            threading.Thread(target=self._touch_loop, name="LivenessFile", daemon=True).start()
        if self.port is not None:
            self._server = ThreadingHTTPServer((self.address, self.port), self._handler())
            self._server.daemon_threads = True
            threading.Thread(target=self._server.serve_forever, name="HealthHTTP", daemon=True).start()
            logger.info("Health checks on http://%s:%d/healthz", self.address, self._server.server_address[1])

    def stop(self) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self.liveness_file:
            try:
                os.unlink(self.liveness_file)
            except FileNotFoundError:
                pass

    def _touch_loop(self) -> None:
        assert self.liveness_file is not None
        while not self._stop.is_set():
            if self.status().get("healthy"):
                try:
                    with open(self.liveness_file, "a"):
                        os.utime(self.liveness_file)
                except OSError as exc:
                    logger.warning("could not touch the liveness file %s: %s", self.liveness_file, exc)
            self._stop.wait(self.interval)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        status = self.status

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                current = status()
                if self.path.split("?")[0] == "/healthz":
                    ok = bool(current.get("healthy"))
                elif self.path.split("?")[0] == "/readyz":
                    ok = bool(current.get("ready"))
                else:
                    self.send_error(404)
                    return
                body = json.dumps(current).encode()
                self.send_response(200 if ok else 503)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # probes every few seconds would flood the worker log

        return Handler


def worker_status(consumer: Any, hostname: str, stall_after: float = 60.0) -> dict[str, Any]:
    """What the probes report, from the consumer's own bookkeeping (no broker round trip)."""
    if consumer is None:
        return {"hostname": hostname, "healthy": False, "ready": False, "reason": "starting"}
    since = time.monotonic() - consumer.last_loop
    connected = consumer.connected
    healthy = connected and since < stall_after
    reason = "ok" if healthy else ("broker unreachable" if not connected else f"consumer loop stalled for {since:.0f}s")
    return {"hostname": hostname, "healthy": healthy, "ready": connected, "reason": reason,
            "seconds_since_loop": round(since, 3), "active": len(consumer.state.active)}  # fmt: skip
