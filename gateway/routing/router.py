"""The core of a request: decode, rank candidates, walk the ranking, price the result.

The router owns retries and fallback (one attempt per candidate, within the
deadline and the policy's attempt cap). Providers make single attempts;
policies are pure functions; money comes from the price book.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Protocol, TypeVar

import structlog

from gateway.cache import codec as result_codec
from gateway.cache.results import CachedEntry, ResultCache, digest_bytes, digest_text
from gateway.core import audio
from gateway.core.domain import (
    AttemptRecord,
    AudioInput,
    CacheMode,
    CallKind,
    ExplainedCandidate,
    ExplainRequest,
    Explanation,
    OutputFormat,
    Privacy,
    RouteInfo,
    Routing,
    SynthesizeRequest,
    SynthesizeResult,
    TranscribeRequest,
    TranscribeResult,
    UnderstandRequest,
    UnderstandResult,
)
from gateway.core.errors import (
    AllAttemptsFailed,
    DeadlineExceeded,
    InvalidInput,
    LimitExceeded,
    NoRoute,
    NotReady,
    PermissionDenied,
    ProviderBusy,
    ProviderError,
    ProviderInputError,
    ProviderTimeout,
    Rejection,
    overloaded_if_all_busy,
)
from gateway.core.provider_types import (
    AnswerOptions,
    Locality,
    Operation,
    Speech,
    SynthesizeOptions,
    TranscribeOptions,
    Transcript,
    Usage,
)
from gateway.health.book import BreakerState, HealthBook
from gateway.money.budget import Budgets
from gateway.money.pricing import PriceBook
from gateway.routing.accounting import Accounting, RequestScope
from gateway.routing.admission import Admission
from gateway.routing.catalogue import Catalogue
from gateway.routing.policy_store import PolicyStore
from gateway.settings import LimitSettings
from policies.model import ANONYMOUS, Policy, Tenant
from policies.rank import RankContext, Ranking, rank
from providers.base import Answerer, Provider, Synthesizer, Transcriber

log = structlog.get_logger(__name__)

_LOCALITY_EXPOSURE = {Locality.LOCAL: 0, Locality.ON_PREM: 1, Locality.CLOUD: 2}


class _Metered(Protocol):
    usage: Usage


R = TypeVar("R", bound=_Metered)


@dataclass(frozen=True)
class RequestContext:
    request_id: str
    deadline: float  # time.monotonic() by which the request must be answered
    tenant: Tenant = ANONYMOUS

    def remaining_s(self) -> float:
        return self.deadline - time.monotonic()


class Router:
    def __init__(
        self,
        catalogue: Catalogue,
        prices: PriceBook,
        limits: LimitSettings,
        default_answer_tokens: int,
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
        self._limits = limits
        self._audio_limits = audio.AudioLimits(limits.max_audio_bytes, limits.max_audio_s)
        self._default_answer_tokens = default_answer_tokens
        self._policies = policies
        self._health = health
        self._budgets = budgets
        self._cache = cache
        self._accounting = accounting
        self._admission = admission
        self._ledger_ack_s = ledger_ack_s

    # -- operations -------------------------------------------------------

    async def transcribe(self, req: TranscribeRequest, ctx: RequestContext) -> TranscribeResult:
        scope = self._scope(Operation.TRANSCRIBE, ctx)
        async with self._admission.admit(Operation.TRANSCRIBE), self._accounted(scope):
            policy = self._policy(req.routing, ctx.tenant)
            scope.route.policy = policy.name
            decoded = await self._decode(req.audio)
            scope.audio_s = decoded.duration_s
            options = req.options
            ranking = await self._rank(
                _transcribe_context(
                    decoded.duration_s, options.language, options.word_timestamps, req.routing
                ),
                policy,
                ctx.tenant,
            )

            async def compute() -> bytes:
                transcript = await self._transcribe(decoded, options, ranking, scope.route, ctx)
                return result_codec.encode_transcript(transcript)

            key = self._cache_key(
                scope,
                req.routing,
                policy,
                ranking,
                digest_bytes(decoded.original),
                {
                    "language": options.language,
                    "word_timestamps": options.word_timestamps,
                    "prompt": options.prompt,
                },
            )
            transcript = result_codec.decode_transcript(await self._cached(scope, key, req.routing, compute))
            return TranscribeResult(
                text=transcript.text,
                language=transcript.language,
                duration_s=decoded.duration_s,
                segments=transcript.segments,
                route=scope.route,
            )

    async def synthesize(self, req: SynthesizeRequest, ctx: RequestContext) -> SynthesizeResult:
        scope = self._scope(Operation.SYNTHESIZE, ctx)
        async with self._admission.admit(Operation.SYNTHESIZE), self._accounted(scope):
            text = req.text.strip()
            if not text:
                raise InvalidInput("text is empty: give the words to speak")
            if len(text) > self._limits.max_text_chars:
                raise InvalidInput(
                    f"text is {len(text)} characters; the limit is {self._limits.max_text_chars}: split it"
                )
            scope.characters = len(text)
            policy = self._policy(req.routing, ctx.tenant)
            scope.route.policy = policy.name
            ranking = await self._rank(
                _synthesize_context(len(text), req.voice, req.routing), policy, ctx.tenant
            )
            options = SynthesizeOptions(voice=req.voice, speed=req.speed)

            async def call(provider: Provider, timeout_s: float) -> _Metered:
                assert isinstance(provider, Synthesizer)
                return await provider.synthesize(text, options, timeout_s)

            async def compute() -> bytes:
                speech, _ = await self._attempts(
                    Operation.SYNTHESIZE, ranking, scope.route, ctx, call, characters=len(text)
                )
                return result_codec.encode_speech(await self._encode_speech(speech, req))

            key = self._cache_key(
                scope,
                req.routing,
                policy,
                ranking,
                digest_text(text),
                {
                    "voice": req.voice,
                    "format": req.format.value,
                    "sample_rate": req.sample_rate,
                    "speed": req.speed,
                },
            )
            speech = result_codec.decode_speech(await self._cached(scope, key, req.routing, compute))
            return SynthesizeResult(
                audio=speech.audio,
                mime_type=speech.mime_type,
                sample_rate=speech.sample_rate,
                duration_s=speech.duration_s,
                voice=speech.voice,
                route=scope.route,
            )

    async def understand(self, req: UnderstandRequest, ctx: RequestContext) -> UnderstandResult:
        scope = self._scope(Operation.UNDERSTAND, ctx)
        async with self._admission.admit(Operation.UNDERSTAND), self._accounted(scope):
            question = req.question.strip()
            if not question:
                raise InvalidInput("question is empty: ask something about the recording")
            if len(question) > self._limits.max_question_chars:
                raise InvalidInput(
                    f"question is {len(question)} characters; the limit is {self._limits.max_question_chars}"
                )
            policy = self._policy(req.routing, ctx.tenant)
            scope.route.policy = policy.name
            decoded = await self._decode(req.audio)
            scope.audio_s = decoded.duration_s
            ranking = await self._rank(
                _understand_context(decoded.duration_s, req.language, req.routing), policy, ctx.tenant
            )
            max_tokens = req.max_answer_tokens or self._default_answer_tokens

            async def compute() -> bytes:
                answer, transcript = await self._answer(
                    decoded, question, req, max_tokens, policy, ranking, scope, ctx
                )
                return result_codec.encode_answer(result_codec.AnswerPayload(answer, transcript))

            key = self._cache_key(
                scope,
                req.routing,
                policy,
                ranking,
                digest_bytes(decoded.original),
                {"question": question, "language": req.language, "max_answer_tokens": max_tokens},
            )
            answer = result_codec.decode_answer(await self._cached(scope, key, req.routing, compute))
            return UnderstandResult(
                answer=answer.answer,
                transcript=answer.transcript,
                duration_s=decoded.duration_s,
                route=scope.route,
            )

    async def _answer(
        self,
        decoded: audio.DecodedAudio,
        question: str,
        req: UnderstandRequest,
        max_tokens: int,
        policy: Policy,
        ranking: Ranking,
        scope: RequestScope,
        ctx: RequestContext,
    ) -> tuple[str, str]:
        """Ask the ranked answerers; text models get a transcript routed under the same policy first."""
        route = scope.route
        options = AnswerOptions(max_tokens=max_tokens, language=req.language)
        transcript: Transcript | None = None
        # The transcription step routes on its own: the pin names the answerer.
        transcribe_routing = replace(req.routing, provider=None)

        async def transcribed() -> Transcript:
            step = await self._rank(
                _transcribe_context(decoded.duration_s, req.language, False, transcribe_routing),
                policy,
                ctx.tenant,
            )
            return await self._transcribe(decoded, TranscribeOptions(language=req.language), step, route, ctx)

        async def call(provider: Provider, timeout_s: float) -> _Metered:
            nonlocal transcript
            assert isinstance(provider, Answerer)
            if provider.listens:
                return await provider.answer(question, None, decoded, options, timeout_s)
            if transcript is None:
                transcript = await transcribed()
            return await provider.answer(
                question, transcript.text, None, options, max(ctx.remaining_s(), 0.001)
            )

        if ranking.kept and not self._answerer(ranking.kept[0].name).listens:
            # Transcribe before the answer attempt so each attempt's latency is its own.
            transcript = await transcribed()
        answer, answerer = await self._attempts(
            Operation.UNDERSTAND, ranking, route, ctx, call, audio_s=decoded.duration_s
        )
        return answer.text, transcript.text if transcript is not None and not answerer.listens else ""

    async def _encode_speech(self, speech: Speech, req: SynthesizeRequest) -> result_codec.SpeechPayload:
        rate = req.sample_rate or speech.sample_rate
        samples = await asyncio.to_thread(audio.resample_pcm16, speech.samples, speech.sample_rate, rate)
        if req.format is OutputFormat.PCM16:
            body, mime = audio.encode_pcm16(samples), f"audio/L16;rate={rate}"
        else:
            body, mime = audio.encode_wav(samples, rate), "audio/wav"
        return result_codec.SpeechPayload(body, mime, rate, len(samples) / rate, speech.voice)

    # -- cache and accounting ---------------------------------------------

    def _scope(self, operation: Operation, ctx: RequestContext) -> RequestScope:
        route = RouteInfo(request_id=ctx.request_id, policy="")
        return RequestScope(operation, ctx.request_id, ctx.tenant, route, deadline=ctx.deadline)

    def _locality(self, provider: str) -> Locality | None:
        try:
            return self._catalogue.get(provider).capabilities.locality
        except KeyError:
            return None

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

    def _cache_key(
        self,
        scope: RequestScope,
        routing: Routing,
        policy: Policy,
        ranking: Ranking,
        input_digest: str,
        options: dict[str, object],
    ) -> str | None:
        """None when this request must not touch the cache (asked, policy, privacy, or nothing to rank)."""
        if routing.cache is CacheMode.BYPASS or not policy.cache or not ranking.kept:
            return None
        if ranking.privacy is Privacy.LOCAL_ONLY and not policy.cache_local_only:
            return None
        top = self._catalogue.get(ranking.kept[0].name)
        return self._cache.key(
            scope.tenant.name, scope.operation.value, input_digest, options, f"{top.name}/{top.model}"
        )

    async def _cached(
        self, scope: RequestScope, key: str | None, routing: Routing, compute: Callable[[], Awaitable[bytes]]
    ) -> bytes:
        if key is None:
            scope.cache = "bypass"
            return await compute()
        route = scope.route

        async def entry() -> CachedEntry:
            before = route.cost_usd
            payload = await compute()
            return CachedEntry(payload, route.cost_usd - before, route.provider, route.model, time.time())

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
        return cached.payload

    async def explain(self, req: ExplainRequest, ctx: RequestContext) -> Explanation:
        """The ranking a request would get, with every number behind it; nothing is executed."""
        async with self._admission.admit(CallKind.EXPLAIN):
            return await self._explain(req, ctx)

    async def _explain(self, req: ExplainRequest, ctx: RequestContext) -> Explanation:
        policy = self._policy(req.routing, ctx.tenant)
        audio_s = req.audio_s or 0.0
        if audio_s < 0 or (req.characters or 0) < 0:
            raise InvalidInput("audio_duration_s and characters must not be negative")
        if req.audio is not None:
            audio_s = (await self._decode(req.audio)).duration_s
        characters = req.characters or len((req.text or "").strip())
        if req.operation is Operation.TRANSCRIBE:
            rank_ctx = _transcribe_context(audio_s, req.language, req.word_timestamps, req.routing)
        elif req.operation is Operation.SYNTHESIZE:
            rank_ctx = _synthesize_context(characters, req.voice, req.routing)
        else:
            rank_ctx = _understand_context(audio_s, req.language, req.routing)
        ranking = await self._rank(rank_ctx, policy, ctx.tenant)
        transcription: tuple[ExplainedCandidate, ...] = ()
        if (
            req.operation is Operation.UNDERSTAND
            and ranking.kept
            and not self._answerer(ranking.kept[0].name).listens
        ):
            step = _transcribe_context(audio_s, req.language, False, replace(req.routing, provider=None))
            transcription = self._explained(await self._rank(step, policy, ctx.tenant))
        return Explanation(
            tenant=ctx.tenant.name,
            policy=policy.name,
            privacy=ranking.privacy,
            objective=ranking.objective,
            max_attempts=ranking.max_attempts,
            audio_s=audio_s,
            characters=characters,
            candidates=self._explained(ranking),
            transcription_candidates=transcription,
            remaining_budget_usd=await self._remaining_budget(ctx.tenant),
        )

    def _explained(self, ranking: Ranking) -> tuple[ExplainedCandidate, ...]:
        snapshot = self._health.snapshot()
        estimates = {c.name: c for c in ranking.kept}
        rows: list[ExplainedCandidate] = []
        order = [k.name for k in ranking.kept] + [r.name for r in ranking.rejected]
        reasons = {r.name: r.reason for r in ranking.rejected}
        for position, name in enumerate(order, start=1):
            provider = self._catalogue.get(name)
            kept = estimates.get(name)
            health = snapshot.get(name)
            prior = provider.capabilities.latency_prior
            rows.append(
                ExplainedCandidate(
                    provider=name,
                    model=provider.model,
                    locality=provider.capabilities.locality,
                    eligible=kept is not None,
                    rejected_reason=reasons.get(name, ""),
                    rank=position if kept is not None else 0,
                    estimated_cost_usd=kept.estimated_cost_usd if kept else Decimal(0),
                    estimated_latency_ms=kept.estimated_latency_ms if kept else 0.0,
                    score=kept.score if kept else 0.0,
                    breaker_state=health.state.value if health else BreakerState.CLOSED.value,
                    latency_learned=snapshot.latency_model(name, prior) is not prior,
                )
            )
        return tuple(rows)

    # -- steps ------------------------------------------------------------

    async def _transcribe(
        self,
        decoded: audio.DecodedAudio,
        options: TranscribeOptions,
        ranking: Ranking,
        route: RouteInfo,
        ctx: RequestContext,
    ) -> Transcript:
        async def call(provider: Provider, timeout_s: float) -> _Metered:
            assert isinstance(provider, Transcriber)
            return await provider.transcribe(decoded, options, timeout_s)

        transcript, _ = await self._attempts(
            Operation.TRANSCRIBE, ranking, route, ctx, call, audio_s=decoded.duration_s
        )
        return transcript

    async def _attempts(
        self,
        operation: Operation,
        ranking: Ranking,
        route: RouteInfo,
        ctx: RequestContext,
        call: Callable[[Provider, float], Awaitable[R]],
        audio_s: float = 0.0,
        characters: int = 0,
    ) -> tuple[R, Provider]:
        """Walk the ranking under a budget reservation: settled to the actual cost, released on failure."""
        if not ranking.kept:
            raise self._no_route(operation, ranking)
        tenant = ctx.tenant
        if tenant.monthly_budget_usd is None:
            return await self._walk(operation, ranking, route, ctx, call, audio_s, characters)
        # The dearest candidate the walk may reach: a fallback must not overspend either.
        estimate = max(k.estimated_cost_usd for k in ranking.kept[: ranking.max_attempts])
        reservation = await self._budgets.reserve(tenant.name, tenant.monthly_budget_usd, estimate)
        spent_before = route.cost_usd
        try:
            result = await self._walk(operation, ranking, route, ctx, call, audio_s, characters)
        except BaseException:
            # Failed attempts are not billed; shielded so a cancelled call still frees its reservation.
            await asyncio.shield(self._budgets.release(reservation))
            raise
        await asyncio.shield(self._budgets.settle(reservation, route.cost_usd - spent_before))
        return result

    async def _walk(
        self,
        operation: Operation,
        ranking: Ranking,
        route: RouteInfo,
        ctx: RequestContext,
        call: Callable[[Provider, float], Awaitable[R]],
        audio_s: float,
        characters: int,
    ) -> tuple[R, Provider]:
        """One attempt per candidate until one succeeds or a failure is final."""
        errors: list[ProviderError] = []
        attempted = 0
        for kept in ranking.kept:
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
            started = time.perf_counter()
            try:
                result = await call(provider, remaining)
            except ProviderError as exc:
                attempt = self._record(
                    route, provider, operation, exc.kind, str(exc), started, Decimal(0), Usage()
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
                log.warning(
                    "attempt.failed", provider=provider.name, operation=operation.value, kind=exc.kind
                )
                if isinstance(exc, ProviderInputError):
                    raise InvalidInput(str(exc)) from exc
                errors.append(exc)
                if not exc.retryable:
                    # A refusal (bad credentials, a request the vendor rejects) is not
                    # something another attempt fixes quietly: surface it.
                    break
                continue
            cost = self._prices.cost(
                provider.name, provider.model, provider.capabilities.locality, result.usage
            )
            attempt = self._record(route, provider, operation, "ok", "", started, cost, result.usage)
            self._health.record(
                provider.name, ok=True, latency_ms=attempt.latency_ms, audio_s=audio_s, characters=characters
            )
            self._accounting.attempt_done(provider.name, operation, attempt.latency_ms)
            route.cost_usd += cost
            route.provider, route.model = provider.name, provider.model
            if route.locality is None or (
                _LOCALITY_EXPOSURE[provider.capabilities.locality] > _LOCALITY_EXPOSURE[route.locality]
            ):
                route.locality = provider.capabilities.locality
            return result, provider
        if errors and all(isinstance(e, ProviderTimeout) for e in errors):
            raise DeadlineExceeded(errors)
        if (overloaded := overloaded_if_all_busy(errors)) is not None:
            raise overloaded
        if not errors:
            raise NoRoute(
                f"no provider can {operation.value} this request right now: every eligible provider's "
                "circuit breaker is half-open with a probe in flight"
            )
        raise AllAttemptsFailed(errors)

    # -- helpers ----------------------------------------------------------

    def _answerer(self, name: str) -> Answerer:
        provider = self._catalogue.get(name)
        assert isinstance(provider, Answerer)
        return provider

    def _policy(self, routing: Routing, tenant: Tenant) -> Policy:
        policies = self._policies.book.policies
        name = routing.policy or tenant.default_policy
        if name not in policies:
            raise InvalidInput(f"unknown policy {name!r}; available: {', '.join(sorted(policies))}")
        if not tenant.may_use(name):
            allowed = ", ".join(sorted({tenant.default_policy, *tenant.policies}))
            raise PermissionDenied(
                f"tenant {tenant.name!r} may not use policy {name!r}; it may use: {allowed}"
            )
        return policies[name]

    async def _rank(self, ctx: RankContext, policy: Policy, tenant: Tenant) -> Ranking:
        remaining = await self._remaining_budget(tenant)
        return rank(
            ctx,
            self._catalogue.candidates(),
            policy,
            self._prices.estimate,
            self._health.snapshot(),
            time.time(),
            budget_remaining_usd=remaining,
        )

    async def _remaining_budget(self, tenant: Tenant) -> Decimal | None:
        if tenant.monthly_budget_usd is None:
            return None
        remaining = await self._budgets.remaining(tenant.name, tenant.monthly_budget_usd)
        self._accounting.budget_seen(tenant.name, remaining)
        return remaining

    def _no_route(self, operation: Operation, ranking: Ranking) -> Exception:
        relevant = [
            r for r in ranking.rejected if operation in self._catalogue.get(r.name).capabilities.operations
        ]
        if relevant and all(r.rule == "not_ready" for r in relevant):
            return NotReady(f"the {operation.value} engines are still loading; retry shortly")
        if (
            relevant
            and any(r.rule == "budget" for r in relevant)
            and all(r.rule in ("budget", "not_ready", "breaker") for r in relevant)
        ):
            budget = next(r for r in relevant if r.rule == "budget")
            return LimitExceeded(f"monthly budget exhausted: {budget.name}: {budget.reason}")
        return NoRoute(
            f"no provider can {operation.value} this request under policy {ranking.policy!r}",
            tuple(Rejection(r.name, r.reason) for r in ranking.rejected),
        )

    async def _decode(self, source: AudioInput) -> audio.DecodedAudio:
        if source.uri is not None:
            data = await asyncio.to_thread(
                audio.read_uri, source.uri, self._limits.uri_roots, self._limits.max_audio_bytes
            )
        elif source.content is not None:
            data = source.content
        else:
            raise InvalidInput("audio is missing: set audio.content (or audio.uri)")
        return await asyncio.to_thread(audio.decode, data, source.mime_type, self._audio_limits)

    @staticmethod
    def _record(
        route: RouteInfo,
        provider: Provider,
        operation: Operation,
        outcome: str,
        error: str,
        started: float,
        cost: Decimal,
        usage: Usage,
    ) -> AttemptRecord:
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
        )
        route.attempts.append(attempt)
        return attempt


def _transcribe_context(
    audio_s: float, language: str | None, word_timestamps: bool, routing: Routing
) -> RankContext:
    features = frozenset({"word_timestamps"}) if word_timestamps else frozenset()
    return RankContext(
        Operation.TRANSCRIBE, audio_s=audio_s, language=language, features=features, routing=routing
    )


def _synthesize_context(characters: int, voice: str | None, routing: Routing) -> RankContext:
    features = frozenset({"voices"}) if voice else frozenset()
    return RankContext(Operation.SYNTHESIZE, characters=characters, features=features, routing=routing)


def _understand_context(audio_s: float, language: str | None, routing: Routing) -> RankContext:
    return RankContext(Operation.UNDERSTAND, audio_s=audio_s, language=language, routing=routing)
