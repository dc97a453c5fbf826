"""A TCP proxy the tests control: pass bytes through, drop every connection, or stall them.

    proxy = TCPProxy(("127.0.0.1", 6379))   # listens on 127.0.0.1:proxy.port
    proxy.drop()      # reset every connection now; new ones are reset as soon as they connect
    proxy.stall()     # connections stay open but no byte moves either way; new ones connect, then silence
    proxy.restore()   # pass bytes again (stalled connections carry on where they stopped)
    proxy.restore(reset=True)  # ...after resetting the connections that were open during the cut
    proxy.close()

A stall is the nasty half of a network cut: nothing tells either side that the other is gone,
so only timeouts and heartbeats can notice it. A drop is the kind half: both sides see a reset.
"""

from __future__ import annotations

import select
import socket
import struct
import threading
import time

PASS, DROP, STALL = "pass", "drop", "stall"


def _reset(sock: socket.socket) -> None:
    """Close with a TCP reset (SO_LINGER 0), as a middlebox that forgets a connection does."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


class _Link:
    def __init__(self, proxy: TCPProxy, client: socket.socket) -> None:
        self.proxy = proxy
        self.client = client
        self.upstream: socket.socket | None = None
        self.closed = False
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            while not self.closed:
                if self.proxy.mode == STALL:
                    time.sleep(0.02)  # nothing is read: bytes wait in the kernel's buffers
                    continue
                if self.upstream is None:
                    self.upstream = socket.create_connection(self.proxy.upstream, timeout=5)
                    self.upstream.settimeout(None)
                readable, _, _ = select.select([self.client, self.upstream], [], [], 0.05)
                for sock in readable:
                    if self.proxy.mode != PASS:
                        break
                    data = sock.recv(65536)
                    if not data:
                        self.close()
                        return
                    (self.upstream if sock is self.client else self.client).sendall(data)
        except (OSError, ValueError):
            self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for sock in (self.client, self.upstream):
            if sock is not None:
                _reset(sock)


class TCPProxy:
    """Relays 127.0.0.1:<port> to ``upstream``; one thread per connection."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.mode = PASS
        self.accepted = 0  # connections accepted so far, whatever the mode
        self._links: list[_Link] = []
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._server = socket.socket()
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(128)
        self._server.settimeout(0.05)
        self.port = int(self._server.getsockname()[1])
        self._stopping = False
        self._acceptor = threading.Thread(target=self._accept, daemon=True)
        self._acceptor.start()

    def url(self, scheme: str, path: str = "", userinfo: str = "") -> str:
        return f"{scheme}://{userinfo}127.0.0.1:{self.port}{path}"

    def _accept(self) -> None:
        while not self._stopping:
            try:
                client, _ = self._server.accept()
            except OSError:
                continue
            client.settimeout(None)
            with self._lock:
                self.accepted += 1
                if self.mode == DROP:
                    _reset(client)
                    continue
                link = _Link(self, client)
                self._links = [existing for existing in self._links if not existing.closed]
                self._links.append(link)
                self._threads.append(link.thread)
            link.thread.start()

    @property
    def live(self) -> int:
        """Connections open now."""
        with self._lock:
            return sum(not link.closed for link in self._links)

    def drop(self) -> None:
        """Reset every connection, and every new one until :meth:`restore`."""
        with self._lock:
            self.mode = DROP
            links, self._links = self._links, []
        for link in links:
            link.close()

    def stall(self) -> None:
        """Freeze every connection, open and new, until :meth:`restore` or :meth:`drop`."""
        self.mode = STALL

    def restore(self, *, reset: bool = False) -> None:
        """Pass bytes again. With ``reset``, the connections open during the cut are reset first, as
        by a middlebox that forgot them: nothing a client wrote into a stalled connection (and gave up
        on) reaches the server late."""
        if reset:
            with self._lock:
                links, self._links = self._links, []
            for link in links:
                link.close()
        self.mode = PASS

    def close(self) -> None:
        self._stopping = True
        self._acceptor.join(5)
        self._server.close()
        self.drop()
        for thread in self._threads:
            thread.join(5)
