"""Prometheus metrics: what the gateway serves, what it costs, and how healthy its parts are.

One :class:`Metrics` per gateway process. It owns its own ``CollectorRegistry``, so several can live in one
process (tests, embedded gateways) without clashing in the library's global registry. Every name starts
with ``audio_gateway_``; the exposition adds ``_total`` to counters and ``_bucket``/``_sum``/``_count`` to
histograms::

    requests_total{operation,provider,status}          every request, by its final gRPC status name
    request_errors_total{operation,status}             requests whose status is not OK
    request_latency_seconds{operation}                 histogram, whole request
    attempt_latency_seconds{provider,operation}        histogram, one provider call
    cost_usd_total{tenant,provider,operation}          what requests cost
    saved_usd_total{tenant,provider,operation}         what cache hits saved
    cache_requests_total{operation,result}             result: hit | miss | bypass; the hit ratio's source
    breaker_state{provider}                            0 closed, 1 half-open, 2 open
    budget_remaining_usd{tenant}                       this month's budget left
    ledger_spool_depth, ledger_queue_depth             read from callbacks at scrape time
    admissions_refused_total{operation,reason}         calls refused for load; reason: concurrency (a cap
                                                       of GATEWAY_ADMISSION__*) | providers_busy (every
                                                       engine queue was full)
    in_flight{operation}                               calls admitted and not yet finished (read at scrapes)
    event_loop_lag_seconds                             histogram, how late the loop ran a 100 ms timer
    gc_pause_seconds{generation}                       histogram, each garbage collection's pause

A call refused at its admission cap is turned away before any accounting, so it shows only in
``admissions_refused_total``; one refused because every provider was busy shows there and in
``requests_total`` (RESOURCE_EXHAUSTED). Admission counts ExplainRoute too: a fourth ``operation``,
``explain``.

**Money.** The ledger keeps exact amounts (Decimal). These counters take ``float(Decimal)`` because they
feed dashboards, where a float's rounding is invisible; never reconcile an invoice against them.

**Label cardinality is bounded by configuration, never by traffic.** No label carries a request id, an API
key, a caller-supplied string or anything derived from content. ``operation`` has three values (four in
the admission metrics), ``status`` the seventeen gRPC status names and ``reason`` two; all are checked,
and anything else raises ``ValueError``. ``generation`` is the collector's own 0, 1 or 2.
``provider`` ranges over the catalogue (plus ``none`` for a request that never reached one) and ``tenant``
over the tenants in the policy file (plus ``anonymous``). A policy reload that removes a tenant leaves its
series until the process restarts, so the bound is every tenant configured during the process's life.

Every method is cheap, in-memory and thread-safe, so the router may call them on the request path.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from decimal import Decimal
from typing import Any, Literal
from wsgiref.simple_server import WSGIServer

import grpc
import prometheus_client
import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from gateway.core.domain import CallKind
from gateway.core.provider_types import Operation

log = structlog.get_logger(__name__)

__all__ = ["ADMISSION_REFUSALS", "CACHE_RESULTS", "LATENCY_BUCKETS", "NAMESPACE", "NO_PROVIDER", "Metrics"]

NAMESPACE = "audio_gateway"
# From a cached answer or a short synthesis (tens of ms) up to a long transcription on a slow vendor.
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)
CACHE_RESULTS = ("hit", "miss", "bypass")
ADMISSION_REFUSALS = ("concurrency", "providers_busy")
# A stall the health checks would notice starts at tens of ms; a wedged loop shows as seconds.
STALL_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# A request that failed before any provider was chosen (bad input, no route, auth).
NO_PROVIDER = "none"
_STATUSES = frozenset(code.name for code in grpc.StatusCode)
_BREAKER_VALUES = (0, 1, 2)
_GENERATIONS = ("0", "1", "2")

CacheResult = Literal["hit", "miss", "bypass"]
AdmissionRefusal = Literal["concurrency", "providers_busy"]


class _Children:
    """A metric's labelled children, found once per label set.

    ``labels()`` validates the values and takes the metric's lock on every call; the request path asks for
    the same few children thousands of times a second. The label sets are the metric's own, so this holds
    no more than the metric already does.
    """

    def __init__(self, metric: Any) -> None:
        self._metric = metric
        self._children: dict[tuple[str, ...], Any] = {}

    def __call__(self, *values: str) -> Any:
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self._metric.labels(*values)
        return child


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        common: dict[str, Any] = {"namespace": NAMESPACE, "registry": self.registry}
        self._requests = Counter(
            "requests",
            "Requests served, by final gRPC status.",
            ["operation", "provider", "status"],
            **common,
        )
        self._errors = Counter(
            "request_errors",
            "Requests that ended with a status other than OK.",
            ["operation", "status"],
            **common,
        )
        self._request_latency = Histogram(
            "request_latency_seconds",
            "Whole-request latency, every attempt and the routing included.",
            ["operation"],
            buckets=LATENCY_BUCKETS,
            **common,
        )
        self._attempt_latency = Histogram(
            "attempt_latency_seconds",
            "Latency of one provider call.",
            ["provider", "operation"],
            buckets=LATENCY_BUCKETS,
            **common,
        )
        self._cost = Counter(
            "cost_usd",
            "Cost of served requests in USD (the ledger holds the exact amounts).",
            ["tenant", "provider", "operation"],
            **common,
        )
        self._saved = Counter(
            "saved_usd",
            "What cache hits saved in USD: the original call's cost.",
            ["tenant", "provider", "operation"],
            **common,
        )
        self._cache = Counter(
            "cache_requests",
            "Cache lookups by result (hit, miss, bypass).",
            ["operation", "result"],
            **common,
        )
        self._breaker = Gauge(
            "breaker_state", "Circuit breaker: 0 closed, 1 half-open, 2 open.", ["provider"], **common
        )
        self._budget = Gauge(
            "budget_remaining_usd", "This month's budget left per tenant, in USD.", ["tenant"], **common
        )
        self._spool = Gauge(
            "ledger_spool_depth", "Ledger records spooled to disk, waiting for Redis.", **common
        )
        self._queue = Gauge(
            "ledger_queue_depth", "Ledger records queued in memory, not yet written.", **common
        )
        self._refused = Counter(
            "admissions_refused",
            "Calls refused for load, by reason (concurrency cap, or every provider busy).",
            ["operation", "reason"],
            **common,
        )
        self._in_flight = Gauge(
            "in_flight", "Calls admitted and not yet finished, per operation.", ["operation"], **common
        )
        self._engine_memory = Gauge(
            "engine_memory_bytes",
            "Resident memory a local engine's model added to the process when it loaded.",
            ["provider"],
            **common,
        )
        self._loop_lag = Histogram(
            "event_loop_lag_seconds",
            "How much later than asked the event loop ran a timer armed every 100 ms.",
            buckets=STALL_BUCKETS,
            **common,
        )
        self._gc_pause = Histogram(
            "gc_pause_seconds",
            "How long each garbage collection held the interpreter, by generation.",
            ["generation"],
            buckets=STALL_BUCKETS,
            **common,
        )
        # Present from the start so the hit ratio and rate() see the first lookup as an increase.
        for operation in Operation:
            for result in CACHE_RESULTS:
                self._cache.labels(operation.value, result)
        for call in CallKind:
            self._in_flight.labels(call.value)
            for reason in ADMISSION_REFUSALS:
                self._refused.labels(call.value, reason)
        self._requests_of = _Children(self._requests)
        self._request_latency_of = _Children(self._request_latency)
        self._attempt_latency_of = _Children(self._attempt_latency)
        self._cost_of = _Children(self._cost)
        self._saved_of = _Children(self._saved)
        self._cache_of = _Children(self._cache)
        self._in_flight_of = _Children(self._in_flight)
        self._gc_pause_of = _Children(self._gc_pause)
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    # -- what the router and server report ----------------------------------

    def observe_request(
        self, operation: Operation | str, provider: str, status: grpc.StatusCode | str, latency_s: float
    ) -> None:
        """One finished request; ``provider`` is the one that answered, or empty if none did."""
        op = _operation(operation)
        code = _status(status)
        self._requests_of(op, provider or NO_PROVIDER, code).inc()
        if code != "OK":
            self._errors.labels(op, code).inc()
        self._request_latency_of(op).observe(latency_s)

    def observe_attempt(self, provider: str, operation: Operation | str, latency_s: float) -> None:
        self._attempt_latency_of(provider, _operation(operation)).observe(latency_s)

    def add_cost(
        self, tenant: str, provider: str, operation: Operation | str, cost: Decimal, saved: Decimal
    ) -> None:
        """A served request's cost and savings. Both are added even when zero, so the series exist."""
        if cost < 0 or saved < 0:
            raise ValueError(f"cost and savings cannot be negative: cost={cost} saved={saved}")
        labels = (tenant, provider, _operation(operation))
        self._cost_of(*labels).inc(float(cost))
        self._saved_of(*labels).inc(float(saved))

    def cache(self, operation: Operation | str, result: CacheResult) -> None:
        if result not in CACHE_RESULTS:
            raise ValueError(f"cache result must be one of {', '.join(CACHE_RESULTS)}, not {result!r}")
        self._cache_of(_operation(operation), result).inc()

    def set_breaker(self, provider: str, value: int) -> None:
        """``value`` as :func:`gateway.health.breaker_gauge_value` gives it."""
        if value not in _BREAKER_VALUES:
            raise ValueError(f"breaker value must be 0 (closed), 1 (half-open) or 2 (open), not {value!r}")
        self._breaker.labels(provider).set(value)

    def admission_refused(self, call: CallKind | str, reason: AdmissionRefusal) -> None:
        if reason not in ADMISSION_REFUSALS:
            raise ValueError(f"refusal reason must be one of {', '.join(ADMISSION_REFUSALS)}, not {reason!r}")
        self._refused.labels(_call(call), reason).inc()

    def track_in_flight(self, call: CallKind | str, count: Callable[[], float]) -> None:
        """Read ``call``'s calls in flight at each scrape (an integer attribute: see :meth:`track_depths`),
        rather than setting the gauge twice on every call."""
        self._in_flight_of(_call(call)).set_function(_guarded(count, "in_flight"))

    def set_engine_memory(self, provider: str, size: int) -> None:
        self._engine_memory.labels(provider).set(size)

    def set_budget_remaining(self, tenant: str, usd: Decimal) -> None:
        self._budget.labels(tenant).set(float(usd))

    def track_depths(self, spool: Callable[[], float], queue: Callable[[], float]) -> None:
        """Read the ledger's depths at each scrape.

        The callbacks run on the scrape thread, not the event loop: they must be cheap, must not block, and
        must only read (a ``len()`` of a deque, an ``asyncio.Queue.qsize()``, an integer attribute).
        """
        self._spool.set_function(_guarded(spool, "ledger_spool_depth"))
        self._queue.set_function(_guarded(queue, "ledger_queue_depth"))

    def observe_loop_lag(self, lag_s: float) -> None:
        self._loop_lag.observe(lag_s)

    def observe_gc_pause(self, generation: int, pause_s: float) -> None:
        self._gc_pause_of(_GENERATIONS[generation]).observe(pause_s)

    # -- the HTTP endpoint ---------------------------------------------------

    def start_http_server(self, host: str, port: int) -> int:
        """Serve ``/metrics`` on a daemon thread and return the bound port (``port=0`` picks a free one)."""
        if self._server is not None:
            raise RuntimeError(f"the metrics endpoint already listens on port {self.port}")
        # gRPC-style "[::]" hosts are accepted too; the WSGI server wants the bare address.
        server, thread = prometheus_client.start_http_server(
            port, addr=host.strip("[]"), registry=self.registry
        )
        self._server, self._thread = server, thread
        bound = self.port
        log.info("metrics.listening", host=host, port=bound)
        return bound

    @property
    def port(self) -> int | None:
        return None if self._server is None else int(self._server.server_address[1])

    def stop(self) -> None:
        """Close the endpoint; a no-op when it is not running. Blocks for up to half a second."""
        server, thread = self._server, self._thread
        if server is None:
            return
        self._server = self._thread = None
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        log.info("metrics.stopped")


def _operation(operation: Operation | str) -> str:
    # Operation() raises ValueError for anything that is not one of the three operations.
    return Operation(operation).value


def _call(call: CallKind | str) -> str:
    return CallKind(call).value


def _status(status: grpc.StatusCode | str) -> str:
    name = status.name if isinstance(status, grpc.StatusCode) else status
    if name not in _STATUSES:
        raise ValueError(f"status must be a gRPC status name such as OK or UNAVAILABLE, not {status!r}")
    return name


def _guarded(read: Callable[[], float], gauge: str) -> Callable[[], float]:
    # A failing callback must not fail the whole scrape: that would blank every other metric too.
    def value() -> float:
        try:
            return float(read())
        except Exception:
            log.warning("metrics.callback_failed", gauge=gauge, exc_info=True)
            return math.nan

    return value
