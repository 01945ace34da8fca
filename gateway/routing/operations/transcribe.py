"""Transcribe: probed audio in, timed text out."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, cast

from gateway.cache import codec
from gateway.core.domain import AudioInput, Privacy, RouteInfo, Routing, TranscribeRequest, TranscribeResult
from gateway.core.errors import NoRoute
from gateway.core.provider_types import Operation, TranscribeOptions, Transcript
from gateway.core.text import refuse_control_characters
from gateway.routing.pipeline import Identity, Job, Step
from policies.rank import RankContext
from providers.base import Provider, Transcriber

if TYPE_CHECKING:
    from gateway.core.audio import Recording
    from gateway.routing.attempts import Attempts
    from gateway.routing.pipeline import RequestContext
    from policies.rank import Ranking

AudioOpener = Callable[[AudioInput], Awaitable["Recording"]]


def rank_context(
    audio_s: float,
    language: str | None,
    word_timestamps: bool,
    routing: Routing,
    options: TranscribeOptions | None = None,
) -> RankContext:
    wanted = {
        "word_timestamps": word_timestamps,
        "translate": options is not None and options.translate,
        "segments": options is not None and options.segments,
        "diarization": options is not None and options.diarize,
    }
    features = frozenset(name for name, needed in wanted.items() if needed)
    return RankContext(
        Operation.TRANSCRIBE, audio_s=audio_s, language=language, features=features, routing=routing
    )


async def transcribe(
    attempts: Attempts,
    recording: Recording,
    options: TranscribeOptions,
    ranking: Ranking,
    route: RouteInfo,
    ctx: RequestContext,
) -> Transcript:
    """Walk ``ranking`` for a transcript of ``recording`` (also the first step of Understand)."""

    async def call(provider: Provider, timeout_s: float) -> Transcript:
        return await cast(Transcriber, provider).transcribe(recording, options, timeout_s)

    transcript, _ = await attempts.run(
        Operation.TRANSCRIBE, ranking, route, ctx, call, audio_s=recording.duration_s
    )
    return transcript


def diarization_refused(ranking: Ranking, refusal: NoRoute) -> NoRoute:
    """The refusal of a diarize request, naming both rules at play: the feature, and where audio may go."""
    where = (
        ""
        if ranking.privacy is Privacy.ANY
        else f" at privacy {ranking.privacy.value}, which keeps the audio off cloud providers"
    )
    return NoRoute(
        f"no provider can diarize this recording under policy {ranking.policy!r}{where}: speaker labels "
        "need a provider with the 'diarization' feature (the cloud transcribers Deepgram and AssemblyAI; "
        "no local engine has it)",
        refusal.rejections,
    )


class TranscribePlug:
    operation = Operation.TRANSCRIBE

    def __init__(self, open_audio: AudioOpener, attempts: Attempts) -> None:
        self._open_audio = open_audio
        self._attempts = attempts
        # Hits of one entry share its decoded transcript (immutable: frozen dataclasses and tuples).
        self._decoded = codec.RecentDecodes(codec.decode_transcript)

    def identify(self, request: TranscribeRequest) -> Identity | None:
        content = request.audio.content
        return None if content is None else self._identity(request, content)

    async def prepare(self, request: TranscribeRequest) -> Job:
        options = request.options
        if options.prompt:
            refuse_control_characters(options.prompt, "prompt")
        recording = await self._open_audio(request.audio)

        async def compute(step: Step) -> bytes:
            try:
                transcript = await transcribe(
                    self._attempts, recording, options, step.ranking, step.scope.route, step.ctx
                )
            except NoRoute as exc:
                if options.diarize and any(r.rule == "features" for r in step.ranking.rejected):
                    raise diarization_refused(step.ranking, exc) from exc
                raise
            return codec.encode_transcript(transcript)

        return Job(
            identity=self._identity(request, recording.original),
            compute=compute,
            audio_s=recording.duration_s,
        )

    def result(self, payload: bytes, audio_s: float, route: RouteInfo) -> TranscribeResult:
        transcript = self._decoded(payload)
        return TranscribeResult(
            text=transcript.text,
            language=transcript.language,
            duration_s=audio_s,
            segments=transcript.segments,
            route=route,
            language_probability=transcript.language_probability,
        )

    @staticmethod
    def _identity(request: TranscribeRequest, audio: bytes) -> Identity:
        options = request.options
        return Identity(
            content=audio,
            cache_options={
                "language": options.language,
                "word_timestamps": options.word_timestamps,
                "prompt": options.prompt,
                # Only present when asked for, so every result cached before they existed keeps its key.
                **({"translate": True} if options.translate else {}),
                **({"segments": True} if options.segments else {}),
                **({"diarize": True} if options.diarize else {}),
            },
            rank_context=lambda audio_s: rank_context(
                audio_s, options.language, options.word_timestamps, request.routing, options
            ),
        )
