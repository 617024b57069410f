"""A TCP proxy in front of the API server that can make one connection hang.

TLS passes through untouched (the API server's certificate names 127.0.0.1, whatever the
port). After `hang_next()`, the next connection on which the client sends anything never
gets an answer: its bytes are read and dropped and the socket stays open, as through a
dead NAT entry or a stuck load balancer. Every other connection works.
"""

from __future__ import annotations

import selectors
import socket
import threading


class HangingProxy:
    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._armed = False
        self.hung = 0  # connections made to hang so far
        self._closed = threading.Event()
        threading.Thread(target=self._accept, name="proxy", daemon=True).start()

    def hang_next(self) -> None:
        with self._lock:
            self._armed = True

    def _claim(self) -> bool:
        with self._lock:
            if not self._armed:
                return False
            self._armed = False
            self.hung += 1
            return True

    def close(self) -> None:
        self._closed.set()
        self._listener.close()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._pipe, args=(client,), daemon=True).start()

    def _pipe(self, client: socket.socket) -> None:
        try:
            server = socket.create_connection(self.upstream, timeout=10)
        except OSError:
            client.close()
            return
        peer = {client: server, server: client}
        hanging = False
        with selectors.DefaultSelector() as sel:
            sel.register(client, selectors.EVENT_READ)
            sel.register(server, selectors.EVENT_READ)
            while not self._closed.is_set():
                for key, _ in sel.select(timeout=1.0):
                    sock: socket.socket = key.fileobj  # type: ignore[assignment]
                    try:
                        data = sock.recv(65536)
                    except OSError:
                        data = b""
                    if not data:
                        client.close()
                        server.close()
                        return
                    if sock is client and not hanging and self._claim():
                        hanging = True  # from here on, nothing goes either way
                        sel.unregister(server)
                        server.close()
                    if hanging:
                        continue
                    peer[sock].sendall(data)
        client.close()
        server.close()
