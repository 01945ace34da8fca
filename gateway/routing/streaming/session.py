"""One live transcription stream: rank once, open a provider stream, pump audio in and results out.

It reuses the pipeline's pieces rather than its steps (a stream has no single input to probe or cache):
the tenant's policy (:meth:`Pipeline.policy`), the ranking with the tenant's budget as an input
(:meth:`Pipeline.rank`, with the ``streaming`` feature required), and the accounting scope that leaves
one request record per stream (:meth:`Pipeline.accounted`). Streams are never cached.

- **Admission.** A cap on streams open at once, and one per tenant (``GATEWAY_STREAMS__*``).
- **Metering.** The seconds billed are the seconds of caller audio received. Each provider attempt is
  priced by the price book for the audio it was sent (replays included: the vendor heard them too); one
  that failed, only for the audio its results reached (:func:`billed_audio_s`).
- **Budgets.** A budgeted tenant's stream reserves money in increments (``budget_increment_s`` of audio at
  the current provider's price) before sending audio past what is held. When the budget cannot cover the
  next audio, the provider is asked to flush its finals, they are delivered, and the stream ends with
  RESOURCE_EXHAUSTED. The reservations are settled to the attempts' actual cost at the end.
- **Limits.** The longest stream (``max_duration_s`` of audio) and the longest silence from the caller
  (``max_idle_s`` without audio or KEEPALIVE) end the stream the same way: flush, then RESOURCE_EXHAUSTED.
- **Failover.** The caller's audio since the last final result is kept (at most ``max_replay_s``). When
  the provider raises, stalls (``stall_audio_s`` of audio with sound and as long without one event back,
  or a send that hangs) or ends before the caller did, the next ranked candidate is opened and the kept
  audio is replayed into it; its times are shifted onto the caller's timeline from where the replay starts,
  and a :class:`RouteNotice` with ``changed`` marks the switch. Each provider used leaves an attempt record.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import TYPE_CHECKING

import structlog

from gateway.core.audio.stream import StreamDecoder, pcm_rms
from gateway.core.domain import AttemptRecord, RouteInfo
from gateway.core.errors import (
    AllAttemptsFailed,
    BudgetExhausted,
    GatewayError,
    InvalidInput,
    LimitExceeded,
    Overloaded,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    Recovering,
)
from gateway.core.provider_types import Locality, Operation, Usage, WordTiming
from gateway.core.streaming import PCM_SAMPLE_WIDTH, SpeechEvent, StreamEvent, StreamResult
from gateway.routing.accounting import RequestScope
from gateway.routing.attempts import EXPOSURE, Attempts
from gateway.routing.streaming.types import (
    RouteNotice,
    StreamControl,
    StreamInput,
    StreamOutput,
    StreamStart,
    StreamSummary,
)
from policies.rank import RankContext
from providers.base import StreamingTranscriber

if TYPE_CHECKING:
    from gateway.health.book import HealthBook
    from gateway.money.budget import Budgets, Reservation
    from gateway.money.pricing import PriceBook
    from gateway.routing.accounting import Accounting
    from gateway.routing.catalogue import Catalogue
    from gateway.routing.pipeline import Pipeline, RequestContext
    from gateway.settings import StreamSettings
    from policies.rank import Ranking
    from providers.base import TranscriptionStream

log = structlog.get_logger(__name__)

STREAMING = "streaming"
# Audio quieter than this (RMS of s16 samples) is silence to the stall check: a provider owes no
# event for silence.
_SOUND_RMS = 200.0
# Vendors round their times (to the millisecond, or to a frame): this close to the end is the end.
_SAMPLE_SLACK_S = 0.02
# How long the caller's further messages are read and dropped before a stream that ended early returns.
DRAIN_S = 0.5


class _Gates:
    """Streams open at once: on this gateway, and per tenant."""

    def __init__(self, total: int, per_tenant: int) -> None:
        self._total_cap, self._tenant_cap = total, per_tenant
        self.total = 0
        self.by_tenant: dict[str, int] = {}

    @contextlib.contextmanager
    def admit(self, tenant: str) -> Iterator[None]:
        if self._total_cap and self.total >= self._total_cap:
            raise Overloaded(
                f"the gateway is already running its limit of {self._total_cap} streams; retry shortly", 1.0
            )
        if self._tenant_cap and self.by_tenant.get(tenant, 0) >= self._tenant_cap:
            raise Overloaded(
                f"tenant {tenant!r} already has its limit of {self._tenant_cap} streams open; end one "
                "or retry shortly",
                1.0,
            )
        self.total += 1
        self.by_tenant[tenant] = self.by_tenant.get(tenant, 0) + 1
        try:
            yield
        finally:
            self.total -= 1
            self.by_tenant[tenant] -= 1
            if not self.by_tenant[tenant]:
                del self.by_tenant[tenant]


class StreamService:
    def __init__(
        self,
        pipeline: Pipeline,
        catalogue: Catalogue,
        prices: PriceBook,
        health: HealthBook,
        budgets: Budgets,
        accounting: Accounting,
        settings: StreamSettings,
    ) -> None:
        self.pipeline = pipeline
        self.catalogue = catalogue
        self.prices = prices
        self.health = health
        self.budgets = budgets
        self.accounting = accounting
        self.settings = settings
        self.attempts = Attempts(catalogue, prices, health, budgets, accounting)
        self.gates = _Gates(settings.max_streams, settings.max_streams_per_tenant)

    async def transcribe(
        self, start: StreamStart, inputs: AsyncIterator[StreamInput], ctx: RequestContext
    ) -> AsyncIterator[StreamOutput]:
        """Results and events as they come, then a :class:`StreamSummary`; errors end it with a status."""
        try:
            admitted = self.gates.admit(ctx.tenant.name)
            admitted.__enter__()
        except Overloaded:
            await drain(inputs, DRAIN_S)
            raise
        with contextlib.ExitStack() as stack:
            stack.push(admitted)
            scope = RequestScope(
                Operation.TRANSCRIBE,
                ctx.request_id,
                ctx.tenant,
                RouteInfo(request_id=ctx.request_id, policy=""),
                deadline=ctx.deadline,
            )
            scope.cache = "bypass"
            async with self.pipeline.accounted(scope):
                session = _Session(self, start, scope, ctx)
                async with contextlib.aclosing(session.run(inputs)) as outputs:
                    async for output in outputs:
                        yield output


@dataclass
class _Attempt:
    provider: StreamingTranscriber
    stream: TranscriptionStream
    offset_s: float  # the caller time at which this provider's timeline starts
    started: float
    open_ms: float
    sent_samples: int = 0
    sound_since_event_s: float = 0.0
    # When the provider last said anything (or opened): a file streamed faster than real time owes no
    # result per second of audio, only per second of time.
    quiet_since: float = field(default_factory=time.monotonic)
    closing: bool = False
    over: bool = False  # recorded; its events no longer reach the caller
    pump: asyncio.Task[None] | None = None


class _Done:
    pass


_DONE = _Done()


@dataclass
class _Session:
    service: StreamService
    start: StreamStart
    scope: RequestScope
    ctx: RequestContext
    out: asyncio.Queue[StreamOutput | BaseException | _Done] = field(default_factory=asyncio.Queue)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    current: _Attempt | None = None
    caller_samples: int = 0
    replay: deque[tuple[int, bytes]] = field(default_factory=deque)  # (caller sample index, pcm)
    replay_from: int = 0
    input_done: bool = False
    ending: GatewayError | None = None
    errors: list[ProviderError] = field(default_factory=list)
    opened: int = 0
    next_candidate: int = 0
    reservations: list[Reservation] = field(default_factory=list)
    reserved_usd: Decimal = Decimal(0)
    metered_usd: Decimal = Decimal(0)
    feeder: asyncio.Task[None] | None = None
    abandoned: bool = False  # the stream is over: whatever the caller still sends is dropped

    def __post_init__(self) -> None:
        self.settings = self.service.settings
        self.rate = self.start.config.sample_rate
        self.decoder = StreamDecoder(self.start.encoding, self.rate)
        self.ranking: Ranking | None = None

    # -- the stream's life ----------------------------------------------------------------------------

    async def run(self, inputs: AsyncIterator[StreamInput]) -> AsyncIterator[StreamOutput]:
        service, route = self.service, self.scope.route
        policy = service.pipeline.policy(self.start.routing, self.ctx.tenant)
        route.policy = policy.name
        config = self.start.config
        features = {STREAMING, "word_timestamps"} if config.word_timestamps else {STREAMING}
        context = RankContext(
            Operation.TRANSCRIBE,
            # The stream's length is unknown, and every candidate's stream cost grows in proportion to
            # its audio: costs compare per second, at streaming rates.
            audio_s=1.0,
            language=config.language,
            features=frozenset(features),
            routing=self.start.routing,
            streaming=True,
        )
        self.ranking = await service.pipeline.rank(context, policy, self.ctx.tenant)
        try:
            if not self.ranking.kept:
                raise service.attempts.no_route(Operation.TRANSCRIBE, self.ranking)
            await self._open_next()
        except GatewayError:
            await drain(inputs, DRAIN_S)
            raise
        try:
            assert self.current is not None
            yield self._notice(self.current, changed=False)
            self.feeder = asyncio.create_task(self._feed(inputs))
            while True:
                item = await self.out.get()
                if isinstance(item, _Done):
                    break
                if isinstance(item, BaseException):
                    raise item
                yield item
            if self.current is not None and not self.current.over:
                self._record(self.current, "ok", "")
            route.latency_ms = (time.perf_counter() - self.scope.started) * 1000.0
            yield StreamSummary(route, self.caller_samples / self.rate)
            if self.ending is not None:
                raise self.ending
        finally:
            await self._stop()

    async def _stop(self) -> None:
        """Whatever ended the stream: stop the tasks, drop an unfinished provider stream, settle money."""
        pump = self.current.pump if self.current else None
        if pump is not None:
            pump.cancel()
            await asyncio.gather(pump, return_exceptions=True)
        feeder = self.feeder
        if feeder is not None and not feeder.done():
            # Cancelling a read of grpc's request stream breaks the call, and a caller still writing when
            # the status goes out may be shown INTERNAL instead of it (grpc.aio, grpc/grpc#36066). So the
            # feeder goes on reading and dropping for a moment (a caller that has sent everything gets to
            # half-close), and is then left to end with the call.
            self.abandoned = True
            await asyncio.wait({feeder}, timeout=DRAIN_S)
            feeder.add_done_callback(_retrieve)
        attempt = self.current
        if attempt is not None and not attempt.over:
            await _quietly(attempt.stream.abort(), self.settings.send_timeout_s)
            self._record(attempt, "cancelled", "the stream ended before the provider finished")
        self.scope.audio_s = self.caller_samples / self.rate
        if self.reservations:
            first, *rest = self.reservations
            budgets = self.service.budgets
            await asyncio.shield(budgets.settle(first, self.scope.route.cost_usd))
            for reservation in rest:
                await asyncio.shield(budgets.release(reservation))

    # -- caller side ----------------------------------------------------------------------------------

    async def _feed(self, inputs: AsyncIterator[StreamInput]) -> None:
        stream = aiter(inputs)
        try:
            await self._read(stream)
            if self.ending is None:
                self.decoder.finish()
        except GatewayError as exc:
            await self.out.put(exc)
            self.abandoned = True
            await self._drain(stream)
            return
        try:
            await self._close_input()
        finally:
            if self.ending is not None or self.abandoned:
                self.abandoned = True
                await self._drain(stream)

    async def _drain(self, stream: AsyncIterator[StreamInput]) -> None:
        """Read and drop what the caller still sends, so the call ends with our status (see _stop)."""
        with contextlib.suppress(Exception):
            async for _ in stream:
                pass

    async def _close_input(self) -> None:
        failed: tuple[_Attempt, ProviderError] | None = None
        if self.abandoned:
            return
        async with self.lock:
            self.input_done = True
            attempt = self.current
            if attempt is not None:
                attempt.closing = True
                failed = await self._call(attempt, attempt.stream.close())
        if failed is not None:
            await self._fail(*failed)

    async def _read(self, stream: AsyncIterator[StreamInput]) -> None:
        settings = self.settings
        while True:
            try:
                async with asyncio.timeout(settings.max_idle_s):
                    item = await anext(stream)
            except StopAsyncIteration:
                return
            except TimeoutError:
                self.ending = LimitExceeded(
                    f"no audio or KEEPALIVE for {settings.max_idle_s:g} s (GATEWAY_STREAMS__MAX_IDLE_S); "
                    "send KEEPALIVE while the caller is silent"
                )
                return
            if self.abandoned:
                continue
            if isinstance(item, StreamStart):
                raise InvalidInput("config sent twice: only the first message of a stream may carry config")
            if isinstance(item, StreamControl):
                await self._control(item)
                continue
            if len(item) > settings.max_chunk_bytes:
                raise LimitExceeded(
                    f"an audio message of {len(item)} bytes is over the {settings.max_chunk_bytes}-byte "
                    "limit (GATEWAY_STREAMS__MAX_CHUNK_BYTES); send smaller chunks"
                )
            pcm = self.decoder.decode(item)
            room = round(settings.max_duration_s * self.rate) - self.caller_samples
            if len(pcm) // PCM_SAMPLE_WIDTH > room:
                pcm = pcm[: max(room, 0) * PCM_SAMPLE_WIDTH]
                self.ending = LimitExceeded(
                    f"the stream reached its limit of {settings.max_duration_s:g} s of audio "
                    "(GATEWAY_STREAMS__MAX_DURATION_S)"
                )
            if pcm:
                await self._audio(pcm)
            if self.ending is not None:
                return

    async def _control(self, control: StreamControl) -> None:
        failed = None
        async with self.lock:
            attempt = self.current
            if attempt is not None:
                action = attempt.stream.finalize() if control is StreamControl.FINALIZE else None
                if action is None:
                    action = attempt.stream.keepalive()
                failed = await self._call(attempt, action)
        if failed is not None:
            await self._fail(*failed)

    async def _audio(self, pcm: bytes) -> None:
        samples = len(pcm) // PCM_SAMPLE_WIDTH
        seconds = samples / self.rate
        failed = None
        async with self.lock:
            attempt = self.current
            assert attempt is not None
            try:
                await self._meter(attempt, seconds)
            except LimitExceeded as exc:
                self.ending = exc
                return
            self.replay.append((self.caller_samples, pcm))
            self.caller_samples += samples
            self._bound_replay()
            if pcm_rms(pcm) >= _SOUND_RMS:
                attempt.sound_since_event_s += seconds
            failed = await self._send(attempt, pcm)
        if failed is not None:
            await self._fail(*failed)

    def _bound_replay(self) -> None:
        limit = round(self.settings.max_replay_s * self.rate)
        while self.replay and self.caller_samples - self.replay[0][0] > limit:
            start, pcm = self.replay.popleft()
            self.replay_from = start + len(pcm) // PCM_SAMPLE_WIDTH

    def _trim_replay(self, until_s: float) -> None:
        """A final result covers the caller's audio up to ``until_s``: no replay needs it any more."""
        until = min(round(until_s * self.rate), self.caller_samples)
        while self.replay:
            start, pcm = self.replay[0]
            end = start + len(pcm) // PCM_SAMPLE_WIDTH
            if end <= until:
                self.replay.popleft()
                continue
            if start < until:
                self.replay[0] = (until, pcm[(until - start) * PCM_SAMPLE_WIDTH :])
            break
        self.replay_from = max(self.replay_from, until)

    # -- money ----------------------------------------------------------------------------------------

    def _per_second(self, provider: StreamingTranscriber) -> Decimal:
        locality = provider.capabilities.locality
        if locality is not Locality.LOCAL:
            # A vendor bills a second of streamed audio at its streaming rate.
            return self.service.prices.stream_cost(
                provider.name, provider.model, locality, Usage(audio_seconds=1.0)
            )
        info = self.service.catalogue.info(provider.name)
        # A local engine streaming in real time holds its compute for at most the audio's length.
        return self.service.prices.worst_case(info, RankContext(Operation.TRANSCRIBE, audio_s=1.0), 1.0)

    async def _meter(self, attempt: _Attempt, seconds: float) -> None:
        """Hold the budget for ``seconds`` more audio at ``attempt``'s provider, reserving as it runs."""
        tenant = self.ctx.tenant
        limit = tenant.monthly_budget_usd
        if limit is None:
            return
        cost = self._per_second(attempt.provider) * Decimal(repr(seconds))
        needed = self.metered_usd + cost - self.reserved_usd
        if needed > 0:
            budgets = self.service.budgets
            increment = self._per_second(attempt.provider) * Decimal(repr(self.settings.budget_increment_s))
            left = await budgets.remaining(tenant.name, limit)
            amount = min(max(increment, needed), left)
            if amount < needed:
                raise BudgetExhausted(
                    f"monthly budget exhausted: tenant {tenant.name!r} has ${left:.6f} left, and the next "
                    f"audio costs ${needed:.6f} at {attempt.provider.name}",
                    budgets.renews_in_s(),
                )
            self.reservations.append(await budgets.reserve(tenant.name, limit, amount))
            self.reserved_usd += amount
        self.metered_usd += cost

    # -- provider side --------------------------------------------------------------------------------

    async def _open_next(self) -> None:
        """Open the next ranked candidate and replay the kept audio into it; raise when none is left."""
        assert self.ranking is not None
        service, ranking = self.service, self.ranking
        config = self.start.config
        timeout = self.settings.open_timeout_s
        while self.next_candidate < len(ranking.kept) and self.opened < ranking.max_attempts:
            kept = ranking.kept[self.next_candidate]
            self.next_candidate += 1
            provider = service.catalogue.get(kept.name)
            if not isinstance(provider, StreamingTranscriber) or not service.health.try_acquire(kept.name):
                continue
            self.opened += 1
            started = time.perf_counter()
            try:
                try:
                    async with asyncio.timeout(timeout):
                        stream = await provider.open_stream(config, timeout)
                except TimeoutError as exc:
                    raise ProviderTimeout(
                        provider.name, f"the stream did not open within {timeout:g} s"
                    ) from exc
            except ProviderError as exc:
                self._record_open_failure(provider, exc, started)
                if not exc.retryable:
                    break
                continue
            attempt = _Attempt(
                provider,
                stream,
                self.replay_from / self.rate,
                started,
                (time.perf_counter() - started) * 1000,
            )
            failure = await self._replay_into(attempt)
            if failure is not None:
                await _quietly(stream.abort(), self.settings.send_timeout_s)
                self._record(attempt, failure.kind, str(failure), failure)
                self.errors.append(failure)
                if not failure.retryable:
                    break
                continue
            self.current = attempt
            attempt.pump = asyncio.create_task(self._pump(attempt))
            return
        if not self.errors:
            raise Recovering(
                "no provider can stream this request right now: every eligible provider's circuit breaker "
                "is half-open with a probe in flight; retry shortly"
            )
        raise AllAttemptsFailed(list(self.errors))

    async def _replay_into(self, attempt: _Attempt) -> ProviderError | None:
        for _, pcm in list(self.replay):
            await self._meter(attempt, len(pcm) / PCM_SAMPLE_WIDTH / self.rate)
            if (failed := await self._send(attempt, pcm)) is not None:
                return failed[1]
        return None

    async def _send(self, attempt: _Attempt, pcm: bytes) -> tuple[_Attempt, ProviderError] | None:
        failed = await self._call(attempt, attempt.stream.send(pcm))
        if failed is None:
            attempt.sent_samples += len(pcm) // PCM_SAMPLE_WIDTH
        return failed

    async def _call(self, attempt: _Attempt, action: object) -> tuple[_Attempt, ProviderError] | None:
        """One call into a provider stream, bounded; its failure returned for failover outside the lock."""
        timeout = self.settings.send_timeout_s
        try:
            async with asyncio.timeout(timeout):
                await action  # type: ignore[misc]
        except TimeoutError:
            return attempt, ProviderTimeout(attempt.provider.name, f"a send took longer than {timeout:g} s")
        except ProviderError as exc:
            return attempt, exc
        return None

    async def _pump(self, attempt: _Attempt) -> None:
        watchdog = asyncio.create_task(self._watch(attempt))
        try:
            await self._events(attempt)
        finally:
            watchdog.cancel()

    async def _watch(self, attempt: _Attempt) -> None:
        """Fail over from a provider that has heard ``stall_audio_s`` of sound and said nothing for as long.

        Both, because a file streamed faster than real time owes no result per second of audio, and a live
        caller's silence owes none at all.
        """
        limit = self.settings.stall_audio_s
        while not attempt.over:
            await asyncio.sleep(min(limit / 4, 1.0))
            quiet_s = time.monotonic() - attempt.quiet_since
            if attempt.sound_since_event_s > limit and quiet_s > limit:
                stalled = ProviderTimeout(
                    attempt.provider.name,
                    f"no result for {quiet_s:.1f} s after {attempt.sound_since_event_s:.1f} s of audio with "
                    "sound in it",
                )
                # Shielded: the failover this starts ends this attempt's pump, which cancels this task.
                await asyncio.shield(self._fail(attempt, stalled))
                return

    async def _events(self, attempt: _Attempt) -> None:
        """The provider's events, shifted onto the caller's timeline, until it ends or fails."""
        name = attempt.provider.name
        try:
            async for event in attempt.stream.events():
                if attempt.over:
                    return
                attempt.sound_since_event_s, attempt.quiet_since = 0.0, time.monotonic()
                shifted = _shift(event, attempt.offset_s)
                if isinstance(shifted, StreamResult) and shifted.is_final:
                    self._trim_replay(shifted.end_s)
                await self.out.put(shifted)
                if (
                    self.start.config.single_utterance
                    and isinstance(shifted, StreamResult)
                    and shifted.is_final
                ):
                    await self._end_after_first_utterance(attempt)
        except ProviderError as exc:
            await self._fail(attempt, exc)
            return
        if attempt.over:
            return
        if attempt.closing:
            await self.out.put(_DONE)
        else:
            await self._fail(attempt, ProviderUnavailable(name, "the provider ended the stream early"))

    async def _end_after_first_utterance(self, attempt: _Attempt) -> None:
        self.abandoned = True  # the caller's further audio is not for this stream
        async with self.lock:
            if not attempt.closing:
                attempt.closing = True
                await _quietly(attempt.stream.close(), self.settings.send_timeout_s)

    async def _fail(self, attempt: _Attempt, exc: ProviderError) -> None:
        """The provider failed mid-stream: record it, open the next candidate, replay, carry on."""
        async with self.lock:
            if attempt.over or attempt is not self.current:
                return
            log.warning("stream.provider_failed", provider=attempt.provider.name, kind=exc.kind)
            self._record(attempt, exc.kind, str(exc), exc)
            self.errors.append(exc)
            await _quietly(attempt.stream.abort(), self.settings.send_timeout_s)
            if not exc.retryable:
                await self.out.put(AllAttemptsFailed(list(self.errors)))
                return
            try:
                await self._open_next()
            except GatewayError as error:
                await self.out.put(error)
                return
            new = self.current
            assert new is not None and new is not attempt
            await self.out.put(self._notice(new, changed=True))
            if self.input_done:
                new.closing = True
                failed = await self._call(new, new.stream.close())
            else:
                failed = None
        if failed is not None:
            await self._fail(*failed)

    # -- records --------------------------------------------------------------------------------------

    def _notice(self, attempt: _Attempt, *, changed: bool) -> RouteNotice:
        p = attempt.provider
        return RouteNotice(p.name, p.model, p.capabilities.locality, changed, attempt.offset_s)

    def _record(self, attempt: _Attempt, outcome: str, error: str, exc: ProviderError | None = None) -> None:
        """The attempt's record, billed by the rule in :func:`billed_audio_s`."""
        attempt.over = True
        service, route, provider = self.service, self.scope.route, attempt.provider
        locality = provider.capabilities.locality
        sent_s = attempt.sent_samples / self.rate
        try:
            compute = attempt.stream.usage().compute_seconds
            acknowledged_s = attempt.stream.acknowledged_s()
        except Exception:  # a provider's broken bookkeeping must not lose the attempt's record
            compute, acknowledged_s = 0.0, sent_s
        billed_s = billed_audio_s(locality, outcome, sent_s, acknowledged_s)
        usage = Usage(audio_seconds=billed_s, compute_seconds=compute)
        cost = service.prices.stream_cost(provider.name, provider.model, locality, usage)
        # Audio sent to a vendor that failed before showing it heard it: it may be on the vendor's bill
        # or not, so it is kept apart from the cost, as for any call whose billing is unknown.
        unacknowledged = Usage(audio_seconds=sent_s - billed_s)
        possibly_billed = (
            service.prices.stream_cost(provider.name, provider.model, locality, unacknowledged)
            if billed_s < sent_s
            else None
        )
        latency_ms = (time.perf_counter() - attempt.started) * 1000.0
        route.attempts.append(
            AttemptRecord(
                provider=provider.name,
                model=provider.model,
                operation=Operation.TRANSCRIBE,
                outcome=outcome,
                error=error,
                latency_ms=latency_ms,
                cost_usd=cost,
                locality=locality,
                usage=usage,
                billing_unknown=possibly_billed is not None,
                possibly_billed_usd=possibly_billed or Decimal(0),
            )
        )
        route.cost_usd += cost
        if usage.audio_seconds and (route.locality is None or EXPOSURE[locality] > EXPOSURE[route.locality]):
            route.locality = locality
        if outcome == "ok":
            route.provider, route.model = provider.name, provider.model
        if outcome != "cancelled":
            # A stream's length is the caller's, not the provider's latency: learn from the opening only.
            service.health.record(provider.name, ok=exc is None, latency_ms=attempt.open_ms)
        service.accounting.attempt_done(provider.name, Operation.TRANSCRIBE, latency_ms)

    def _record_open_failure(
        self, provider: StreamingTranscriber, exc: ProviderError, started: float
    ) -> None:
        latency_ms = (time.perf_counter() - started) * 1000.0
        self.scope.route.attempts.append(
            AttemptRecord(
                provider=provider.name,
                model=provider.model,
                operation=Operation.TRANSCRIBE,
                outcome=exc.kind,
                error=str(exc),
                latency_ms=latency_ms,
                cost_usd=Decimal(0),
                locality=provider.capabilities.locality,
                usage=Usage(),
            )
        )
        self.errors.append(exc)
        self.service.health.record(provider.name, ok=False, latency_ms=latency_ms)
        self.service.accounting.attempt_done(provider.name, Operation.TRANSCRIBE, latency_ms)


