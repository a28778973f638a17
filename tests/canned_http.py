"""A small real HTTP server that answers each request with the next canned (status, body) and
keeps what it was sent: for the service's answers the local compute-service never gives."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class CannedService:
    def __init__(self):
        self.answers: list[tuple[int, bytes]] = []
        self.received: list[dict] = []
        canned = self

        class Handler(BaseHTTPRequestHandler):
            def answer(self):
                length = int(self.headers.get("Content-Length", 0))
                canned.received.append({"method": self.command, "path": self.path,
                                        "auth": self.headers["Authorization"],
                                        "body": json.loads(self.rfile.read(length) or b"null")})
                status, body = canned.answers.pop(0)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_DELETE = answer

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()

    def answer(self, status: int, body: object) -> None:
        self.answers.append((status, body if isinstance(body, bytes) else json.dumps(body).encode()))

    def close(self) -> None:
        self._server.shutdown()
