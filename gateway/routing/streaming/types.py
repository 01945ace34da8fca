"""What a door hands a live transcription stream, and what it gets back, free of protobuf types."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from gateway.core.domain import RouteInfo, Routing
from gateway.core.provider_types import Locality
from gateway.core.streaming import AudioEncoding, SpeechEvent, StreamConfig, StreamResult


class StreamControl(enum.StrEnum):
    FINALIZE = "finalize"  # flush: make finals of what has been heard
    KEEPALIVE = "keepalive"  # still here, no audio (resets the idle timer)


@dataclass(frozen=True)
class StreamStart:
    """The first message: how the caller's audio is encoded, what the providers are asked, how to route."""

    encoding: AudioEncoding
    config: StreamConfig  # its sample_rate is the caller's, which is also what providers receive
    routing: Routing


# Later messages: audio bytes in the declared encoding, a control, or (wrongly) a second start.
StreamInput = bytes | StreamControl | StreamStart


@dataclass(frozen=True)
class RouteNotice:
    """Which provider serves the stream: at the start, and after each failover (``changed``)."""

    provider: str
    model: str
    locality: Locality
    changed: bool = False
    # Caller time from which the new provider's results come (the start of the replayed audio).
    at_s: float = 0.0


@dataclass(frozen=True)
class StreamSummary:
    """The last thing a stream says: its route with every attempt, the cost, and the seconds billed."""

    route: RouteInfo
    billed_s: float


StreamOutput = StreamResult | SpeechEvent | RouteNotice | StreamSummary
