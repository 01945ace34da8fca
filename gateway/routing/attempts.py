"""The attempt walk: one attempt per ranked candidate, under a budget reservation, each priced and recorded.

The router owns retries and fallback. A provider makes one attempt; a retryable failure moves the walk to
the next candidate, a final one (a refusal the vendor would repeat) stops it. While another candidate could
follow, an attempt gets only the policy's ``attempt_share`` of the remaining deadline (and never more than
its provider's own timeout), so a hang is a timeout against that provider and the fallback still has time.
The caller's own bad input (an unknown voice) is never the provider's fault: it surfaces as
INVALID_ARGUMENT and leaves the breaker alone.

A call that is cancelled (the caller hung up, a deadline cancelled it) or times out may still be billed by its
vendor. Its attempt is recorded all the same, with ``billing_unknown`` set, no cost, and the ranking's
estimate of its cost kept apart as ``possibly_billed_usd``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from decimal import Decimal
from typing import TYPE_CHECKING, Protocol, TypeVar

import structlog

from gateway.core.domain import AttemptRecord, RouteInfo
from gateway.core.errors import (
    AllAttemptsFailed,
    BudgetExhausted,
    DeadlineExceeded,
    InvalidInput,
    NoRoute,
    NotReady,
    ProviderBusy,
    ProviderError,
    ProviderInputError,
    ProviderTimeout,
    Recovering,
    Rejection,
    clip,
    overloaded_if_all_busy,
)
from gateway.core.provider_types import Locality, Operation, Usage
from gateway.money.budget import BudgetExceeded
from policies.rank import RankContext

if TYPE_CHECKING:
    from gateway.health.book import HealthBook
    from gateway.money.budget import Budgets, Reservation
    from gateway.money.pricing import PriceBook
    from gateway.routing.accounting import Accounting
    from gateway.routing.catalogue import Catalogue
    from gateway.routing.pipeline import RequestContext
    from policies.model import Tenant
    from policies.rank import Ranking
    from providers.base import Provider

log = structlog.get_logger(__name__)

# What an attempt leaves of the request's remaining deadline to record its outcome and answer: at most this
# many seconds, and at most this share of what remains.
_WRAP_UP_S = 0.05
_WRAP_UP_SHARE = 0.1

# The outcome of an attempt whose call was cancelled before the provider answered.
CANCELLED = "cancelled"
# How far each locality lets audio travel: a request's locality is its least private step.
EXPOSURE = {Locality.LOCAL: 0, Locality.ON_PREM: 1, Locality.CLOUD: 2}


class Metered(Protocol):
    usage: Usage


R = TypeVar("R", bound=Metered)
Call = Callable[["Provider", float], Awaitable[R]]


class Attempts:
    def __init__(
        self,
        catalogue: Catalogue,
        prices: PriceBook,
        health: HealthBook,
        budgets: Budgets,
        accounting: Accounting,
    ) -> None:
        self._catalogue = catalogue
        self._prices = prices
        self._health = health
        self._budgets = budgets
        self._accounting = accounting

    async def run(
        self,
        operation: Operation,
        ranking: Ranking,
        route: RouteInfo,
        ctx: RequestContext,
        call: Call[R],
        audio_s: float = 0.0,
        characters: int = 0,
    ) -> tuple[R, Provider]:
        """Walk the ranking under a budget reservation: settled to the actual cost, released on failure."""
        if not ranking.kept:
            raise self.no_route(operation, ranking)
        tenant: Tenant = ctx.tenant
        if tenant.monthly_budget_usd is None:
            return await self._walk(operation, ranking, route, ctx, call, audio_s, characters)
        reservation, ranking = await self._reserve(
            tenant.name, tenant.monthly_budget_usd, operation, ranking, ctx, audio_s, characters
        )
        spent_before = route.cost_usd
        try:
            result = await self._walk(operation, ranking, route, ctx, call, audio_s, characters)
        except BaseException:
            # Failed attempts are not billed; shielded so a cancelled call still frees its reservation.
            await asyncio.shield(self._budgets.release(reservation))
            raise
        await asyncio.shield(self._budgets.settle(reservation, route.cost_usd - spent_before))
        return result

    async def _reserve(
        self,
        tenant: str,
        limit_usd: Decimal,
        operation: Operation,
        ranking: Ranking,
        ctx: RequestContext,
        audio_s: float,
        characters: int,
    ) -> tuple[Reservation, Ranking]:
        """Hold the worst case of every candidate the walk may reach, and the ranking the walk may use.

        Any kept candidate may be reached, not only the first ``max_attempts``: the walk passes over a
        breaker that is half-open with its probe out, or that opened since ranking. Holding less than the
        dearest one's worst case would let concurrent requests spend past the budget together. When that
        does not fit, the walk keeps only the candidates whose worst case fits what is left, so a dear
        fallback out of reach does not refuse a request a cheaper candidate can serve within budget.
        """
        context = ranking.context or RankContext(operation, audio_s=audio_s, characters=characters)
        max_compute_s = ctx.remaining_s()
        worst = {
            k.name: self._prices.worst_case(self._catalogue.info(k.name), context, max_compute_s)
            for k in ranking.kept
        }
        try:
            return await self._budgets.reserve(tenant, limit_usd, max(worst.values())), ranking
        except BudgetExceeded as exc:
            left = exc.limit_usd - exc.used_usd
            affordable = tuple(k for k in ranking.kept if worst[k.name] <= left)
            if not affordable:
                raise
        reservation = await self._budgets.reserve(tenant, limit_usd, max(worst[k.name] for k in affordable))
        return reservation, replace(ranking, kept=affordable)

    async def _walk(
        self,
        operation: Operation,
        ranking: Ranking,
        route: RouteInfo,
        ctx: RequestContext,
        call: Call[R],
        audio_s: float,
        characters: int,
    ) -> tuple[R, Provider]:
        errors: list[ProviderError] = []
        attempted = 0
        for index, kept in enumerate(ranking.kept):
            if attempted >= ranking.max_attempts:
                break
            provider = self._catalogue.get(kept.name)
            if not self._health.try_acquire(provider.name):
                # Its breaker is half-open and another request is the probe: leave it be.
                continue
            attempted += 1
            remaining = ctx.remaining_s()
            if remaining <= 0:
                errors.append(
                    ProviderTimeout(provider.name, "the request deadline passed before this attempt")
                )
                break
            may_follow = attempted < ranking.max_attempts and index + 1 < len(ranking.kept)
            limit = attempt_timeout_s(
                remaining, provider.capabilities.timeout_s, ranking.attempt_share if may_follow else 1.0
            )
            started = time.perf_counter()
            try:
                result = await self._watched(call, provider, limit, route, operation, kept.estimated_cost_usd)
            except ProviderError as exc:
                self._failed(
                    route, provider, operation, exc, started, audio_s, characters, kept.estimated_cost_usd
                )
                if isinstance(exc, ProviderInputError):
                    raise InvalidInput(str(exc)) from exc
                errors.append(exc)
                if not exc.retryable:
                    # A refusal (bad credentials, a request the vendor rejects) is not
                    # something another attempt fixes quietly: surface it.
                    break
                continue
            self._succeeded(route, provider, operation, result.usage, started, audio_s, characters)
            return result, provider
        if errors and all(isinstance(e, ProviderTimeout) for e in errors):
            raise DeadlineExceeded(errors)
        if (overloaded := overloaded_if_all_busy(errors)) is not None:
            raise overloaded
        if not errors:
            raise Recovering(
                f"no provider can {operation.value} this request right now: every eligible provider's "
                "circuit breaker is half-open with a probe in flight; retry shortly"
            )
        raise AllAttemptsFailed(errors)

    async def _watched(
        self,
        call: Call[R],
        provider: Provider,
        timeout_s: float,
        route: RouteInfo,
        operation: Operation,
        estimate: Decimal,
    ) -> R:
        """One provider call, ended at ``timeout_s`` even if the provider does not honour the timeout it is
        given, that leaves its attempt record even when it is cancelled mid-flight."""
        started = time.perf_counter()
        try:
            async with asyncio.timeout(timeout_s):
                return await call(provider, timeout_s)
        except asyncio.CancelledError:
            # Not the provider's fault, so the health book is left alone; but the vendor may have done
            # (and may bill) the work.
            _record(
                route,
                provider,
                operation,
                CANCELLED,
                "cancelled before the provider answered",
                started,
                Decimal(0),
                Usage(),
                possibly_billed=estimate,
            )
            raise
        except TimeoutError as exc:
            # The attempt's own limit, or a timeout the provider did not map itself: either way its timeout,
            # recorded against it, and the walk moves on.
            raise ProviderTimeout(provider.name, f"no answer within the attempt's {timeout_s:.2f} s") from exc

    def _failed(
        self,
        route: RouteInfo,
        provider: Provider,
        operation: Operation,
        exc: ProviderError,
        started: float,
        audio_s: float,
        characters: int,
        estimate: Decimal = Decimal(0),
        delivered: Usage | None = None,
    ) -> None:
        # The vendor may have done the work of a call we stopped waiting for, or that broke off after
        # part of its answer arrived: it may bill it.
        partial = delivered is not None and delivered != Usage()
        possibly_billed = estimate if isinstance(exc, ProviderTimeout) or partial else None
        attempt = _record(
            route,
            provider,
            operation,
            exc.kind,
            str(exc),
            started,
            Decimal(0),
            delivered or Usage(),
            possibly_billed=possibly_billed,
        )
        # The caller's bad input says nothing about the provider's health, nor does a full queue.
        self._health.record(
            provider.name,
            ok=False,
            latency_ms=attempt.latency_ms,
            audio_s=audio_s,
            characters=characters,
            retryable_failure=not isinstance(exc, ProviderInputError | ProviderBusy),
        )
        self._accounting.attempt_done(provider.name, operation, attempt.latency_ms)
        log.warning("attempt.failed", provider=provider.name, operation=operation.value, kind=exc.kind)

    def _succeeded(
        self,
        route: RouteInfo,
        provider: Provider,
        operation: Operation,
        usage: Usage,
        started: float,
        audio_s: float,
        characters: int,
    ) -> None:
        locality = provider.capabilities.locality
        cost = self._prices.cost(provider.name, provider.model, locality, usage)
        attempt = _record(route, provider, operation, "ok", "", started, cost, usage)
        self._health.record(
            provider.name, ok=True, latency_ms=attempt.latency_ms, audio_s=audio_s, characters=characters
        )
        self._accounting.attempt_done(provider.name, operation, attempt.latency_ms)
        route.cost_usd += cost
        route.provider, route.model = provider.name, provider.model
        if route.locality is None or EXPOSURE[locality] > EXPOSURE[route.locality]:
            route.locality = locality

    # -- for walks that are not one call per candidate (a stream speaks sentence by sentence) -----------

    @contextlib.asynccontextmanager
    async def reserved(
        self, operation: Operation, ranking: Ranking, route: RouteInfo, ctx: RequestContext, characters: int
    ) -> AsyncIterator[Ranking]:
        """:meth:`run`'s budget reservation around a walk the caller drives; yields the ranking it may use.

        Settled to what the route's cost grew by, whether the walk ends well or not: a stream that fails
        after speaking some sentences has had them billed.
        """
        if not ranking.kept:
            raise self.no_route(operation, ranking)
        tenant: Tenant = ctx.tenant
        if tenant.monthly_budget_usd is None:
            yield ranking
            return
        reservation, ranking = await self._reserve(
            tenant.name, tenant.monthly_budget_usd, operation, ranking, ctx, 0.0, characters
        )
        spent_before = route.cost_usd
        try:
            yield ranking
        finally:
            await asyncio.shield(self._budgets.settle(reservation, route.cost_usd - spent_before))

    def record_failure(
        self,
        route: RouteInfo,
        provider: Provider,
        operation: Operation,
        exc: ProviderError,
        started: float,
        characters: int,
        estimate: Decimal,
        delivered: Usage | None = None,
    ) -> None:
        """A failed piece of a walk the caller drives. ``delivered``: what of it reached the caller before
        it broke off; the vendor did that work, so ``estimate`` may be billed, as for a timeout."""
        self._failed(route, provider, operation, exc, started, 0.0, characters, estimate, delivered)

    def record_success(
        self,
        route: RouteInfo,
        provider: Provider,
        operation: Operation,
        usage: Usage,
        started: float,
        characters: int,
    ) -> None:
        self._succeeded(route, provider, operation, usage, started, 0.0, characters)

    def record_cancelled(
        self,
        route: RouteInfo,
        provider: Provider,
        operation: Operation,
        started: float,
        estimate: Decimal,
        delivered: Usage | None = None,
    ) -> None:
        _record(
            route,
            provider,
            operation,
            CANCELLED,
            "cancelled before the provider answered",
            started,
            Decimal(0),
            delivered or Usage(),
            possibly_billed=estimate,
        )

    def price(self, provider: Provider, usage: Usage) -> Decimal:
        """What ``usage`` costs at ``provider``'s prices in the price book."""
        return self._prices.cost(provider.name, provider.model, provider.capabilities.locality, usage)

    def no_route(self, operation: Operation, ranking: Ranking) -> Exception:
        """The error for a ranking that kept nobody: loading, out of budget, or excluded by the policy."""
        relevant = [
            r for r in ranking.rejected if operation in self._catalogue.get(r.name).capabilities.operations
        ]
        if relevant and all(r.rule == "not_ready" for r in relevant):
            return NotReady(f"the {operation.value} engines are still loading; retry shortly")
        pin = ranking.context.routing.provider if ranking.context is not None else ""
        if pin and all(r.name != pin for r in ranking.rejected):
            # A typo or an unconfigured vendor: the per-provider "pinned elsewhere" reasons would hide that.
            able = sorted(r.name for r in relevant) or sorted(r.name for r in ranking.rejected)
            return NoRoute(
                f"no provider named {clip(pin)!r} is configured; "
                f"providers that can {operation.value}: {', '.join(able) or 'none'}"
            )
        # A candidate is judged on the budget only once it passed every other rule: money alone stops it,
        # whatever excluded the others (a policy's lists, a missing feature).
        budget = next((r for r in relevant if r.rule == "budget"), None)
        if budget is not None:
            return BudgetExhausted(
                f"monthly budget exhausted: {budget.name}: {budget.reason}", self._budgets.renews_in_s()
            )
        return NoRoute(
            f"no provider can {operation.value} this request under policy {ranking.policy!r}",
            tuple(Rejection(r.name, r.reason) for r in ranking.rejected),
        )


