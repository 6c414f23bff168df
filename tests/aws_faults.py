"""A stand-in for a flaky network between the tool and AWS: a TCP relay on 127.0.0.1 in front
of the emulator's endpoint (point AWS_ENDPOINT_URL at `FaultProxy.url`). Outside a fault
window it relays bytes untouched, so every call is the emulator's real answer. Inside one:

- "drop": every connection, open or new, is closed without an answer (a network blip: the
  client sees a reset or a closed connection);
- "503": every request is answered `503 Service Unavailable` (an overloaded endpoint);
- "delay": each request, on a new connection or an open one, is held for `delay` seconds
  before it is relayed (a slow endpoint: past the client's read timeout, its calls time out);
- "hang": every connection, open or new, is cut, and new ones are accepted and then never
  answered until the window ends (an endpoint that black-holes requests);
- "cut": each answer's head is relayed whole and its body only in half, then the
  connection is reset (a blip in the middle of an answer).

Only the tool's traffic goes through it: the local ECS (the emulator's scheduler) keeps
rolling out behind it, as ECS does while a pipeline loses its network. The proxy counts
what it refused, so a test can prove the fault really hit the tool.
"""

from __future__ import annotations

import contextlib
import re
import socket
import struct
import threading
import time
from typing import Literal, Self
from urllib.parse import urlsplit

Fault = Literal["drop", "503", "delay", "hang", "cut"]
UNAVAILABLE = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/x-amz-json-1.1\r\n"
    b"Content-Length: 0\r\nConnection: close\r\n\r\n"
)


# The bytes that start a request. A client may send one request in pieces (botocore sends
# its head and its body apart), so "delay" holds the piece that starts one, not each piece.
REQUEST_LINE = re.compile(rb"[A-Z]+ \S+ HTTP/1\.[01]\r\n")


class FaultProxy:
    """A relay to `upstream` (a URL or host:port on loopback) with timed fault windows."""

    def __init__(self, upstream: str) -> None:
        parsed = urlsplit(upstream if "//" in upstream else f"//{upstream}")
        assert parsed.hostname in ("127.0.0.1", "localhost"), "faults are injected on loopback only"
        self.upstream = (parsed.hostname, int(parsed.port or 80))
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._lock = threading.Lock()
        self._fault: Fault | None = None
        self._until = 0.0
        self._delay = 0.0
        self._open: set[socket.socket] = set()
        self.refused = 0  # connections or requests the faults turned away
        self.slowed = 0  # requests the "delay" fault held

    def __enter__(self) -> Self:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._listener.close()
        with self._lock:
            for sock in list(self._open):
                _close(sock)

    def fail(self, fault: Fault, seconds: float, delay: float = 0.0) -> None:
        """Start a window of `seconds` in which `fault` hits every call from now on."""
        with self._lock:
            self._fault, self._until, self._delay = fault, time.monotonic() + seconds, delay
            victims = list(self._open) if fault in ("drop", "hang") else []
        for sock in victims:  # the blip takes the open (keep-alive) connections with it
            _reset(sock)

    def faulty(self) -> Fault | None:
        with self._lock:
            if self._fault is not None and time.monotonic() >= self._until:
                self._fault = None
            return self._fault

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:  # closed
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        fault = self.faulty()
        if fault == "drop":
            self._count()
            _reset(client)
            return
        if fault == "hang":
            self._count()
            while self.faulty() == "hang":
                time.sleep(0.05)
            _reset(client)
            return
        try:
            server = socket.create_connection(self.upstream)
        except OSError:
            _close(client)
            return
        with self._lock:
            self._open.update((client, server))
        threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()
        self._pump(client, server, True)

    def _count(self) -> None:
        with self._lock:
            self.refused += 1

    def _pump(self, source: socket.socket, sink: socket.socket, from_client: bool) -> None:
        held = b""  # "cut": an answer read until its head and some of its body are in
        try:
            while chunk := source.recv(65536):
                fault = self.faulty()
                if not from_client and fault == "cut":
                    held += chunk
                    head, found, body = held.partition(b"\r\n\r\n")
                    if not found or len(body) < 2:
                        continue
                    self._count()
                    sink.sendall(head + found + body[: len(body) // 2])
                    _reset(sink)
                    break
                if from_client and fault == "503":
                    self._count()
                    source.sendall(UNAVAILABLE)
                    break
                if fault == "drop":
                    self._count()
                    break
                if from_client and fault == "delay" and REQUEST_LINE.match(chunk):
                    with self._lock:
                        self.slowed += 1
                    time.sleep(self._delay)
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            with self._lock:
                self._open.difference_update((source, sink))
            _close(source)
            _close(sink)


def _reset(sock: socket.socket) -> None:
    """Close with a TCP reset (SO_LINGER 0), as a dropped network path shows to a client."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    _close(sock)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
