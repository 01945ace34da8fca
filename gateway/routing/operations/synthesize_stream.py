"""StreamSynthesize: the text spoken sentence by sentence, each piece encoded and sent as it comes.

The request is checked, identified for the cache and ranked exactly as Synthesize's (the same plug
prepares it, so a streamed and a unary synthesis share cache entries). The walk differs from
:meth:`Attempts.run` in one way: a provider speaks a run of sentences, not one call. Before the first
chunk has gone out, a failed provider is replaced by the next candidate as usual. After it, the next
candidate takes over from the start of the sentence that was interrupted (a provider that streams within a
sentence may have sent part of it, which is then spoken again), and that first chunk carries
``voice_may_change``; with the policy's ``fallback_mid_stream: false`` the stream ends UNAVAILABLE instead.
Each provider's run leaves its attempt records: the sentences it spoke whole as ``ok``; the sentence it
was on when it failed as the failure, with the audio of it that went out, and the sentence's price as
possibly billed when the vendor had begun speaking it (a vendor bills the characters it was sent).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, cast

from gateway.cache import codec
from gateway.core.audio.encoder import Encoder, output_rate
from gateway.core.domain import RouteInfo, SpeechChunk, SynthesizeRequest
from gateway.core.errors import (
    AllAttemptsFailed,
    DeadlineExceeded,
    InvalidInput,
    ProviderError,
    ProviderInputError,
    ProviderTimeout,
    Recovering,
    overloaded_if_all_busy,
)
from gateway.core.provider_types import Operation, Speech, SynthesizeOptions, Usage
from gateway.core.text import sentence_spans
from gateway.routing.attempts import attempt_timeout_s
from gateway.routing.pipeline import StreamJob
from providers.base import Provider, StreamingSynthesizer, Synthesizer

if TYPE_CHECKING:
    from gateway.health.book import HealthBook
    from gateway.routing.attempts import Attempts
    from gateway.routing.catalogue import Catalogue
    from gateway.routing.operations.synthesize import SynthesizePlug
    from gateway.routing.pipeline import Step

_OP = Operation.SYNTHESIZE


class SynthesizeStreamPlug:
    operation = _OP

    def __init__(
        self, synthesize: SynthesizePlug, attempts: Attempts, catalogue: Catalogue, health: HealthBook
    ) -> None:
        self._synthesize = synthesize
        self._attempts = attempts
        self._catalogue = catalogue
        self._health = health

    async def prepare(self, request: SynthesizeRequest) -> StreamJob[SpeechChunk]:
        job = await self._synthesize.prepare(request)
        run = _SpeechRun(self, request)
        return StreamJob(
            identity=job.identity,
            pieces=run.pieces,
            last=run.last,
            payload=run.payload,
            replay=run.replay,
            characters=job.characters,
        )


class _SpeechRun:
    """One stream: its sentences, where it has got to, its encoder and what it has sent."""

    def __init__(self, plug: SynthesizeStreamPlug, request: SynthesizeRequest) -> None:
        self._plug = plug
        self._request = request
        self._spans = sentence_spans(request.text)
        self._next = 0  # the first sentence not yet wholly spoken
        self._encoder: Encoder | None = None
        self._sent: list[bytes] = []
        self._sequence = 0
        self._voice = ""
        self._failed_over = False
        self._tail = b""

    # -- the pipeline's hooks -------------------------------------------------------------------------

    async def pieces(self, step: Step) -> AsyncIterator[SpeechChunk]:
        route = step.scope.route
        characters = sum(end - start for start, end in self._spans)
        try:
            async with self._plug._attempts.reserved(
                _OP, step.ranking, route, step.ctx, characters
            ) as ranking:
                errors: list[ProviderError] = []
                attempted = 0
                for index, kept in enumerate(ranking.kept):
                    if attempted >= ranking.max_attempts:
                        break
                    provider = self._plug._catalogue.get(kept.name)
                    if not self._plug._health.try_acquire(provider.name):
                        continue  # half-open, another request is its probe
                    attempted += 1
                    may_follow = attempted < ranking.max_attempts and index + 1 < len(ranking.kept)
                    share = ranking.attempt_share if may_follow else 1.0
                    try:
                        async for chunk in self._run(provider, step, share):
                            yield chunk
                    except ProviderError as exc:
                        if isinstance(exc, ProviderInputError):
                            raise InvalidInput(str(exc)) from exc
                        errors.append(exc)
                        if not exc.retryable:
                            break
                        if self._sequence and not step.policy.fallback_mid_stream:
                            break  # audio has gone out and the policy wants one voice: end it
                        continue
                    self._tail = await asyncio.to_thread(self._flush)
                    return
                raise _walk_failed(errors)
        finally:
            if self._encoder is not None and not self._tail:
                self._encoder.close()

    def last(self, route: RouteInfo) -> SpeechChunk:
        encoder = self._encoder
        assert encoder is not None, "a stream that spoke nothing ends with an error, not a last chunk"
        return SpeechChunk(
            audio=self._tail,
            sequence=self._sequence,
            start_s=encoder.duration_s,
            duration_s=0.0,
            text_start=0,
            text_end=0,
            mime_type=encoder.mime_type,
            sample_rate=encoder.sample_rate,
            voice=self._voice,
            characters=sum(a.usage.characters for a in route.attempts if a.outcome == "ok"),
            route=route,
        )

    def payload(self) -> bytes | None:
        """The whole stream as Synthesize would cache it; none when a fallback spoke part of it (its lesser
        result is recomputed, as a unary fallback's is not served under the quality objective)."""
        if self._failed_over or self._encoder is None:
            return None
        audio = b"".join(self._sent) + self._tail
        if self._encoder.format.value == "wav":
            audio = _close_wav(audio)
        return codec.encode_speech(
            codec.SpeechPayload(
                audio,
                self._encoder.mime_type,
                self._encoder.sample_rate,
                self._encoder.duration_s,
                self._voice,
            )
        )

    def replay(self, payload: bytes, route: RouteInfo) -> SpeechChunk:
        speech = codec.decode_speech(payload)
        start, end = (self._spans[0][0], self._spans[-1][1]) if self._spans else (0, 0)
        return SpeechChunk(
            audio=speech.audio,
            sequence=0,
            start_s=0.0,
            duration_s=speech.duration_s,
            text_start=start,
            text_end=end,
            mime_type=speech.mime_type,
            sample_rate=speech.sample_rate,
            voice=speech.voice,
            route=route,
        )

    # -- one provider's run of sentences --------------------------------------------------------------

    async def _run(self, provider: Provider, step: Step, share: float) -> AsyncIterator[SpeechChunk]:
        """The provider's run from the first sentence not yet spoken, leaving its attempt records: the
        sentences it spoke whole as ``ok``, and the sentence it was on when it failed or the caller left
        apart (with what of it went out, and its price as possibly billed once the vendor began it)."""
        attempts, route = self._plug._attempts, step.scope.route
        started = time.perf_counter()
        spoken = Usage()  # whole sentences only: a vendor bills a sentence's characters, not its pieces
        failover = self._sequence > 0
        options = SynthesizeOptions(voice=self._request.voice, speed=self._request.speed)
        while self._next < len(self._spans):
            start, end = self._spans[self._next]
            sentence_started = time.perf_counter()
            delivered = Usage()
            try:
                remaining = step.ctx.remaining_s()
                if remaining <= 0:
                    raise ProviderTimeout(provider.name, "the request deadline passed before this sentence")
                limit = attempt_timeout_s(remaining, provider.capabilities.timeout_s, share)
                async for speech in _speech(provider, self._request.text[start:end], options, limit):
                    delivered += speech.usage
                    chunk = await asyncio.to_thread(self._encode, speech, start, end, failover)
                    failover = False
                    yield chunk
            except ProviderError as exc:
                if spoken != Usage():
                    attempts.record_success(route, provider, _OP, spoken, started, spoken.characters)
                attempts.record_failure(
                    route,
                    provider,
                    _OP,
                    exc,
                    sentence_started,
                    end - start,
                    attempts.price(provider, Usage(characters=end - start)),
                    delivered,
                )
                if self._sequence:
                    self._failed_over = True
                raise
            except (asyncio.CancelledError, GeneratorExit):
                # The caller left (or the deadline cancelled the stream): the sentence under way may be
                # billed.
                if spoken != Usage():
                    attempts.record_success(route, provider, _OP, spoken, started, spoken.characters)
                estimate = attempts.price(provider, Usage(characters=end - start))
                attempts.record_cancelled(route, provider, _OP, sentence_started, estimate, delivered)
                raise
            spoken += delivered
            self._next += 1
        attempts.record_success(route, provider, _OP, spoken, started, spoken.characters)

    def _encode(self, speech: Speech, start: int, end: int, failover: bool) -> SpeechChunk:
        if self._encoder is None:
            rate = output_rate(self._request.format, self._request.sample_rate, speech.sample_rate)
            self._encoder = Encoder(self._request.format, rate)
        encoder = self._encoder
        before = encoder.duration_s
        audio = encoder.push(speech.samples, speech.sample_rate)
        self._sent.append(audio)
        self._voice = speech.voice
        chunk = SpeechChunk(
            audio=audio,
            sequence=self._sequence,
            start_s=before,
            duration_s=encoder.duration_s - before,
            text_start=start,
            text_end=end,
            mime_type=encoder.mime_type,
            sample_rate=encoder.sample_rate,
            voice=speech.voice,
            voice_may_change=failover,
        )
        self._sequence += 1
        return chunk

    def _flush(self) -> bytes:
        assert self._encoder is not None
        return self._encoder.flush()


async def _speech(
    provider: Provider, text: str, options: SynthesizeOptions, limit_s: float
) -> AsyncIterator[Speech]:
    """The provider's pieces for one sentence, each awaited within what is left of the sentence's limit."""
    deadline = time.monotonic() + limit_s
    if isinstance(provider, StreamingSynthesizer):
        source = provider.synthesize_stream(text, options, limit_s)
        try:
            while True:
                try:
                    async with asyncio.timeout_at(_loop_time(deadline)):
                        speech = await anext(source)
                except StopAsyncIteration:
                    return
                except TimeoutError as exc:
                    raise ProviderTimeout(
                        provider.name, f"no audio within the sentence's {limit_s:.2f} s"
                    ) from exc
                yield speech
        finally:
            await source.aclose()  # type: ignore[attr-defined]
        return
    try:
        async with asyncio.timeout(limit_s):
            speech = await cast(Synthesizer, provider).synthesize(text, options, limit_s)
    except TimeoutError as exc:
        raise ProviderTimeout(provider.name, f"no answer within the sentence's {limit_s:.2f} s") from exc
    yield speech


def _loop_time(deadline_monotonic: float) -> float:
    return asyncio.get_running_loop().time() + (deadline_monotonic - time.monotonic())


def _walk_failed(errors: list[ProviderError]) -> Exception:
    """The same verdicts as :meth:`Attempts.run`'s walk."""
    if errors and all(isinstance(e, ProviderTimeout) for e in errors):
        return DeadlineExceeded(errors)
    if (overloaded := overloaded_if_all_busy(errors)) is not None:
        return overloaded
    if not errors:
        return Recovering(
            "no provider can synthesize this request right now: every eligible provider's circuit breaker "
            "is half-open with a probe in flight; retry shortly"
        )
    return AllAttemptsFailed(errors)


def _close_wav(audio: bytes) -> bytes:
    """A streamed WAV's open lengths filled in, for the cached whole file."""
    data = len(audio) - 44
    return (
        audio[:4] + (36 + data).to_bytes(4, "little") + audio[8:40] + data.to_bytes(4, "little") + audio[44:]
    )
