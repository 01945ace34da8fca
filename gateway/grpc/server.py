"""The gRPC server: services, health, reflection, message limits and graceful shutdown."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Sequence

import grpc
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from gateway.api.v1 import audio_gateway_pb2, audio_gateway_pb2_grpc, cost_reports_pb2, cost_reports_pb2_grpc
from gateway.app import App, Door, DoorFactory, build_app
from gateway.core.provider_types import Operation
from gateway.embedded_store import embedded_state
from gateway.grpc.cost_reports import CostReportsServicer
from gateway.grpc.interceptors import RequestInterceptor
from gateway.grpc.reflection import enable_reflection
from gateway.grpc.servicers import AudioGatewayServicer
from gateway.health.book import run_sync_loop
from gateway.money.pricing import UnitPrices
from gateway.routing.auth import authenticate
from gateway.settings import Settings
from gateway.telemetry.runtime import GcPauseTimer, freeze_startup_objects, watch_loop_lag
from providers.base import Provider

log = structlog.get_logger(__name__)

SERVICE_NAME = audio_gateway_pb2.DESCRIPTOR.services_by_name["AudioGateway"].full_name
REPORTS_SERVICE_NAME = cost_reports_pb2.DESCRIPTOR.services_by_name["CostReports"].full_name
# Per-operation health names, so a probe can wait for just the capability it needs.
OPERATION_SERVICES = {
    Operation.TRANSCRIBE: f"{SERVICE_NAME}/Transcribe",
    Operation.SYNTHESIZE: f"{SERVICE_NAME}/Synthesize",
    Operation.UNDERSTAND: f"{SERVICE_NAME}/Understand",
}
_SERVING = health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class ListenError(Exception):
    """A port the gateway needs is taken; the message names it and the setting that moves it."""


class GatewayServer:
    """A running gateway. ``start`` returns once the port listens; engines warm up behind it.

    ``doors`` builds the other ways in (the HTTP API) over the same App: they start with the gRPC server,
    in the same event loop, and drain with it.
    """

    def __init__(
        self,
        settings: Settings,
        providers: list[Provider] | None = None,
        prices: dict[tuple[str, str], UnitPrices] | None = None,
        doors: Sequence[DoorFactory] = (),
    ) -> None:
        self.settings = settings
        self.app: App = build_app(settings, providers, prices)
        self.doors: list[Door] = [factory(self.app) for factory in doors]
        self.port: int = 0
        self.metrics_port: int | None = None
        self._health = health.aio.HealthServicer()
        self._ready = asyncio.Event()
        # Engines report readiness one by one: "serving" is logged once per change, not per report.
        self._overall: int | None = None
        self._warmup: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._background: list[asyncio.Task[None]] = []
        self._gc_timer = GcPauseTimer(self.app.metrics.observe_gc_pause)
        options = [
            ("grpc.max_receive_message_length", settings.server.max_message_bytes),
            ("grpc.max_send_message_length", settings.server.max_message_bytes),
            # gRPC enables SO_REUSEPORT by default, which lets a second gateway silently share the port.
            ("grpc.so_reuseport", 0),
        ]
        store = self.app.policies
        interceptor = RequestInterceptor(authenticate=lambda metadata: authenticate(store.book, metadata))
        self._server = grpc.aio.server(interceptors=[interceptor], options=options)
        audio_gateway_pb2_grpc.add_AudioGatewayServicer_to_server(
            AudioGatewayServicer(self.app.router, settings.default_timeout_s, self.app.streams), self._server
        )
        cost_reports_pb2_grpc.add_CostReportsServicer_to_server(
            CostReportsServicer(self.app.ledger, self.app.policies, self.app.prices), self._server
        )
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        if settings.server.reflection:
            names = (
                REPORTS_SERVICE_NAME,
                SERVICE_NAME,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            )
            enable_reflection(names, self._server)

    async def start(self) -> int:
        # The metrics port binds first: a clash then stops the start before gRPC says it listens.
        if self.settings.metrics.enabled:
            self.metrics_port = self._start_metrics()
        address = f"{self.settings.server.host}:{self.settings.server.port}"
        self.port = self._server.add_insecure_port(address)
        if self.port == 0:
            raise OSError(f"cannot listen on {address}")
        for name in ("", SERVICE_NAME, *OPERATION_SERVICES.values()):
            await self._health.set(name, _NOT_SERVING)
        await self._server.start()
        log.info("server.listening", address=address, port=self.port)
        try:
            for door in self.doors:
                await door.start()
        except BaseException:
            # A door that cannot listen (its port taken) fails the start: leave no gRPC port behind.
            await self._server.stop(0)
            raise
        self._warmup = asyncio.create_task(self._warm_up())
        ledger, metrics = self.app.ledger, self.app.metrics
        self._gc_timer.install()
        self._background.append(asyncio.create_task(watch_loop_lag(metrics.observe_loop_lag, self._stopping)))
        self._background.append(asyncio.create_task(ledger.run(self._stopping)))
        metrics.track_depths(spool=ledger.spool_depth, queue=ledger.queue_depth)
        if self.app.redis is not None:
            self._background.append(
                asyncio.create_task(
                    run_sync_loop(
                        self.app.health,
                        self.app.redis,
                        self.settings.redis.key_prefix,
                        self.settings.breaker.sync_interval_s,
                        self._stopping,
                        timeout_s=self.settings.redis.timeout_s,
                    )
                )
            )
        return self.port

    def _start_metrics(self) -> int:
        host, port = self.settings.metrics.host, self.settings.metrics.port
        try:
            return self.app.metrics.start_http_server(host, port)
        except OSError as exc:
            raise ListenError(
                f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}; set GATEWAY_METRICS__PORT "
                "to a free port (0 picks one) or GATEWAY_METRICS__ENABLED=false"
            ) from exc

    async def _warm_up(self) -> None:
        await self.app.catalogue.start(on_change=self._publish_health)
        for provider, size in self.app.catalogue.memory().items():
            self.app.metrics.set_engine_memory(provider, size)
        await self._publish_health()
        failures = self.app.catalogue.failures
        if failures:
            log.error("server.degraded", failed=sorted(failures))
        self._ready.set()

    async def _publish_health(self) -> None:
        catalogue = self.app.catalogue
        ready_ops = catalogue.ready_operations()
        for operation, name in OPERATION_SERVICES.items():
            await self._health.set(name, _SERVING if operation in ready_ops else _NOT_SERVING)
        overall = _SERVING if catalogue.all_ready() else _NOT_SERVING
        await self._health.set(SERVICE_NAME, overall)
        await self._health.set("", overall)
        if overall == _SERVING and self._overall != _SERVING:
            log.info("server.serving", port=self.port)
        self._overall = overall

    async def wait_ready(self, timeout_s: float | None = None) -> None:
        """Wait until every engine has loaded (or failed to)."""
        await asyncio.wait_for(self._ready.wait(), timeout_s)

    async def stop(self, grace_s: float | None = None) -> None:
        """Refuse new calls, let in-flight ones finish within the grace period, then release the engines."""
        grace = self.settings.server.shutdown_grace_s if grace_s is None else grace_s
        log.info("server.draining", grace_s=grace)
        await self._health.enter_graceful_shutdown()
        await asyncio.gather(self._server.stop(grace), *(door.stop(grace) for door in self.doors))
        # Flush the ledger (to Redis, or to the spool) before anything it needs is closed.
        self._stopping.set()
        await asyncio.gather(*self._background, return_exceptions=True)
        self._gc_timer.remove()
        if self.metrics_port is not None:
            await asyncio.to_thread(self.app.metrics.stop)
        if self._warmup is not None and not self._warmup.done():
            self._warmup.cancel()
        await self.app.close()
        log.info("server.stopped")

    async def run_until_signal(self) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        loop.add_signal_handler(signal.SIGHUP, self.app.policies.reload)
        try:
            await self.start()
        except BaseException:
            # Release what did start (gRPC's port, the metrics thread, the engines) while the loop still
            # runs; left to the garbage collector, gRPC's shutdown would find the loop closed.
            await self.stop(grace_s=0)
            raise
        # The serving process's own objects only: an embedded server must not freeze its host's.
        frozen = asyncio.create_task(self._freeze_when_ready())
        watcher = asyncio.create_task(self.app.policies.watch(self.settings.policies_reload_interval_s, stop))
        await stop.wait()
        await watcher
        frozen.cancel()
        await self.stop()

    async def _freeze_when_ready(self) -> None:
        await self._ready.wait()
        freeze_startup_objects()


async def serve(settings: Settings, doors: Sequence[DoorFactory] = ()) -> None:
    # The store starts first and stops last: the ledger flushes into it while the server drains.
    async with embedded_state(settings):
        await GatewayServer(settings, doors=doors).run_until_signal()
