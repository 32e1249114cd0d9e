"""A local HTTP server for download tests: serves files from memory on 127.0.0.1 and misbehaves on demand.

It honours ``Range: bytes=N-`` (206 with ``Content-Range``), can answer 503 a number of times before it
serves a file, and can drop the connection after sending part of a file (having promised all of it in
``Content-Length``), as a flaky link does. Every request's path and ``Range`` header is recorded.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

_RANGE = re.compile(r"^bytes=(\d+)-$")


@dataclass
class ServerState:
    files: dict[str, bytes] = field(default_factory=dict)  # "/name" -> content
    fail_times: dict[str, int] = field(default_factory=dict)  # answer 503 this many more times
    drop_after: dict[str, int] = field(default_factory=dict)  # once: close after this many body bytes
    ignore_range: bool = False
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # (path, Range header)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, path: Path, name: str | None = None) -> str:
        """Serve the file at ``path`` as ``/<name>``; return that URL path."""
        key = "/" + (name or path.name)
        self.files[key] = path.read_bytes()
        return key

    def ranges(self, key: str) -> list[str | None]:
        return [r for p, r in self.requests if p == key]


class _Handler(BaseHTTPRequestHandler):
    state: ServerState

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - keep the test output quiet
        pass

    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        state = self.state
        key = self.path
        range_header = self.headers.get("Range")
        with state.lock:
            state.requests.append((key, range_header))
            failing = state.fail_times.get(key, 0)
            if failing:
                state.fail_times[key] = failing - 1
            drop = state.drop_after.pop(key, None)
        if key not in state.files:
            self.send_error(404)
            return
        if failing:
            self.send_error(503, "try again later")
            return
        data = state.files[key]
        start = 0
        match = _RANGE.match(range_header or "")
        if match and not state.ignore_range:
            start = int(match[1])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        if drop is not None:  # promise everything, send part, hang up
            self.wfile.write(body[:drop])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


@contextmanager
def serve(state: ServerState | None = None) -> Iterator[tuple[str, ServerState]]:
    """Run the server in a thread; yield its base URL (``http://127.0.0.1:<port>``) and its state."""
    state = state or ServerState()
    handler = type("Handler", (_Handler,), {"state": state})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
