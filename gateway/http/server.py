"""The HTTP door as a :class:`~gateway.app.Door`: uvicorn in the event loop the gRPC server runs in.

uvicorn's ``Server.serve`` would install its own SIGINT/SIGTERM handlers over the gateway's; this runs
its pieces instead (start on a socket bound here, tick, graceful shutdown), so the gateway's signal
handling drains both doors together. Binding the socket here also makes a taken port an ``OSError``
(uvicorn would ``sys.exit``).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket

import structlog
import uvicorn

from gateway.app import App, DoorFactory
from gateway.http.app import create_http_app
from gateway.settings import HttpSettings, Settings

log = structlog.get_logger(__name__)


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named, not left 0: asyncio turns Nagle off only on sockets whose proto says TCP, and with
    # Nagle on, a body written after its headers waits for the client's delayed ACK (40 ms on Linux).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host.strip("[]"), port))
        sock.listen(1024)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        where = f"{host}:{port} (GATEWAY_HTTP__HOST, GATEWAY_HTTP__PORT)"
        raise OSError(exc.errno, f"cannot listen for HTTP on {where}: {exc.strerror}") from exc
    return sock


class HttpDoor:
    def __init__(self, app: App, settings: HttpSettings) -> None:
        self._app = app
        self._settings = settings
        self.port: int = 0
        self._server: uvicorn.Server | None = None
        self._ticker: asyncio.Task[None] | None = None

    async def start(self) -> None:
        sock = _listen(self._settings.host, self._settings.port)
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            create_http_app(self._app),
            lifespan="off",
            log_config=None,
            access_log=False,
            server_header=False,
            # Clients that reach the gateway through a proxy name themselves in x-request-id, not here.
            proxy_headers=False,
            # llhttp (httptools, a declared dependency) rather than h11: it parses in C, about 0.3 ms less
            # per upload, and it is the stricter of the two: control characters in header values, obs-fold,
            # bare LF line ends and a request with both Content-Length and Transfer-Encoding (smuggling) are
            # refused with 400 before the app sees them, where h11 lets all of them through.
            http="httptools",
        )
        config.load()
        server = uvicorn.Server(config)
        server.lifespan = config.lifespan_class(config)
        try:
            await server.startup(sockets=[sock])
        except BaseException:
            sock.close()
            raise
        self._server = server
        # The tick refreshes the Date header uvicorn sends; it ends when should_exit is set.
        self._ticker = asyncio.create_task(server.main_loop())
        log.info("http.listening", host=self._settings.host, port=self.port)

    async def stop(self, grace_s: float) -> None:
        server = self._server
        if server is None:
            return
        server.config.timeout_graceful_shutdown = grace_s
        server.should_exit = True
        if self._ticker is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        await server.shutdown()
        self._server = None
        log.info("http.stopped")


def http_doors(settings: Settings) -> list[DoorFactory]:
    """The HTTP door when ``GATEWAY_HTTP__ENABLED`` (the default), for ``GatewayServer(doors=…)``."""
    if not settings.http.enabled:
        return []
    return [lambda app: HttpDoor(app, settings.http)]
