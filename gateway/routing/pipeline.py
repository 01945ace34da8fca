"""The one request pipeline every operation and every door runs through.

    authorise → policy → probe → rank → cache → budget → attempts → price → ledger

The door (gRPC, HTTP, CLI) has authorised the caller and built a domain request. The pipeline picks the
policy the tenant may use, lets the operation check and measure its input (probing audio, never decoding
it), ranks the candidates, answers from the cache when it can, and otherwise lets the operation make its
provider calls through :class:`~gateway.routing.attempts.Attempts` (budget, walk, price). Every request,
answered or not, leaves its ledger records, and the reply waits until they are durable.

An operation contributes an :class:`OperationPlug`: how to turn its request into a :class:`Job` (units,
ranking context, cache identity, the provider work) and how to turn the cached payload into its result.
It never repeats the steps.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import TYPE_CHECKING, Protocol, TypeVar

from gateway.cache.results import CachedEntry
from gateway.core.domain import CacheMode, Privacy, RouteInfo, Routing
from gateway.core.errors import DeadlineExceeded, InvalidInput, PermissionDenied, ProviderTimeout, clip
from gateway.core.provider_types import Locality, Operation
from gateway.routing.accounting import RequestScope
from policies.model import ANONYMOUS, Policy, Tenant
from policies.rank import RankContext, Ranking, rank

if TYPE_CHECKING:
    from gateway.cache.results import ResultCache
    from gateway.health.book import HealthBook
    from gateway.money.budget import Budgets
    from gateway.money.pricing import PriceBook
    from gateway.routing.accounting import Accounting
    from gateway.routing.admission import Admission
    from gateway.routing.catalogue import Catalogue
    from gateway.routing.policy_store import PolicyStore

Req_contra = TypeVar("Req_contra", contravariant=True)
Res_co = TypeVar("Res_co", covariant=True)


@dataclass(frozen=True)
class RequestContext:
    request_id: str
    deadline: float  # time.monotonic() by which the request must be answered
    tenant: Tenant = ANONYMOUS

    def remaining_s(self) -> float:
        return self.deadline - time.monotonic()


@dataclass(frozen=True)
class Step:
    """What the provider work of one request may use: its policy, ranking, scope and deadline."""

    policy: Policy
    ranking: Ranking
    scope: RequestScope
    ctx: RequestContext


@dataclass(frozen=True)
class Job:
    """An operation's checked and measured input, and the provider work that answers it."""

    rank_context: RankContext
    # What identifies the result in the cache: a digest of the input itself and every option that changes
    # the output. Never a filename.
    input_digest: str
    cache_options: Mapping[str, object]
    compute: Callable[[Step], Awaitable[bytes]]
    audio_s: float = 0.0
    characters: int = 0


class OperationPlug(Protocol[Req_contra, Res_co]):
    operation: Operation

    async def prepare(self, request: Req_contra) -> Job:
        """Check and measure the request (bounded work: no decode, no provider call)."""
        ...

    def result(self, payload: bytes, job: Job, route: RouteInfo) -> Res_co:
        """The operation's result from its payload (fresh or cached)."""
        ...


