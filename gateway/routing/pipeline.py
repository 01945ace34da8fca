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
import functools
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

from gateway.cache.codec import PayloadError
from gateway.cache.results import CachedEntry, digest_bytes, digest_text
from gateway.core.domain import CacheMode, Objective, Privacy, RouteInfo, Routing
from gateway.core.errors import InvalidInput, PermissionDenied, clip
from gateway.core.provider_types import Locality, Operation
from gateway.routing.accounting import RequestScope
from policies.model import ANONYMOUS, Policy, Tenant, stricter_privacy
from policies.rank import RankContext, Ranking, locality_allowed, policy_exclusion, rank

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
class Identity:
    """What identifies a request's result in the cache: a digest of the input itself and every option that
    changes the output (never a filename), and how to rank the request once its audio length is known."""

    content: bytes | str
    cache_options: Mapping[str, object]
    # From the audio seconds, which only the probe, or a cached entry's billing, knows.
    rank_context: Callable[[float], RankContext]

    @functools.cached_property
    def input_digest(self) -> str:
        """Computed once, and only for a request that uses the cache (hashing audio is not free)."""
        return digest_bytes(self.content) if isinstance(self.content, bytes) else digest_text(self.content)


@dataclass(frozen=True)
class Job:
    """An operation's checked and measured input, and the provider work that answers it."""

    identity: Identity
    compute: Callable[[Step], Awaitable[bytes]]
    audio_s: float = 0.0
    characters: int = 0

    @property
    def rank_context(self) -> RankContext:
        return self.identity.rank_context(self.audio_s)


Item = TypeVar("Item")


@dataclass(frozen=True)
class StreamJob(Generic[Item]):
    """A streamed operation's checked input and its provider work, piece by piece."""

    identity: Identity
    # The provider work: items as they are produced (the walk, failover and attempt records are its own).
    pieces: Callable[[Step], AsyncIterator[Item]]
    # The final message, from what the pieces held back and the finished route.
    last: Callable[[RouteInfo], Item]
    # What a finished stream leaves in the cache (the operation's payload), or None to leave nothing.
    payload: Callable[[], bytes | None]
    # A cached payload as the one message of a hit, with the route; PayloadError if unreadable.
    replay: Callable[[bytes, RouteInfo], Item]
    characters: int = 0


