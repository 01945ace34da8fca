"""What every request leaves behind: ledger records, metrics and one log line.

The router calls this once per attempt and once per request, success or
failure. Ledger records carry ids, units and money only; the log line too.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Literal

import structlog

from gateway.core import errors
from gateway.core.provider_types import Locality, Operation, Usage
from gateway.health.book import breaker_gauge_value
from gateway.ledger.store import (
    LedgerRecord,
    PricesUsed,
    attempt_record_id,
    new_request_key,
    request_record_id,
)
from gateway.money.counterfactual import Counterfactual, cloud_counterfactual, local_counterfactual

if TYPE_CHECKING:
    from gateway.core.domain import AttemptRecord, RouteInfo
    from gateway.health.book import HealthBook
    from gateway.ledger.store import Ledger
    from gateway.money.pricing import PriceBook
    from gateway.routing.catalogue import Catalogue
    from gateway.telemetry.metrics import Metrics
    from policies.model import Tenant

log = structlog.get_logger(__name__)

# Counterfactuals remembered per (operation, audio seconds, characters): identical requests (a recording
# served from the cache again and again) price the same. Bounded, as every request of another length adds one.
WHAT_IF_MEMO = 1024

CacheResult = Literal["hit", "miss", "bypass"]


@dataclass
class RequestScope:
    """One request as it is being served: filled in by the router as it learns things."""

    operation: Operation
    request_id: str
    tenant: Tenant
    route: RouteInfo
    deadline: float  # time.monotonic() by which the request must be answered
    started: float = field(default_factory=time.perf_counter)
    audio_s: float = 0.0
    characters: int = 0
    cache: CacheResult | None = None  # None: the request failed before the cache was consulted
    # The server's own id for this request, which its ledger records are keyed by. request_id is the
    # caller's, who may reuse it; a fresh key per request means no record ever collides with another.
    request_key: str = field(default_factory=new_request_key)


class Accounting:
    def __init__(
        self,
        ledger: Ledger,
        metrics: Metrics,
        prices: PriceBook,
        catalogue: Catalogue,
        health: HealthBook,
    ) -> None:
        self._ledger = ledger
        self._metrics = metrics
        self._prices = prices
        self._catalogue = catalogue
        self._health = health
        # Unit prices per (provider, model, locality): the price book never changes under this object.
        self._prices_used: dict[tuple[str, str, Locality], PricesUsed] = {}
        self._what_if_cloud: dict[tuple[Operation, float, int], Decimal | None] = {}
        self._what_if_local: dict[tuple[Operation, float, int], Decimal | None] = {}
        self._what_if_health: object = None

    def attempt_done(self, provider: str, operation: Operation, latency_ms: float) -> None:
        self._metrics.observe_attempt(provider, operation, latency_ms / 1000.0)
        state = self._health.snapshot().get(provider)
        if state is not None:
            self._metrics.set_breaker(provider, breaker_gauge_value(state.state))

    async def records_stored(self, timeout_s: float) -> None:
        """Hold the reply until its ledger records are durable: an answered request is never unrecorded."""
        if self._ledger.running and not await self._ledger.stored(timeout_s):
            log.warning("ledger.ack_timeout", timeout_s=timeout_s, queued=self._ledger.queue_depth())

    def budget_seen(self, tenant: str, remaining: Decimal) -> None:
        self._metrics.set_budget_remaining(tenant, remaining)

    def request_done(self, scope: RequestScope, error: BaseException | None) -> None:
        route = scope.route
        route.latency_ms = (time.perf_counter() - scope.started) * 1000.0
        status = "OK" if error is None else _status(error)
        now = time.time()
        for number, attempt in enumerate(route.attempts, start=1):
            self._ledger.record(self._attempt_record(scope, attempt, number, now))
        self._ledger.record(self._request_record(scope, error, now))

        operation = scope.operation
        self._metrics.observe_request(operation, route.provider, status, route.latency_ms / 1000.0)
        if error is None:
            self._metrics.add_cost(
                scope.tenant.name, route.provider, operation, route.cost_usd, route.saved_usd
            )
        if scope.cache is not None:
            self._metrics.cache(operation, scope.cache)
        fields = {
            "operation": operation.value,
            "provider": route.provider,
            "model": route.model,
            "policy": route.policy,
            "request_key": scope.request_key,
            "cost_usd": str(route.cost_usd),
            "saved_usd": str(route.saved_usd),
            "cache_hit": route.cache_hit,
            "latency_ms": round(route.latency_ms, 1),
            "attempts": len(route.attempts),
            "audio_s": round(scope.audio_s, 3),
            "characters": scope.characters,
        }
        if error is None:
            log.info("request.served", **fields)
        else:
            log.info(
                "request.failed", status=status, kind=getattr(error, "kind", type(error).__name__), **fields
            )

    def _attempt_record(
        self, scope: RequestScope, attempt: AttemptRecord, number: int, now: float
    ) -> LedgerRecord:
        return LedgerRecord(
            kind="attempt",
            record_id=attempt_record_id(scope.request_key, number),
            request_key=scope.request_key,
            request_id=scope.request_id,
            tenant=scope.tenant.name,
            operation=attempt.operation.value,
            policy=scope.route.policy,
            provider=attempt.provider,
            model=attempt.model,
            locality=attempt.locality.value,
            outcome=attempt.outcome,
            error_kind="" if attempt.outcome == "ok" else attempt.outcome,
            units=attempt.usage,
            unit_prices=self._unit_prices(attempt.provider, attempt.model, attempt.locality),
            price_book_version=self._prices.version,
            cost_usd=attempt.cost_usd,
            saved_usd=Decimal(0),
            billing_unknown=attempt.billing_unknown,
            possibly_billed_usd=attempt.possibly_billed_usd,
            cache_hit=False,
            latency_ms=attempt.latency_ms,
            timestamp=now,
        )

    def _request_record(self, scope: RequestScope, error: BaseException | None, now: float) -> LedgerRecord:
        route = scope.route
        locality = route.locality or self._locality_of(route.provider)
        units = _request_units(scope)
        cloud = local = None
        if error is None:
            what_if = self._counterfactual(scope.operation, scope.audio_s, scope.characters)
            cloud, local = what_if.cloud_usd, what_if.local_usd
            measured = _measured_local_usd(route, locality)
            if measured is not None:
                local = measured
        return LedgerRecord(
            kind="request",
            record_id=request_record_id(scope.request_key),
            request_key=scope.request_key,
            request_id=scope.request_id,
            tenant=scope.tenant.name,
            operation=scope.operation.value,
            policy=route.policy,
            provider=route.provider,
            model=route.model,
            locality=locality.value if locality else "",
            outcome="ok" if error is None else getattr(error, "kind", "error"),
            error_kind="" if error is None else getattr(error, "kind", "error"),
            units=units,
            unit_prices=(
                self._unit_prices(route.provider, route.model, locality)
                if locality is not None
                else PricesUsed()
            ),
            price_book_version=self._prices.version,
            cost_usd=route.cost_usd,
            saved_usd=route.saved_usd,
            possibly_billed_usd=sum((a.possibly_billed_usd for a in route.attempts), Decimal(0)),
            cache_hit=route.cache_hit,
            latency_ms=route.latency_ms,
            timestamp=now,
            counterfactual_cloud_usd=cloud,
            counterfactual_local_usd=local,
        )

    def _unit_prices(self, provider: str, model: str, locality: Locality) -> PricesUsed:
        key = (provider, model, locality)
        found = self._prices_used.get(key)
        if found is None:
            found = self._prices_used[key] = PricesUsed.from_book(self._prices, provider, model, locality)
        return found

    def _counterfactual(self, operation: Operation, audio_s: float, characters: int) -> Counterfactual:
        """:func:`counterfactual`, remembered: the cloud price for good (the price book never changes under
        this object), the local one while the health book (learned latencies) is unchanged."""
        key = units = (operation, audio_s, characters)
        catalogue, prices = self._catalogue, self._prices
        cloud = _remembered(
            self._what_if_cloud,
            key,
            lambda: cloud_counterfactual(*units, catalogue.candidates(), prices),
        )
        health = self._health.snapshot()
        if health is not self._what_if_health:
            self._what_if_local.clear()
            self._what_if_health = health
        local = _remembered(
            self._what_if_local,
            key,
            lambda: local_counterfactual(*units, catalogue.candidates(), prices, health),
        )
        return Counterfactual(cloud, local)

    def _locality_of(self, provider: str) -> Locality | None:
        try:
            return self._catalogue.get(provider).capabilities.locality
        except KeyError:
            return None


def _remembered(
    memo: dict[tuple[Operation, float, int], Decimal | None],
    key: tuple[Operation, float, int],
    compute: Callable[[], Decimal | None],
) -> Decimal | None:
    if key in memo:
        return memo[key]
    if len(memo) >= WHAT_IF_MEMO:
        memo.clear()
    found = memo[key] = compute()
    return found


def _measured_local_usd(route: RouteInfo, locality: Locality | None) -> Decimal | None:
    """What a request answered on local engines cost there, from its measured compute; else None.

    The counterfactual estimates compute time from the latency model; where the request really ran
    locally, the estimate would report a different price for the very same work.
    """
    if route.cache_hit:
        # The original call's cost, measured when it ran.
        return route.saved_usd if locality is Locality.LOCAL else None
    served = [a for a in route.attempts if a.outcome == "ok"]
    if not served or any(a.locality is not Locality.LOCAL for a in served):
        return None
    return sum((a.cost_usd for a in served), Decimal(0))


def _request_units(scope: RequestScope) -> Usage:
    """What the request consumed: its successful attempts' units, or its input size for a cache hit."""
    if scope.route.cache_hit:
        return Usage(audio_seconds=scope.audio_s, characters=scope.characters)
    total = Usage()
    for attempt in scope.route.attempts:
        if attempt.outcome == "ok":
            total = total + attempt.usage
    return total


def _status(error: BaseException) -> str:
    if isinstance(error, asyncio.CancelledError):
        return "CANCELLED"
    return errors.status_name(error)
