"""/healthz for a replica that waits for the Lease: kopf serves it only once it runs, and a
standby that answered nothing would be restarted by its kubelet for waiting."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Healthz(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        ok = self.path.split("?")[0] == "/healthz"
        self.send_response(200 if ok else 404)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write(b"standby: waiting for the Lease\n" if ok else b"")

    def log_message(self, format: str, *args: object) -> None:  # probes every few seconds
        pass


@contextlib.contextmanager
def serve_while_waiting(host: str, port: int) -> Iterator[None]:
    """Answer /healthz on (host, port) until the block ends; then the port is free for kopf."""
    server = ThreadingHTTPServer((host, port), _Healthz)
    thread = threading.Thread(target=server.serve_forever, name="standby-healthz", daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