class OperationPlug(Protocol[Req_contra, Res_co]):
    operation: Operation

    def identify(self, request: Req_contra) -> Identity | None:
        """The cache identity when it comes cheap, before the input is probed (inline audio), else None.

        Only a request whose input already passed ``prepare`` once can have an entry under it, so a hit
        found this way needs no probe.
        """
        ...

    async def prepare(self, request: Req_contra) -> Job:
        """Check and measure the request (bounded work: no decode, no provider call)."""
        ...

    def result(self, payload: bytes, audio_s: float, route: RouteInfo) -> Res_co:
        """The operation's result from its payload (fresh or cached); PayloadError if it cannot read it."""
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
        async with self._admission.admit(plug.operation), self.accounted(scope):
            policy = self.policy(routing, ctx.tenant)
            scope.route.policy = policy.name
            privacy = stricter_privacy(policy.privacy, routing.privacy)
            mode = routing.cache
            identity = None if mode is CacheMode.BYPASS else plug.identify(request)
            key = self._cache_key(scope, mode, policy, privacy, identity)
            if key is not None and mode is CacheMode.DEFAULT:
                # A hit is answered before the probe: the digest finds it, its billing ranks it.
                served = await self._early_hit(plug, scope, key, identity, policy)
                if served is not None:
                    return served
                read_first = False
            else:
                read_first = True
            job = await plug.prepare(request)
            scope.audio_s, scope.characters = job.audio_s, job.characters
            if identity is None:
                key = self._cache_key(scope, mode, policy, privacy, job.identity)
            ranking = await self.rank(job.rank_context, policy, ctx.tenant)
            if not ranking.kept:
                key = None
            step = Step(policy, ranking, scope, ctx)
            return await self._cached(
                plug, scope, key, mode, job, lambda: job.compute(step), ranking, policy, read_first
            )

    async def stream(
        self,
        operation: Operation,
        prepare: Callable[[], Awaitable[StreamJob[Item]]],
        routing: Routing,
        ctx: RequestContext,
    ) -> AsyncIterator[Item]:
        """:meth:`run` for a streamed reply: the same policy, ranking, cache, admission and ledger.

        A cache hit is the whole cached result at once. Otherwise each piece goes out as the provider work
        produces it, and a finished stream is cached like any result. The last message (with the route)
        leaves only once the ledger holds the request, as a unary reply does.
        """
        scope = RequestScope(
            operation,
            ctx.request_id,
            ctx.tenant,
            RouteInfo(request_id=ctx.request_id, policy=""),
            ctx.deadline,
        )
        async with self._admission.admit(operation), self.accounted(scope):
            policy = self.policy(routing, ctx.tenant)
            scope.route.policy = policy.name
            privacy = stricter_privacy(policy.privacy, routing.privacy)
            job = await prepare()
            scope.characters = job.characters
            key = self._cache_key(scope, routing.cache, policy, privacy, job.identity)
            ranking = await self.rank(job.identity.rank_context(0.0), policy, ctx.tenant)
            final = None
            if key is not None and ranking.kept and routing.cache is CacheMode.DEFAULT:
                entry = await self._cache.get(key)
                if entry is not None and self.serves(entry, ranking, policy):
                    with contextlib.suppress(PayloadError):  # unreadable: computed afresh and overwritten
                        final = job.replay(entry.payload, scope.route)
                        self._mark_hit(scope, entry, entry.audio_s)
            if final is None:
                scope.cache = "bypass" if key is None else "miss"
                async for item in job.pieces(Step(policy, ranking, scope, ctx)):
                    yield item
                final = job.last(scope.route)
                payload = job.payload() if key is not None else None
                if key is not None and payload is not None:
                    await self._cache.put(key, self._entry(scope.route, payload, Decimal(0), 0.0))
        yield final

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
        self,
        scope: RequestScope,
        mode: CacheMode,
        policy: Policy,
        privacy: Privacy,
        identity: Identity | None,
    ) -> str | None:
        """None when this request must not touch the cache (asked, policy, privacy) or has no identity yet."""
        if identity is None or mode is CacheMode.BYPASS or not policy.cache:
            return None
        if privacy is Privacy.LOCAL_ONLY and not policy.cache_local_only:
            return None
        return self._cache.key(
            scope.tenant.name, scope.operation.value, identity.input_digest, identity.cache_options
        )

    async def _early_hit(
        self,
        plug: OperationPlug[Req_contra, Res_co],
        scope: RequestScope,
        key: str,
        identity: Identity,
        policy: Policy,
    ) -> Res_co | None:
        entry = await self._cache.get(key)
        if entry is None:
            return None
        ranking = await self.rank(identity.rank_context(entry.audio_s), policy, scope.tenant)
        if not self.serves(entry, ranking, policy):
            return None
        try:
            return self._from_hit(plug, scope, entry)
        except PayloadError:
            return None  # the flight after the probe re-reads it, and overwrites it

    def serves(self, entry: CachedEntry, ranking: Ranking, policy: Policy) -> bool:
        """Whether this request's own ranking would accept the result's producers.

        The answering provider must be one the ranking keeps; every provider whose output went into the
        result (Understand's transcriber too) must pass the policy's rules on where audio may go; and the
        least private step's locality must be allowed. Under the ``quality`` objective only a producer
        ranked as good as the best kept candidate will do: a fallback's lesser result is recomputed, not
        served for the whole TTL.
        """
        kept = {k.name: k for k in ranking.kept}
        answered = kept.get(entry.provider)
        if answered is None:
            return False
        if entry.locality and not locality_allowed(ranking.privacy, Locality(entry.locality)):
            return False
        for name in entry.producers:
            try:
                caps = self._catalogue.get(name).capabilities
            except KeyError:
                return False  # no longer configured: nothing vouches for where its audio went
            if policy_exclusion(name, caps, policy, ranking.privacy) is not None:
                return False
        return ranking.objective is not Objective.QUALITY or answered.score <= ranking.kept[0].score

    async def _cached(
        self,
        plug: OperationPlug[Req_contra, Res_co],
        scope: RequestScope,
        key: str | None,
        mode: CacheMode,
        job: Job,
        compute: Callable[[], Awaitable[bytes]],
        ranking: Ranking,
        policy: Policy,
        read_first: bool,
    ) -> Res_co:
        route = scope.route
        if key is None:
            scope.cache = "bypass"
            return plug.result(await compute(), job.audio_s, route)

        async def entry() -> CachedEntry:
            before = route.cost_usd
            payload = await compute()
            return self._entry(route, payload, before, job.audio_s)

        flight_mode = CacheMode.REFRESH if mode is CacheMode.REFRESH else CacheMode.DEFAULT
        cached, hit = await self._cache.single_flight(
            key,
            entry,
            flight_mode,
            accept=lambda e: self.serves(e, ranking, policy),
            deadline=scope.deadline,
            read_first=read_first,
        )
        if not hit:
            scope.cache = "miss"
            return plug.result(cached.payload, job.audio_s, route)
        try:
            return self._from_hit(plug, scope, cached)
        except PayloadError:
            # Written by a deploy with another payload format: compute afresh and overwrite it.
            scope.cache = "miss"
            route.cache_hit, route.saved_usd, route.locality = False, Decimal(0), None
            fresh, _ = await self._cache.single_flight(key, entry, CacheMode.REFRESH, deadline=scope.deadline)
            return plug.result(fresh.payload, job.audio_s, route)

    @staticmethod
    def _entry(route: RouteInfo, payload: bytes, cost_before: Decimal, audio_s: float) -> CachedEntry:
        return CachedEntry(
            payload,
            route.cost_usd - cost_before,
            route.provider,
            route.model,
            time.time(),
            audio_s,
            locality=route.locality.value if route.locality else "",
            producers=tuple(dict.fromkeys(a.provider for a in route.attempts if a.outcome == "ok")),
        )

    def _from_hit(
        self, plug: OperationPlug[Req_contra, Res_co], scope: RequestScope, cached: CachedEntry
    ) -> Res_co:
        """The result of a hit, reported as the original call billed it; PayloadError if unreadable."""
        # Entries from before durations were stored carry none: the probe's measure stands.
        audio_s = cached.audio_s or scope.audio_s
        result = plug.result(cached.payload, audio_s, scope.route)
        self._mark_hit(scope, cached, audio_s)
        return result

    def _mark_hit(self, scope: RequestScope, cached: CachedEntry, audio_s: float) -> None:
        route = scope.route
        scope.cache = "hit"
        scope.audio_s = audio_s
        route.cache_hit = True
        route.cost_usd = Decimal(0)
        route.saved_usd = cached.cost_usd
        route.provider, route.model = cached.provider, cached.model
        route.locality = Locality(cached.locality) if cached.locality else self._locality(cached.provider)

    def _locality(self, provider: str) -> Locality | None:
        try:
            return self._catalogue.get(provider).capabilities.locality
        except KeyError:
            return None

    # -- ledger -------------------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def accounted(self, scope: RequestScope) -> AsyncIterator[None]:
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
