"""Live transcription: one caller stream served by provider streams, ranked, metered and failed over."""

from gateway.routing.streaming.session import DRAIN_S, StreamService, drain
from gateway.routing.streaming.types import (
    RouteNotice,
    StreamControl,
    StreamInput,
    StreamOutput,
    StreamStart,
    StreamSummary,
)

__all__ = [
    "DRAIN_S",
    "RouteNotice",
    "StreamControl",
    "StreamInput",
    "StreamOutput",
    "StreamService",
    "StreamStart",
    "StreamSummary",
    "drain",
]
