"""Synthesize: text in, audio in the requested format out."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, cast

from gateway.cache import codec
from gateway.core.audio.encoder import check_rate, encode_all, output_rate
from gateway.core.domain import RouteInfo, Routing, SynthesizeRequest, SynthesizeResult
from gateway.core.errors import InvalidInput
from gateway.core.provider_types import Operation, Speech, SynthesizeOptions
from gateway.core.text import refuse_control_characters
from gateway.routing.pipeline import Identity, Job, Step
from policies.rank import RankContext
from providers.base import Provider, Synthesizer

if TYPE_CHECKING:
    from gateway.routing.attempts import Attempts


def rank_context(characters: int, voice: str | None, routing: Routing, speed: float = 1.0) -> RankContext:
    features = frozenset({"voices"}) if voice else frozenset()
    return RankContext(
        Operation.SYNTHESIZE, characters=characters, features=features, routing=routing, speed=speed
    )


class SynthesizePlug:
    operation = Operation.SYNTHESIZE

    def __init__(self, attempts: Attempts, max_text_chars: int) -> None:
        self._attempts = attempts
        self._max_text_chars = max_text_chars

    def identify(self, request: SynthesizeRequest) -> Identity | None:
        return None  # checking the text is the whole of prepare: nothing to save

    async def prepare(self, request: SynthesizeRequest) -> Job:
        # Before stripping, so the position named is the one the caller sent.
        refuse_control_characters(request.text, "text")
        text = request.text.strip()
        if not text:
            raise InvalidInput("text is empty: give the words to speak")
        if len(text) > self._max_text_chars:
            raise InvalidInput(
                f"text is {len(text)} characters; the limit is {self._max_text_chars}: split it"
            )
        check_rate(request.format, request.sample_rate)
        options = SynthesizeOptions(voice=request.voice, speed=request.speed)

        async def call(provider: Provider, timeout_s: float) -> Speech:
            return await cast(Synthesizer, provider).synthesize(text, options, timeout_s)

        async def compute(step: Step) -> bytes:
            speech, _ = await self._attempts.run(
                Operation.SYNTHESIZE, step.ranking, step.scope.route, step.ctx, call, characters=len(text)
            )
            return codec.encode_speech(await _encoded(speech, request))

        return Job(
            identity=Identity(
                content=text,
                cache_options={
                    "voice": request.voice,
                    "format": request.format.value,
                    "sample_rate": request.sample_rate,
                    "speed": request.speed,
                },
                rank_context=lambda _: rank_context(len(text), request.voice, request.routing, request.speed),
            ),
            compute=compute,
            characters=len(text),
        )

    def result(self, payload: bytes, audio_s: float, route: RouteInfo) -> SynthesizeResult:
        speech = codec.decode_speech(payload)
        return SynthesizeResult(
            audio=speech.audio,
            mime_type=speech.mime_type,
            sample_rate=speech.sample_rate,
            duration_s=speech.duration_s,
            voice=speech.voice,
            route=route,
        )


async def _encoded(speech: Speech, request: SynthesizeRequest) -> codec.SpeechPayload:
    rate = output_rate(request.format, request.sample_rate, speech.sample_rate)
    body, encoder = await asyncio.to_thread(
        encode_all, speech.samples, speech.sample_rate, request.format, rate
    )
    return codec.SpeechPayload(body, encoder.mime_type, rate, encoder.duration_s, speech.voice)
