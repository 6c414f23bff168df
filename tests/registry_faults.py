"""A fault injector in front of the real registry: a byte-for-byte TCP relay on 127.0.0.1
that fails the first `failures` manifest uploads (`PUT /v2/<name>/manifests/<ref>`, the
request that makes a push visible), either with 503 as an overloaded registry answers,
or by dropping the connection without an answer, as a load balancer in front of one
does. Everything else — the login, the layer uploads, the registry's answers and its
notifications to ECR — passes through untouched, so the push is the engine's real one.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Literal, Self

Fault = Literal["503", "drop"]
UNAVAILABLE = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class FaultyRegistry:
    def __init__(self, upstream: str, failures: int, fault: Fault = "503") -> None:
        host, port = upstream.rsplit(":", 1)
        self.upstream = (host, int(port))
        self.failures, self.fault = failures, fault
        self.failed = 0  # manifest uploads refused so far
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self._listener.getsockname()[1]}"

    def __enter__(self) -> Self:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:  # closed
                return
            server = socket.create_connection(self.upstream)
            threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()

    def _refuse(self, chunk: bytes) -> bool:
        """Whether this client data starts a manifest upload that is to fail."""
        first = chunk.split(b"\r\n", 1)[0]
        if not (first.startswith(b"PUT /v2/") and b"/manifests/" in first):
            return False
        with self._lock:
            if self.failed >= self.failures:
                return False
            self.failed += 1
            return True

    def _pump(self, source: socket.socket, sink: socket.socket, from_client: bool) -> None:
        try:
            while chunk := source.recv(65536):
                if from_client and self._refuse(chunk):
                    if self.fault == "503":
                        source.sendall(UNAVAILABLE)
                    break
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)
                end.close()
