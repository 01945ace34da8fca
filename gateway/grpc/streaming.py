"""StreamTranscribe on the wire: protobuf stream messages ↔ the domain's stream inputs and outputs."""

from __future__ import annotations

from collections.abc import AsyncIterator

from gateway.api.v1 import audio_gateway_pb2 as pb
from gateway.core.audio.stream import check_sample_rate
from gateway.core.domain import language_code
from gateway.core.errors import InvalidInput
from gateway.core.streaming import AudioEncoding, SpeechEvent, SpeechEventKind, StreamConfig, StreamResult
from gateway.grpc.converters import _LOCALITY, _word, route_info, routing
from gateway.routing.streaming import RouteNotice, StreamControl, StreamInput, StreamOutput, StreamStart

_ENCODING = {
    pb.STREAM_ENCODING_LINEAR16: AudioEncoding.LINEAR16,
    pb.STREAM_ENCODING_MULAW: AudioEncoding.MULAW,
    pb.STREAM_ENCODING_OGG_OPUS: AudioEncoding.OGG_OPUS,
}
_CONTROL = {
    pb.STREAM_CONTROL_FINALIZE: StreamControl.FINALIZE,
    pb.STREAM_CONTROL_KEEPALIVE: StreamControl.KEEPALIVE,
}
_EVENT = {
    SpeechEventKind.SPEECH_BEGIN: pb.SPEECH_EVENT_SPEECH_BEGIN,
    SpeechEventKind.END_OF_UTTERANCE: pb.SPEECH_EVENT_END_OF_UTTERANCE,
}
# Bounds that keep a config sensible: a minute of silence is no utterance boundary.
MAX_ENDPOINTING_MS = 60_000
DEFAULT_SILENCE_MS = 500
DEFAULT_TURN_SILENCE_MS = 1000


def stream_start(msg: pb.StreamTranscribeConfig) -> StreamStart:
    if msg.encoding not in _ENCODING:
        names = ", ".join(pb.StreamEncoding.Name(v) for v in _ENCODING)
        raise InvalidInput(f"config.encoding must be one of {names} (got {msg.encoding})")
    if msg.sample_rate_hertz == 0:
        raise InvalidInput("config.sample_rate_hertz is required: the sample rate of the audio in Hz")
    silence = msg.endpointing.silence_ms or DEFAULT_SILENCE_MS
    turn = msg.endpointing.max_turn_silence_ms or DEFAULT_TURN_SILENCE_MS
    for name, value in (("silence_ms", silence), ("max_turn_silence_ms", turn)):
        if value > MAX_ENDPOINTING_MS:
            raise InvalidInput(f"config.endpointing.{name} {value} is over {MAX_ENDPOINTING_MS} ms")
    if turn < silence:
        raise InvalidInput(
            f"config.endpointing.max_turn_silence_ms ({turn}) is shorter than silence_ms ({silence}): a "
            "turn cannot end before the utterance in it does"
        )
    encoding = _ENCODING[msg.encoding]
    check_sample_rate(encoding, msg.sample_rate_hertz)
    config = StreamConfig(
        sample_rate=msg.sample_rate_hertz,
        language=language_code(msg.language),
        interim_results=msg.interim_results,
        word_timestamps=msg.word_timestamps,
        endpointing_ms=silence,
        utterance_end_ms=turn,
        single_utterance=msg.single_utterance,
    )
    return StreamStart(encoding, config, routing(msg.routing))


async def first_message(requests: AsyncIterator[pb.StreamTranscribeRequest]) -> StreamStart:
    try:
        msg = await anext(requests)
    except StopAsyncIteration:
        raise InvalidInput("the stream ended before its first message: send config first") from None
    if msg.WhichOneof("request") != "config":
        raise InvalidInput("the first message of a stream must carry config (and only config)")
    return stream_start(msg.config)


async def stream_inputs(requests: AsyncIterator[pb.StreamTranscribeRequest]) -> AsyncIterator[StreamInput]:
    async for msg in requests:
        kind = msg.WhichOneof("request")
        if kind == "audio":
            yield msg.audio
        elif kind == "control":
            if msg.control not in _CONTROL:
                raise InvalidInput("control must be STREAM_CONTROL_FINALIZE or STREAM_CONTROL_KEEPALIVE")
            yield _CONTROL[msg.control]
        elif kind == "config":
            yield stream_start(msg.config)
        else:
            raise InvalidInput("a stream message must carry audio or a control")


def stream_response(output: StreamOutput) -> pb.StreamTranscribeResponse:
    if isinstance(output, StreamResult):
        return pb.StreamTranscribeResponse(
            result=pb.StreamResult(
                alternatives=[
                    pb.StreamAlternative(
                        text=output.text, confidence=output.confidence, words=[_word(w) for w in output.words]
                    )
                ],
                is_final=output.is_final,
                stability=output.stability,
                result_start_time_s=output.start_s,
                result_end_time_s=output.end_s,
            )
        )
    if isinstance(output, SpeechEvent):
        return pb.StreamTranscribeResponse(event=pb.SpeechEvent(type=_EVENT[output.kind], time_s=output.at_s))
    if isinstance(output, RouteNotice):
        route = pb.StreamRoute(
            provider=output.provider, model=output.model, locality=_LOCALITY[output.locality]
        )
        if output.changed:
            event = pb.SpeechEvent(type=pb.SPEECH_EVENT_PROVIDER_CHANGED, time_s=output.at_s)
            return pb.StreamTranscribeResponse(event=event, route=route)
        return pb.StreamTranscribeResponse(route=route)
    return pb.StreamTranscribeResponse(route_info=route_info(output.route), billed_seconds=output.billed_s)
