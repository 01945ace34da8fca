"""Results as cache payloads: compact, exact, and free of pickle.

Text results are JSON; synthesized audio is a small JSON header followed by
the raw audio bytes, so large audio is never base64-inflated.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from gateway.core.provider_types import SegmentTiming, Transcript, Usage, WordTiming


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
            "words": [[w.text, w.start_s, w.end_s, w.confidence] for w in s.words],
        }
        for s in t.segments
    ]
    return json.dumps({"text": t.text, "language": t.language, "segments": segments}).encode()


def decode_transcript(payload: bytes) -> Transcript:
    raw = json.loads(payload)
    segments = tuple(
        SegmentTiming(
            text=s["text"],
            start_s=s["start"],
            end_s=s["end"],
            speaker=s["speaker"],
            words=tuple(WordTiming(w[0], w[1], w[2], w[3]) for w in s["words"]),
        )
        for s in raw["segments"]
    )
    return Transcript(text=raw["text"], language=raw["language"], segments=segments, usage=Usage())


def encode_speech(s: SpeechPayload) -> bytes:
    header = json.dumps(
        {"mime": s.mime_type, "rate": s.sample_rate, "duration": s.duration_s, "voice": s.voice}
    ).encode()
    return len(header).to_bytes(4, "big") + header + s.audio


def decode_speech(payload: bytes) -> SpeechPayload:
    size = int.from_bytes(payload[:4], "big")
    header = json.loads(payload[4 : 4 + size])
    return SpeechPayload(
        audio=payload[4 + size :],
        mime_type=header["mime"],
        sample_rate=header["rate"],
        duration_s=header["duration"],
        voice=header["voice"],
    )


def encode_answer(a: AnswerPayload) -> bytes:
    return json.dumps({"answer": a.answer, "transcript": a.transcript}).encode()


def decode_answer(payload: bytes) -> AnswerPayload:
    raw = json.loads(payload)
    return AnswerPayload(answer=raw["answer"], transcript=raw["transcript"])
