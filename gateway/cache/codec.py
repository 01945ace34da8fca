"""Results as cache payloads: compact, exact, and free of pickle.

Text results are JSON; synthesized audio is a small JSON header followed by
the raw audio bytes, so large audio is never base64-inflated.

Every payload names its format version. A payload written in another format (an
older or newer deploy sharing the Redis) or one that does not parse raises
:class:`PayloadError`: the caller treats it as a miss and overwrites it.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from gateway.core.provider_types import SegmentTiming, Transcript, Usage, WordTiming

# Bumped whenever a payload's shape changes.
FORMAT_VERSION = 2

T = TypeVar("T")


class PayloadError(ValueError):
    """A stored payload this version cannot read."""


def _checked(read: Callable[[Any], T], raw: Any) -> T:
    if not isinstance(raw, dict) or raw.get("v") != FORMAT_VERSION:
        found = raw.get("v") if isinstance(raw, dict) else type(raw).__name__
        raise PayloadError(f"payload format {found!r}, expected {FORMAT_VERSION}")
    try:
        return read(raw)
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise PayloadError(f"payload does not match format {FORMAT_VERSION}: {type(exc).__name__}") from exc


def _json(payload: bytes) -> Any:
    try:
        return json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise PayloadError("payload is not JSON") from exc


@dataclass(frozen=True)
class SpeechPayload:
    audio: bytes
    mime_type: str
    sample_rate: int
    duration_s: float
    voice: str


@dataclass(frozen=True)
class AnswerPayload:
    answer: str
    transcript: str


def encode_transcript(t: Transcript) -> bytes:
    segments = [
        {
            "text": s.text,
            "start": s.start_s,
            "end": s.end_s,
            "speaker": s.speaker,
            # A speaker only when there is one, so undiarized payloads keep their shape.
            "words": [
                [w.text, w.start_s, w.end_s, w.confidence, *([w.speaker] if w.speaker else [])]
                for w in s.words
            ],
        }
        for s in t.segments
    ]
    document = {
        "v": FORMAT_VERSION,
        "text": t.text,
        "language": t.language,
        "language_probability": t.language_probability,
        "segments": segments,
    }
    return json.dumps(document).encode()


def decode_transcript(payload: bytes) -> Transcript:
    return _checked(_transcript, _json(payload))


def _transcript(raw: dict[str, Any]) -> Transcript:
    segments = tuple(
        SegmentTiming(
            text=str(s["text"]),
            start_s=float(s["start"]),
            end_s=float(s["end"]),
            speaker=str(s["speaker"]),
            words=tuple(_word(w) for w in s["words"]),
        )
        for s in raw["segments"]
    )
    return Transcript(
        text=str(raw["text"]),
        language=str(raw["language"]),
        segments=segments,
        usage=Usage(),
        # Entries stored before the field existed have none.
        language_probability=float(raw.get("language_probability", 0.0)),
    )


class RecentDecodes(Generic[T]):
    """``decode``, remembering the last results by payload: an entry served again is not decoded again.

    A long transcript with word times is ~250 KB of JSON and ~5 ms to decode, on every hit. Results are
    shared between requests, so ``decode`` must return immutable values. Bounded by count and by payload
    bytes held; a payload larger than a tenth of the bound is decoded each time.
    """

    def __init__(self, decode: Callable[[bytes], T], max_entries: int = 64, max_bytes: int = 4 << 20) -> None:
        self._decode = decode
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._held = 0
        self._recent: OrderedDict[bytes, T] = OrderedDict()

    def __call__(self, payload: bytes) -> T:
        found = self._recent.get(payload)
        if found is not None:
            self._recent.move_to_end(payload)
            return found
        value = self._decode(payload)  # PayloadError leaves nothing behind
        if len(payload) <= self._max_bytes // 10:
            self._recent[payload] = value
            self._held += len(payload)
            while len(self._recent) > self._max_entries or self._held > self._max_bytes:
                dropped, _ = self._recent.popitem(last=False)
                self._held -= len(dropped)
        return value


def _word(raw: list[Any]) -> WordTiming:
    speaker = str(raw[4]) if len(raw) > 4 else ""
    return WordTiming(str(raw[0]), float(raw[1]), float(raw[2]), float(raw[3]), speaker)


def encode_speech(s: SpeechPayload) -> bytes:
    header = json.dumps(
        {
            "v": FORMAT_VERSION,
            "mime": s.mime_type,
            "rate": s.sample_rate,
            "duration": s.duration_s,
            "voice": s.voice,
        }
    ).encode()
    return len(header).to_bytes(4, "big") + header + s.audio


def decode_speech(payload: bytes) -> SpeechPayload:
    size = int.from_bytes(payload[:4], "big")
    if len(payload) < 4 + size:
        raise PayloadError("speech payload is shorter than its header says")
    audio = payload[4 + size :]
    return _checked(
        lambda h: SpeechPayload(
            audio=audio,
            mime_type=str(h["mime"]),
            sample_rate=int(h["rate"]),
            duration_s=float(h["duration"]),
            voice=str(h["voice"]),
        ),
        _json(payload[4 : 4 + size]),
    )


def encode_answer(a: AnswerPayload) -> bytes:
    return json.dumps({"v": FORMAT_VERSION, "answer": a.answer, "transcript": a.transcript}).encode()


def decode_answer(payload: bytes) -> AnswerPayload:
    return _checked(
        lambda raw: AnswerPayload(answer=str(raw["answer"]), transcript=str(raw["transcript"])),
        _json(payload),
    )