def billed_audio_s(locality: Locality, outcome: str, sent_s: float, acknowledged_s: float) -> float:
    """The seconds of audio an attempt's record bills.

    - An attempt that finished (``ok``), or that the gateway ended while its vendor was serving
      (``cancelled``), is billed all the audio it was sent: the vendor heard it.
    - A vendor attempt that failed (dropped, stalled, errored) is billed the audio it showed it had
      heard: up to the furthest point its results, VAD events and acknowledgements reached
      (``TranscriptionStream.acknowledged_s``). Audio sent after that, up to when the gateway saw the
      failure, may have gone into a dead socket or a stalled server: it is recorded as possibly billed
      (``billing_unknown``), never as cost.
    - A local engine is billed the compute it held, which it measures, not the audio; its audio is all
      it was sent.
    """
    if (
        outcome in ("ok", "cancelled")
        or locality is Locality.LOCAL
        or acknowledged_s >= sent_s - _SAMPLE_SLACK_S
    ):
        return sent_s
    return max(acknowledged_s, 0.0)


async def drain(stream: AsyncIterator[object], timeout_s: float) -> None:
    """Read and drop the caller's messages for at most ``timeout_s`` before the call ends with an error.

    A grpc.aio client still writing when the status arrives may be shown INTERNAL instead of the status
    (grpc/grpc#36066); a caller that has already sent everything half-closes within this time.
    """
    with contextlib.suppress(Exception):
        async with asyncio.timeout(timeout_s):
            async for _ in stream:
                pass


def _retrieve(task: asyncio.Task[None]) -> None:
    if not task.cancelled():
        task.exception()


def _shift(event: StreamEvent, offset_s: float) -> StreamEvent:
    if not offset_s:
        return event
    if isinstance(event, SpeechEvent):
        return replace(event, at_s=event.at_s + offset_s)
    words = tuple(
        WordTiming(w.text, w.start_s + offset_s, w.end_s + offset_s, w.confidence) for w in event.words
    )
    return replace(event, start_s=event.start_s + offset_s, end_s=event.end_s + offset_s, words=words)


async def _quietly(action: object, timeout_s: float) -> None:
    """A courtesy call into a provider stream that is being dropped: its failure changes nothing."""
    with contextlib.suppress(Exception):
        async with asyncio.timeout(timeout_s):
            await action  # type: ignore[misc]