def attempt_timeout_s(remaining_s: float, provider_timeout_s: float | None, share: float) -> float:
    """How long one attempt may take: its share of the remaining deadline, within the provider's timeout.

    A sliver of the deadline is always kept back, so the attempt's own timeout, not the caller's deadline,
    ends a hang: the walk then records the timeout against the provider and still answers in time.
    """
    limit = min(remaining_s * share, remaining_s - min(_WRAP_UP_S, remaining_s * _WRAP_UP_SHARE))
    if provider_timeout_s is not None:
        limit = min(limit, provider_timeout_s)
    return max(limit, 0.001)


def _record(
    route: RouteInfo,
    provider: Provider,
    operation: Operation,
    outcome: str,
    error: str,
    started: float,
    cost: Decimal,
    usage: Usage,
    *,
    possibly_billed: Decimal | None = None,
) -> AttemptRecord:
    """Append the attempt to the route. ``possibly_billed``: its billing is unknown (cancelled, timeout)."""
    attempt = AttemptRecord(
        provider=provider.name,
        model=provider.model,
        operation=operation,
        outcome=outcome,
        error=error,
        latency_ms=(time.perf_counter() - started) * 1000.0,
        cost_usd=cost,
        locality=provider.capabilities.locality,
        usage=usage,
        billing_unknown=possibly_billed is not None,
        possibly_billed_usd=possibly_billed or Decimal(0),
    )
    route.attempts.append(attempt)
    return attempt
