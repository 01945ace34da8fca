from gateway.api.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TranscriptFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TRANSCRIPT_FORMAT_UNSPECIFIED: _ClassVar[TranscriptFormat]
    TRANSCRIPT_FORMAT_JSON: _ClassVar[TranscriptFormat]
    TRANSCRIPT_FORMAT_TEXT: _ClassVar[TranscriptFormat]
    TRANSCRIPT_FORMAT_SRT: _ClassVar[TranscriptFormat]
    TRANSCRIPT_FORMAT_VTT: _ClassVar[TranscriptFormat]

class AudioFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AUDIO_FORMAT_UNSPECIFIED: _ClassVar[AudioFormat]
    AUDIO_FORMAT_WAV: _ClassVar[AudioFormat]
    AUDIO_FORMAT_PCM16: _ClassVar[AudioFormat]
    AUDIO_FORMAT_MP3: _ClassVar[AudioFormat]
    AUDIO_FORMAT_OGG_OPUS: _ClassVar[AudioFormat]
    AUDIO_FORMAT_FLAC: _ClassVar[AudioFormat]
    AUDIO_FORMAT_MULAW: _ClassVar[AudioFormat]
    AUDIO_FORMAT_AAC: _ClassVar[AudioFormat]

class Operation(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OPERATION_UNSPECIFIED: _ClassVar[Operation]
    OPERATION_TRANSCRIBE: _ClassVar[Operation]
    OPERATION_SYNTHESIZE: _ClassVar[Operation]
    OPERATION_UNDERSTAND: _ClassVar[Operation]

class StreamEncoding(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STREAM_ENCODING_UNSPECIFIED: _ClassVar[StreamEncoding]
    STREAM_ENCODING_LINEAR16: _ClassVar[StreamEncoding]
    STREAM_ENCODING_MULAW: _ClassVar[StreamEncoding]
    STREAM_ENCODING_OGG_OPUS: _ClassVar[StreamEncoding]

class StreamControl(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STREAM_CONTROL_UNSPECIFIED: _ClassVar[StreamControl]
    STREAM_CONTROL_FINALIZE: _ClassVar[StreamControl]
    STREAM_CONTROL_KEEPALIVE: _ClassVar[StreamControl]

class SpeechEventType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SPEECH_EVENT_TYPE_UNSPECIFIED: _ClassVar[SpeechEventType]
    SPEECH_EVENT_SPEECH_BEGIN: _ClassVar[SpeechEventType]
    SPEECH_EVENT_END_OF_UTTERANCE: _ClassVar[SpeechEventType]
    SPEECH_EVENT_PROVIDER_CHANGED: _ClassVar[SpeechEventType]
TRANSCRIPT_FORMAT_UNSPECIFIED: TranscriptFormat
TRANSCRIPT_FORMAT_JSON: TranscriptFormat
TRANSCRIPT_FORMAT_TEXT: TranscriptFormat
TRANSCRIPT_FORMAT_SRT: TranscriptFormat
TRANSCRIPT_FORMAT_VTT: TranscriptFormat
AUDIO_FORMAT_UNSPECIFIED: AudioFormat
AUDIO_FORMAT_WAV: AudioFormat
AUDIO_FORMAT_PCM16: AudioFormat
AUDIO_FORMAT_MP3: AudioFormat
AUDIO_FORMAT_OGG_OPUS: AudioFormat
AUDIO_FORMAT_FLAC: AudioFormat
AUDIO_FORMAT_MULAW: AudioFormat
AUDIO_FORMAT_AAC: AudioFormat
OPERATION_UNSPECIFIED: Operation
OPERATION_TRANSCRIBE: Operation
OPERATION_SYNTHESIZE: Operation
OPERATION_UNDERSTAND: Operation
STREAM_ENCODING_UNSPECIFIED: StreamEncoding
STREAM_ENCODING_LINEAR16: StreamEncoding
STREAM_ENCODING_MULAW: StreamEncoding
STREAM_ENCODING_OGG_OPUS: StreamEncoding
STREAM_CONTROL_UNSPECIFIED: StreamControl
STREAM_CONTROL_FINALIZE: StreamControl
STREAM_CONTROL_KEEPALIVE: StreamControl
SPEECH_EVENT_TYPE_UNSPECIFIED: SpeechEventType
SPEECH_EVENT_SPEECH_BEGIN: SpeechEventType
SPEECH_EVENT_END_OF_UTTERANCE: SpeechEventType
SPEECH_EVENT_PROVIDER_CHANGED: SpeechEventType

class TranscribeRequest(_message.Message):
    __slots__ = ("audio", "language", "word_timestamps", "prompt", "response_format", "diarize", "translate", "routing")
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    WORD_TIMESTAMPS_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FORMAT_FIELD_NUMBER: _ClassVar[int]
    DIARIZE_FIELD_NUMBER: _ClassVar[int]
    TRANSLATE_FIELD_NUMBER: _ClassVar[int]
    ROUTING_FIELD_NUMBER: _ClassVar[int]
    audio: _common_pb2.Audio
    language: str
    word_timestamps: bool
    prompt: str
    response_format: TranscriptFormat
    diarize: bool
    translate: bool
    routing: _common_pb2.RoutingOptions
    def __init__(self, audio: _Optional[_Union[_common_pb2.Audio, _Mapping]] = ..., language: _Optional[str] = ..., word_timestamps: _Optional[bool] = ..., prompt: _Optional[str] = ..., response_format: _Optional[_Union[TranscriptFormat, str]] = ..., diarize: _Optional[bool] = ..., translate: _Optional[bool] = ..., routing: _Optional[_Union[_common_pb2.RoutingOptions, _Mapping]] = ...) -> None: ...

class Word(_message.Message):
    __slots__ = ("text", "start_s", "end_s", "confidence", "speaker")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    START_S_FIELD_NUMBER: _ClassVar[int]
    END_S_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    SPEAKER_FIELD_NUMBER: _ClassVar[int]
    text: str
    start_s: float
    end_s: float
    confidence: float
    speaker: str
    def __init__(self, text: _Optional[str] = ..., start_s: _Optional[float] = ..., end_s: _Optional[float] = ..., confidence: _Optional[float] = ..., speaker: _Optional[str] = ...) -> None: ...

class Segment(_message.Message):
    __slots__ = ("text", "start_s", "end_s", "words", "speaker")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    START_S_FIELD_NUMBER: _ClassVar[int]
    END_S_FIELD_NUMBER: _ClassVar[int]
    WORDS_FIELD_NUMBER: _ClassVar[int]
    SPEAKER_FIELD_NUMBER: _ClassVar[int]
    text: str
    start_s: float
    end_s: float
    words: _containers.RepeatedCompositeFieldContainer[Word]
    speaker: str
    def __init__(self, text: _Optional[str] = ..., start_s: _Optional[float] = ..., end_s: _Optional[float] = ..., words: _Optional[_Iterable[_Union[Word, _Mapping]]] = ..., speaker: _Optional[str] = ...) -> None: ...

class TranscribeResponse(_message.Message):
    __slots__ = ("text", "language", "duration_s", "segments", "words", "formatted", "language_probability", "route")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    DURATION_S_FIELD_NUMBER: _ClassVar[int]
    SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    WORDS_FIELD_NUMBER: _ClassVar[int]
    FORMATTED_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    text: str
    language: str
    duration_s: float
    segments: _containers.RepeatedCompositeFieldContainer[Segment]
    words: _containers.RepeatedCompositeFieldContainer[Word]
    formatted: str
    language_probability: float
    route: _common_pb2.RouteInfo
    def __init__(self, text: _Optional[str] = ..., language: _Optional[str] = ..., duration_s: _Optional[float] = ..., segments: _Optional[_Iterable[_Union[Segment, _Mapping]]] = ..., words: _Optional[_Iterable[_Union[Word, _Mapping]]] = ..., formatted: _Optional[str] = ..., language_probability: _Optional[float] = ..., route: _Optional[_Union[_common_pb2.RouteInfo, _Mapping]] = ...) -> None: ...

class TranscribeProgressEvent(_message.Message):
    __slots__ = ("audio_done_s", "audio_total_s", "response")
    AUDIO_DONE_S_FIELD_NUMBER: _ClassVar[int]
    AUDIO_TOTAL_S_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    audio_done_s: float
    audio_total_s: float
    response: TranscribeResponse
    def __init__(self, audio_done_s: _Optional[float] = ..., audio_total_s: _Optional[float] = ..., response: _Optional[_Union[TranscribeResponse, _Mapping]] = ...) -> None: ...

class SynthesizeRequest(_message.Message):
    __slots__ = ("text", "voice", "format", "sample_rate", "speed", "routing")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    VOICE_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_FIELD_NUMBER: _ClassVar[int]
    SPEED_FIELD_NUMBER: _ClassVar[int]
    ROUTING_FIELD_NUMBER: _ClassVar[int]
    text: str
    voice: str
    format: AudioFormat
    sample_rate: int
    speed: float
    routing: _common_pb2.RoutingOptions
    def __init__(self, text: _Optional[str] = ..., voice: _Optional[str] = ..., format: _Optional[_Union[AudioFormat, str]] = ..., sample_rate: _Optional[int] = ..., speed: _Optional[float] = ..., routing: _Optional[_Union[_common_pb2.RoutingOptions, _Mapping]] = ...) -> None: ...

class SynthesizeResponse(_message.Message):
    __slots__ = ("audio", "mime_type", "sample_rate", "duration_s", "voice", "route")
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    MIME_TYPE_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_FIELD_NUMBER: _ClassVar[int]
    DURATION_S_FIELD_NUMBER: _ClassVar[int]
    VOICE_FIELD_NUMBER: _ClassVar[int]
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    audio: bytes
    mime_type: str
    sample_rate: int
    duration_s: float
    voice: str
    route: _common_pb2.RouteInfo
    def __init__(self, audio: _Optional[bytes] = ..., mime_type: _Optional[str] = ..., sample_rate: _Optional[int] = ..., duration_s: _Optional[float] = ..., voice: _Optional[str] = ..., route: _Optional[_Union[_common_pb2.RouteInfo, _Mapping]] = ...) -> None: ...

class SynthesizeChunk(_message.Message):
    __slots__ = ("audio", "sequence", "start_s", "duration_s", "text_start", "text_end", "mime_type", "sample_rate", "voice", "voice_may_change", "characters", "route")
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    START_S_FIELD_NUMBER: _ClassVar[int]
    DURATION_S_FIELD_NUMBER: _ClassVar[int]
    TEXT_START_FIELD_NUMBER: _ClassVar[int]
    TEXT_END_FIELD_NUMBER: _ClassVar[int]
    MIME_TYPE_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_FIELD_NUMBER: _ClassVar[int]
    VOICE_FIELD_NUMBER: _ClassVar[int]
    VOICE_MAY_CHANGE_FIELD_NUMBER: _ClassVar[int]
    CHARACTERS_FIELD_NUMBER: _ClassVar[int]
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    audio: bytes
    sequence: int
    start_s: float
    duration_s: float
    text_start: int
    text_end: int
    mime_type: str
    sample_rate: int
    voice: str
    voice_may_change: bool
    characters: int
    route: _common_pb2.RouteInfo
    def __init__(self, audio: _Optional[bytes] = ..., sequence: _Optional[int] = ..., start_s: _Optional[float] = ..., duration_s: _Optional[float] = ..., text_start: _Optional[int] = ..., text_end: _Optional[int] = ..., mime_type: _Optional[str] = ..., sample_rate: _Optional[int] = ..., voice: _Optional[str] = ..., voice_may_change: _Optional[bool] = ..., characters: _Optional[int] = ..., route: _Optional[_Union[_common_pb2.RouteInfo, _Mapping]] = ...) -> None: ...

class UnderstandRequest(_message.Message):
    __slots__ = ("audio", "question", "language", "max_answer_tokens", "routing")
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    QUESTION_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    MAX_ANSWER_TOKENS_FIELD_NUMBER: _ClassVar[int]
    ROUTING_FIELD_NUMBER: _ClassVar[int]
    audio: _common_pb2.Audio
    question: str
    language: str
    max_answer_tokens: int
    routing: _common_pb2.RoutingOptions
    def __init__(self, audio: _Optional[_Union[_common_pb2.Audio, _Mapping]] = ..., question: _Optional[str] = ..., language: _Optional[str] = ..., max_answer_tokens: _Optional[int] = ..., routing: _Optional[_Union[_common_pb2.RoutingOptions, _Mapping]] = ...) -> None: ...

class UnderstandResponse(_message.Message):
    __slots__ = ("answer", "transcript", "duration_s", "route")
    ANSWER_FIELD_NUMBER: _ClassVar[int]
    TRANSCRIPT_FIELD_NUMBER: _ClassVar[int]
    DURATION_S_FIELD_NUMBER: _ClassVar[int]
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    answer: str
    transcript: str
    duration_s: float
    route: _common_pb2.RouteInfo
    def __init__(self, answer: _Optional[str] = ..., transcript: _Optional[str] = ..., duration_s: _Optional[float] = ..., route: _Optional[_Union[_common_pb2.RouteInfo, _Mapping]] = ...) -> None: ...

class ExplainRouteRequest(_message.Message):
    __slots__ = ("operation", "audio", "audio_duration_s", "text", "characters", "language", "word_timestamps", "voice", "diarize", "translate", "routing")
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    AUDIO_DURATION_S_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    CHARACTERS_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    WORD_TIMESTAMPS_FIELD_NUMBER: _ClassVar[int]
    VOICE_FIELD_NUMBER: _ClassVar[int]
    DIARIZE_FIELD_NUMBER: _ClassVar[int]
    TRANSLATE_FIELD_NUMBER: _ClassVar[int]
    ROUTING_FIELD_NUMBER: _ClassVar[int]
    operation: Operation
    audio: _common_pb2.Audio
    audio_duration_s: float
    text: str
    characters: int
    language: str
    word_timestamps: bool
    voice: str
    diarize: bool
    translate: bool
    routing: _common_pb2.RoutingOptions
    def __init__(self, operation: _Optional[_Union[Operation, str]] = ..., audio: _Optional[_Union[_common_pb2.Audio, _Mapping]] = ..., audio_duration_s: _Optional[float] = ..., text: _Optional[str] = ..., characters: _Optional[int] = ..., language: _Optional[str] = ..., word_timestamps: _Optional[bool] = ..., voice: _Optional[str] = ..., diarize: _Optional[bool] = ..., translate: _Optional[bool] = ..., routing: _Optional[_Union[_common_pb2.RoutingOptions, _Mapping]] = ...) -> None: ...

class RouteCandidate(_message.Message):
    __slots__ = ("provider", "model", "locality", "eligible", "rejected_reason", "rank", "estimated_cost_usd", "estimated_latency_ms", "score", "breaker_state", "latency_learned", "latency_source", "latency_observations", "latency_fixed_ms", "latency_per_unit")
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    LOCALITY_FIELD_NUMBER: _ClassVar[int]
    ELIGIBLE_FIELD_NUMBER: _ClassVar[int]
    REJECTED_REASON_FIELD_NUMBER: _ClassVar[int]
    RANK_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_COST_USD_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    BREAKER_STATE_FIELD_NUMBER: _ClassVar[int]
    LATENCY_LEARNED_FIELD_NUMBER: _ClassVar[int]
    LATENCY_SOURCE_FIELD_NUMBER: _ClassVar[int]
    LATENCY_OBSERVATIONS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_FIXED_MS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_PER_UNIT_FIELD_NUMBER: _ClassVar[int]
    provider: str
    model: str
    locality: _common_pb2.Locality
    eligible: bool
    rejected_reason: str
    rank: int
    estimated_cost_usd: str
    estimated_latency_ms: float
    score: float
    breaker_state: str
    latency_learned: bool
    latency_source: str
    latency_observations: int
    latency_fixed_ms: float
    latency_per_unit: float
    def __init__(self, provider: _Optional[str] = ..., model: _Optional[str] = ..., locality: _Optional[_Union[_common_pb2.Locality, str]] = ..., eligible: _Optional[bool] = ..., rejected_reason: _Optional[str] = ..., rank: _Optional[int] = ..., estimated_cost_usd: _Optional[str] = ..., estimated_latency_ms: _Optional[float] = ..., score: _Optional[float] = ..., breaker_state: _Optional[str] = ..., latency_learned: _Optional[bool] = ..., latency_source: _Optional[str] = ..., latency_observations: _Optional[int] = ..., latency_fixed_ms: _Optional[float] = ..., latency_per_unit: _Optional[float] = ...) -> None: ...

class ExplainRouteResponse(_message.Message):
    __slots__ = ("policy", "privacy", "objective", "max_attempts", "audio_duration_s", "characters", "candidates", "transcription_candidates", "remaining_budget_usd", "tenant")
    POLICY_FIELD_NUMBER: _ClassVar[int]
    PRIVACY_FIELD_NUMBER: _ClassVar[int]
    OBJECTIVE_FIELD_NUMBER: _ClassVar[int]
    MAX_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    AUDIO_DURATION_S_FIELD_NUMBER: _ClassVar[int]
    CHARACTERS_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    TRANSCRIPTION_CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    REMAINING_BUDGET_USD_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    policy: str
    privacy: _common_pb2.Privacy
    objective: _common_pb2.Objective
    max_attempts: int
    audio_duration_s: float
    characters: int
    candidates: _containers.RepeatedCompositeFieldContainer[RouteCandidate]
    transcription_candidates: _containers.RepeatedCompositeFieldContainer[RouteCandidate]
    remaining_budget_usd: str
    tenant: str
    def __init__(self, policy: _Optional[str] = ..., privacy: _Optional[_Union[_common_pb2.Privacy, str]] = ..., objective: _Optional[_Union[_common_pb2.Objective, str]] = ..., max_attempts: _Optional[int] = ..., audio_duration_s: _Optional[float] = ..., characters: _Optional[int] = ..., candidates: _Optional[_Iterable[_Union[RouteCandidate, _Mapping]]] = ..., transcription_candidates: _Optional[_Iterable[_Union[RouteCandidate, _Mapping]]] = ..., remaining_budget_usd: _Optional[str] = ..., tenant: _Optional[str] = ...) -> None: ...

class Endpointing(_message.Message):
    __slots__ = ("silence_ms", "max_turn_silence_ms")
    SILENCE_MS_FIELD_NUMBER: _ClassVar[int]
    MAX_TURN_SILENCE_MS_FIELD_NUMBER: _ClassVar[int]
    silence_ms: int
    max_turn_silence_ms: int
    def __init__(self, silence_ms: _Optional[int] = ..., max_turn_silence_ms: _Optional[int] = ...) -> None: ...

class StreamTranscribeConfig(_message.Message):
    __slots__ = ("encoding", "sample_rate_hertz", "language", "interim_results", "word_timestamps", "endpointing", "single_utterance", "routing")
    ENCODING_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_HERTZ_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    INTERIM_RESULTS_FIELD_NUMBER: _ClassVar[int]
    WORD_TIMESTAMPS_FIELD_NUMBER: _ClassVar[int]
    ENDPOINTING_FIELD_NUMBER: _ClassVar[int]
    SINGLE_UTTERANCE_FIELD_NUMBER: _ClassVar[int]
    ROUTING_FIELD_NUMBER: _ClassVar[int]
    encoding: StreamEncoding
    sample_rate_hertz: int
    language: str
    interim_results: bool
    word_timestamps: bool
    endpointing: Endpointing
    single_utterance: bool
    routing: _common_pb2.RoutingOptions
    def __init__(self, encoding: _Optional[_Union[StreamEncoding, str]] = ..., sample_rate_hertz: _Optional[int] = ..., language: _Optional[str] = ..., interim_results: _Optional[bool] = ..., word_timestamps: _Optional[bool] = ..., endpointing: _Optional[_Union[Endpointing, _Mapping]] = ..., single_utterance: _Optional[bool] = ..., routing: _Optional[_Union[_common_pb2.RoutingOptions, _Mapping]] = ...) -> None: ...

class StreamTranscribeRequest(_message.Message):
    __slots__ = ("config", "audio", "control")
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    CONTROL_FIELD_NUMBER: _ClassVar[int]
    config: StreamTranscribeConfig
    audio: bytes
    control: StreamControl
    def __init__(self, config: _Optional[_Union[StreamTranscribeConfig, _Mapping]] = ..., audio: _Optional[bytes] = ..., control: _Optional[_Union[StreamControl, str]] = ...) -> None: ...

class StreamAlternative(_message.Message):
    __slots__ = ("text", "confidence", "words")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    WORDS_FIELD_NUMBER: _ClassVar[int]
    text: str
    confidence: float
    words: _containers.RepeatedCompositeFieldContainer[Word]
    def __init__(self, text: _Optional[str] = ..., confidence: _Optional[float] = ..., words: _Optional[_Iterable[_Union[Word, _Mapping]]] = ...) -> None: ...

class StreamResult(_message.Message):
    __slots__ = ("alternatives", "is_final", "stability", "result_start_time_s", "result_end_time_s")
    ALTERNATIVES_FIELD_NUMBER: _ClassVar[int]
    IS_FINAL_FIELD_NUMBER: _ClassVar[int]
    STABILITY_FIELD_NUMBER: _ClassVar[int]
    RESULT_START_TIME_S_FIELD_NUMBER: _ClassVar[int]
    RESULT_END_TIME_S_FIELD_NUMBER: _ClassVar[int]
    alternatives: _containers.RepeatedCompositeFieldContainer[StreamAlternative]
    is_final: bool
    stability: float
    result_start_time_s: float
    result_end_time_s: float
    def __init__(self, alternatives: _Optional[_Iterable[_Union[StreamAlternative, _Mapping]]] = ..., is_final: _Optional[bool] = ..., stability: _Optional[float] = ..., result_start_time_s: _Optional[float] = ..., result_end_time_s: _Optional[float] = ...) -> None: ...

class SpeechEvent(_message.Message):
    __slots__ = ("type", "time_s")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    TIME_S_FIELD_NUMBER: _ClassVar[int]
    type: SpeechEventType
    time_s: float
    def __init__(self, type: _Optional[_Union[SpeechEventType, str]] = ..., time_s: _Optional[float] = ...) -> None: ...

class StreamRoute(_message.Message):
    __slots__ = ("provider", "model", "locality")
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    LOCALITY_FIELD_NUMBER: _ClassVar[int]
    provider: str
    model: str
    locality: _common_pb2.Locality
    def __init__(self, provider: _Optional[str] = ..., model: _Optional[str] = ..., locality: _Optional[_Union[_common_pb2.Locality, str]] = ...) -> None: ...

class StreamTranscribeResponse(_message.Message):
    __slots__ = ("result", "event", "route", "route_info", "billed_seconds")
    RESULT_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    ROUTE_INFO_FIELD_NUMBER: _ClassVar[int]
    BILLED_SECONDS_FIELD_NUMBER: _ClassVar[int]
    result: StreamResult
    event: SpeechEvent
    route: StreamRoute
    route_info: _common_pb2.RouteInfo
    billed_seconds: float
    def __init__(self, result: _Optional[_Union[StreamResult, _Mapping]] = ..., event: _Optional[_Union[SpeechEvent, _Mapping]] = ..., route: _Optional[_Union[StreamRoute, _Mapping]] = ..., route_info: _Optional[_Union[_common_pb2.RouteInfo, _Mapping]] = ..., billed_seconds: _Optional[float] = ...) -> None: ...