class Pipeline:
    def __init__(
        self,
        catalogue: Catalogue,
        prices: PriceBook,
        policies: PolicyStore,
        health: HealthBook,
        budgets: Budgets,
        cache: ResultCache,
        accounting: Accounting,
        admission: Admission,
        ledger_ack_s: float = 5.0,
    ) -> None:
        self._catalogue = catalogue
        self._prices = prices
        self._policies = policies
        self._health = health
        self._budgets = budgets
        self._cache = cache
        self._accounting = accounting
        self._admission = admission
        self._ledger_ack_s = ledger_ack_s

    async def run(
        self,
        plug: OperationPlug[Req_contra, Res_co],
        request: Req_contra,
        routing: Routing,
        ctx: RequestContext,
    ) -> Res_co:
        scope = RequestScope(
            plug.operation,
            ctx.request_id,
            ctx.tenant,
            RouteInfo(request_id=ctx.request_id, policy=""),
            deadline=ctx.deadline,
        )
        # Refused past the cap before anything is recorded: an overload must not grow the ledger either.
        async with self._admission.admit(plug.operation), self._accounted(scope):
            policy = self.policy(routing, ctx.tenant)
            scope.route.policy = policy.name
            job = await plug.prepare(request)
            scope.audio_s, scope.characters = job.audio_s, job.characters
            ranking = await self.rank(job.rank_context, policy, ctx.tenant)
            key = self._cache_key(scope, routing, policy, ranking, job)
            step = Step(policy, ranking, scope, ctx)
            payload, billed_audio_s = await self._cached(scope, key, routing, job, lambda: job.compute(step))
            if billed_audio_s != job.audio_s:
                job = replace(job, audio_s=billed_audio_s)
                scope.audio_s = billed_audio_s
            return plug.result(payload, job, scope.route)

    # -- authorise and policy ---------------------------------------------------------------------------

    def policy(self, routing: Routing, tenant: Tenant) -> Policy:
        policies = self._policies.book.policies
        name = routing.policy or tenant.default_policy
        if name not in policies:
            raise InvalidInput(f"unknown policy {clip(name)!r}; available: {', '.join(sorted(policies))}")
        if not tenant.may_use(name):
            allowed = ", ".join(sorted({tenant.default_policy, *tenant.policies}))
            raise PermissionDenied(
                f"tenant {tenant.name!r} may not use policy {clip(name)!r}; it may use: {allowed}"
            )
        return policies[name]

    # -- rank ---------------------------------------------------------------------------------------------

    async def rank(self, ctx: RankContext, policy: Policy, tenant: Tenant) -> Ranking:
        remaining = await self.remaining_budget(tenant)
        return rank(
            ctx,
            self._catalogue.candidates(),
            policy,
            self._prices.estimate,
            self._health.snapshot(),
            self._health.now(),
            budget_remaining_usd=remaining,
        )

    async def remaining_budget(self, tenant: Tenant) -> Decimal | None:
        if tenant.monthly_budget_usd is None:
            return None
        remaining = await self._budgets.remaining(tenant.name, tenant.monthly_budget_usd)
        self._accounting.budget_seen(tenant.name, remaining)
        return remaining

    # -- cache --------------------------------------------------------------------------------------------

    def _cache_key(
        self, scope: RequestScope, routing: Routing, policy: Policy, ranking: Ranking, job: Job
    ) -> str | None:
        """None when this request must not touch the cache (asked, policy, privacy, or nothing to rank)."""
        if routing.cache is CacheMode.BYPASS or not policy.cache or not ranking.kept:
            return None
        if ranking.privacy is Privacy.LOCAL_ONLY and not policy.cache_local_only:
            return None
        top = self._catalogue.get(ranking.kept[0].name)
        return self._cache.key(
            scope.tenant.name,
            scope.operation.value,
            job.input_digest,
            job.cache_options,
            f"{top.name}/{top.model}",
        )

    async def _cached(
        self,
        scope: RequestScope,
        key: str | None,
        routing: Routing,
        job: Job,
        compute: Callable[[], Awaitable[bytes]],
    ) -> tuple[bytes, float]:
        """The payload, and the audio seconds it was billed for (a hit's are the original call's)."""
        if key is None:
            scope.cache = "bypass"
            return await compute(), job.audio_s
        route = scope.route

        async def entry() -> CachedEntry:
            before = route.cost_usd
            payload = await compute()
            cost = route.cost_usd - before
            return CachedEntry(payload, cost, route.provider, route.model, time.time(), job.audio_s)

        mode = CacheMode.REFRESH if routing.cache is CacheMode.REFRESH else CacheMode.DEFAULT
        try:
            async with asyncio.timeout(max(scope.deadline - time.monotonic(), 0.001)):
                cached, hit = await self._cache.single_flight(key, entry, mode)
        except TimeoutError as exc:
            waited = ProviderTimeout("cache", "the deadline passed waiting for an identical request")
            raise DeadlineExceeded([waited]) from exc
        scope.cache = "hit" if hit else "miss"
        if hit:
            route.cache_hit = True
            route.cost_usd = Decimal(0)
            route.saved_usd = cached.cost_usd
            route.provider, route.model = cached.provider, cached.model
            route.locality = self._locality(cached.provider)
            # Entries from before durations were stored carry none: the probe's measure stands.
            return cached.payload, cached.audio_s or job.audio_s
        return cached.payload, job.audio_s

    def _locality(self, provider: str) -> Locality | None:
        try:
            return self._catalogue.get(provider).capabilities.locality
        except KeyError:
            return None

    # -- ledger -------------------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _accounted(self, scope: RequestScope) -> AsyncIterator[None]:
        try:
            yield
        except asyncio.CancelledError as exc:
            self._accounting.request_done(scope, exc)
            raise
        except BaseException as exc:
            self._accounting.request_done(scope, exc)
            await self._accounting.records_stored(self._ledger_ack_s)
            raise
        self._accounting.request_done(scope, None)
        await self._accounting.records_stored(self._ledger_ack_s)
