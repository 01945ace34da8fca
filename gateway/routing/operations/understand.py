"""Understand: a question about a recording.

An answerer that ``listens`` gets the audio. A text model gets a transcript: the transcription is routed
first under the same policy (the provider pin names the answerer, so it is lifted for that step), then the
answerer is asked. RouteInfo lists both steps' attempts; the cost is their sum.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import TYPE_CHECKING, cast

from gateway.cache import codec
from gateway.core.domain import Routing, UnderstandRequest, UnderstandResult
from gateway.core.errors import InvalidInput
from gateway.core.provider_types import Answer, AnswerOptions, Operation, TranscribeOptions, Transcript
from gateway.core.text import refuse_control_characters
from gateway.routing.operations import transcribe as transcribe_op
from gateway.routing.pipeline import Identity, Job, Step
from policies.rank import RankContext
from providers.base import Answerer, Provider

if TYPE_CHECKING:
    from gateway.core.audio import Recording
    from gateway.core.domain import RouteInfo
    from gateway.routing.attempts import Attempts
    from gateway.routing.catalogue import Catalogue
    from gateway.routing.operations.transcribe import AudioOpener
    from gateway.routing.pipeline import Pipeline


def rank_context(
    audio_s: float, language: str | None, routing: Routing, max_answer_tokens: int = 0, question: str = ""
) -> RankContext:
    return RankContext(
        Operation.UNDERSTAND,
        audio_s=audio_s,
        language=language,
        routing=routing,
        max_answer_tokens=max_answer_tokens,
        question_bytes=len(question.encode(errors="surrogatepass")),
    )


def transcription_routing(routing: Routing) -> Routing:
    """The routing of the transcription step: the pin names the answerer, not the transcriber."""
    return replace(routing, provider=None)


def answerer(catalogue: Catalogue, name: str) -> Answerer:
    return cast(Answerer, catalogue.get(name))


class UnderstandPlug:
    operation = Operation.UNDERSTAND

    def __init__(
        self,
        open_audio: AudioOpener,
        pipeline: Pipeline,
        attempts: Attempts,
        catalogue: Catalogue,
        default_answer_tokens: int,
        max_question_chars: int,
    ) -> None:
        self._open_audio = open_audio
        self._pipeline = pipeline
        self._attempts = attempts
        self._catalogue = catalogue
        self._default_answer_tokens = default_answer_tokens
        self._max_question_chars = max_question_chars

    def identify(self, request: UnderstandRequest) -> Identity | None:
        content = request.audio.content
        return None if content is None else self._identity(request, self._question(request), content)

    async def prepare(self, request: UnderstandRequest) -> Job:
        question = self._question(request)
        recording = await self._open_audio(request.audio)
        max_tokens = self._max_tokens(request)

        async def compute(step: Step) -> bytes:
            answer, transcript = await self._answer(recording, question, request, max_tokens, step)
            return codec.encode_answer(codec.AnswerPayload(answer, transcript))

        return Job(
            identity=self._identity(request, question, recording.original),
            compute=compute,
            audio_s=recording.duration_s,
        )

    def result(self, payload: bytes, audio_s: float, route: RouteInfo) -> UnderstandResult:
        answer = codec.decode_answer(payload)
        return UnderstandResult(
            answer=answer.answer, transcript=answer.transcript, duration_s=audio_s, route=route
        )

    def _question(self, request: UnderstandRequest) -> str:
        # Before stripping, so the position named is the one the caller sent.
        refuse_control_characters(request.question, "question")
        question = request.question.strip()
        if not question:
            raise InvalidInput("question is empty: ask something about the recording")
        if len(question) > self._max_question_chars:
            raise InvalidInput(
                f"question is {len(question)} characters; the limit is {self._max_question_chars}"
            )
        return question

    def _max_tokens(self, request: UnderstandRequest) -> int:
        return request.max_answer_tokens or self._default_answer_tokens

    def _identity(self, request: UnderstandRequest, question: str, audio: bytes) -> Identity:
        max_tokens = self._max_tokens(request)
        return Identity(
            content=audio,
            cache_options={
                "question": question,
                "language": request.language,
                "max_answer_tokens": max_tokens,
            },
            rank_context=lambda audio_s: rank_context(
                audio_s, request.language, request.routing, max_tokens, question
            ),
        )

    async def _answer(
        self, recording: Recording, question: str, request: UnderstandRequest, max_tokens: int, step: Step
    ) -> tuple[str, str]:
        """Ask the ranked answerers; text models get a transcript routed under the same policy first."""
        ctx, route = step.ctx, step.scope.route
        options = AnswerOptions(max_tokens=max_tokens, language=request.language)
        transcript: Transcript | None = None

        async def transcribed() -> Transcript:
            ranking = await self._pipeline.rank(
                transcribe_op.rank_context(
                    recording.duration_s, request.language, False, transcription_routing(request.routing)
                ),
                step.policy,
                ctx.tenant,
            )
            return await transcribe_op.transcribe(
                self._attempts, recording, TranscribeOptions(language=request.language), ranking, route, ctx
            )

        async def call(provider: Provider, timeout_s: float) -> Answer:
            nonlocal transcript
            answering = cast(Answerer, provider)
            if answering.listens:
                return await answering.answer(question, None, recording, options, timeout_s)
            ends = time.monotonic() + timeout_s
            if transcript is None:
                # A fallback text model: the transcription it needs is part of its attempt's time.
                transcript = await transcribed()
            return await answering.answer(
                question, transcript.text, None, options, max(ends - time.monotonic(), 0.001)
            )

        kept = step.ranking.kept
        if kept and not answerer(self._catalogue, kept[0].name).listens:
            # Transcribe before the answer attempt so each attempt's latency is its own.
            transcript = await transcribed()
        answer, chosen = await self._attempts.run(
            Operation.UNDERSTAND, step.ranking, route, ctx, call, audio_s=recording.duration_s
        )
        listened = cast(Answerer, chosen).listens
        return answer.text, transcript.text if transcript is not None and not listened else ""
