"""A real HTTP server on 127.0.0.1 that vendor fakes build on.

A fake registers routes; the server records every request it receives (method,
path, query, headers, body) so tests can assert what the real SDK sent, and
has failure knobs a test sets before a call:

- ``fail_next(status, body)``: answer the next N requests with this status;
- ``delay_s``: sleep before answering (to pass a deadline);
- ``malformed``: answer 200 with a body that is not the expected JSON;
- ``drop``: close the connection without answering;
- ``slow_first_byte_s``: send the status line only after this long.

A route may stream its body instead (``Reply.chunks``): the chunks go out with chunked transfer encoding,
``Reply.chunk_delay_s`` apart, and ``Reply.drop_after`` cuts the connection after that many, mid-body, as
a vendor that falls over while speaking does. ``Reply.sent_at`` (``time.monotonic()``) is set once the
whole body is out.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-cased names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Reply:
    status: int = 200
    body: bytes | str | dict | list = b""
    headers: dict[str, str] = field(default_factory=dict)
    #: A streamed body: sent chunk by chunk (``body`` is then ignored).
    chunks: list[bytes] | None = None
    chunk_delay_s: float = 0.0
    drop_after: int | None = None
    #: ``time.monotonic()`` when the last chunk had been written; None until then, and for a dropped body.
    sent_at: float | None = None

    def encoded(self) -> tuple[bytes, str]:
        if isinstance(self.body, dict | list):
            return json.dumps(self.body).encode(), "application/json"
        if isinstance(self.body, str):
            return self.body.encode(), "text/plain"
        return self.body, "application/octet-stream"


Route = Callable[[Recorded, re.Match[str]], Reply]


@dataclass
class _Failure:
    status: int
    body: dict | str
    remaining: int


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver listens with a backlog of 5: a burst of concurrent clients overflows it and their
    # connections are reset.
    request_queue_size = 128


class FakeServer:
    """Start with ``with FakeServer() as server:`` (or start()/stop()); ``server.url`` is its base URL."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.delay_s = 0.0
        self.slow_first_byte_s = 0.0
        self.malformed = False
        self.drop = False
        self._routes: list[tuple[str, re.Pattern[str], Route]] = []
        self._failures: list[_Failure] = []
        self._lock = threading.Lock()
        self._httpd = _Server(("127.0.0.1", 0), self._handler_class())
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    # -- set-up --------------------------------------------------------------------

    def route(self, method: str, pattern: str, handler: Route) -> None:
        self._routes.append((method.upper(), re.compile(f"^{pattern}$"), handler))

    def fail_next(self, status: int, body: dict | str | None = None, times: int = 1) -> None:
        with self._lock:
            self._failures.append(
                _Failure(status, body if body is not None else {"error": "injected"}, times)
            )

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self._failures.clear()
        self.delay_s = self.slow_first_byte_s = 0.0
        self.malformed = self.drop = False

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> FakeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- serving -------------------------------------------------------------------

    def _next_failure(self) -> _Failure | None:
        with self._lock:
            if not self._failures:
                return None
            failure = self._failures[0]
            failure.remaining -= 1
            if failure.remaining <= 0:
                self._failures.pop(0)
            return failure

    def _dispatch(self, recorded: Recorded) -> Reply:
        for method, pattern, handler in self._routes:
            match = pattern.match(recorded.path)
            if method == recorded.method and match:
                return handler(recorded, match)
        return Reply(404, {"error": f"no route for {recorded.method} {recorded.path}"})

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body leave in separate writes: with Nagle on, the body waits for the client's
            # delayed ACK (about 40 ms on Linux), which would swamp any latency a test or benchmark measures.
            disable_nagle_algorithm = True

            def log_message(self, *args: object) -> None:  # keep test output clean
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                recorded = Recorded(
                    method=self.command,
                    path=parts.path,
                    query=parse_qs(parts.query, keep_blank_values=True),
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                )
                with server._lock:
                    server.requests.append(recorded)
                # Knobs are read when the request arrives: a handler still sleeping from an earlier
                # test must not consume a failure injected for the next one.
                delay_s, drop, malformed = server.delay_s, server.drop, server.malformed
                slow_first_byte_s = server.slow_first_byte_s
                failure = None if drop else server._next_failure()
                if delay_s:
                    time.sleep(delay_s)
                if drop:
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                if failure is not None:
                    reply = Reply(failure.status, failure.body)
                elif malformed:
                    reply = Reply(200, b'{"this is": not json', {"content-type": "application/json"})
                else:
                    reply = server._dispatch(recorded)
                if slow_first_byte_s:
                    time.sleep(slow_first_byte_s)
                if reply.chunks is not None:
                    self._stream(reply)
                    return
                payload, content_type = reply.encoded()
                self.send_response(reply.status)
                headers = {"content-type": content_type, **reply.headers}
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def _stream(self, reply: Reply) -> None:
                self.send_response(reply.status)
                for name, value in {"content-type": "application/octet-stream", **reply.headers}.items():
                    self.send_header(name, value)
                self.send_header("transfer-encoding", "chunked")
                self.end_headers()
                assert reply.chunks is not None
                for index, chunk in enumerate(reply.chunks):
                    if reply.drop_after is not None and index >= reply.drop_after:
                        self.wfile.flush()
                        self.connection.shutdown(socket.SHUT_RDWR)
                        self.close_connection = True
                        return
                    if index and reply.chunk_delay_s:
                        time.sleep(reply.chunk_delay_s)
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()
                reply.sent_at = time.monotonic()

            def _handle_quietly(self) -> None:
                # A client that gave up (its deadline passed) closes the socket under us.
                try:
                    self._handle()
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True

            do_GET = do_POST = do_PUT = do_DELETE = _handle_quietly

        return Handler
