"""Deepgram's pre-recorded ``/v1/listen`` and Aura ``/v1/speak`` on 127.0.0.1.

Replies have the shape the real API sends (and the SDK's models read): the
listen result carries metadata, per-channel alternatives with words, and
paragraphs / utterances / speakers only when the query asks for them, as
Deepgram does. Speak returns a real WAV (or raw linear16) tone whose length
follows the text; with ``speak_chunk_bytes`` set its body streams in chunks,
``speak_chunk_delay_s`` apart, and ``drop_speak`` cuts one off mid-body. Both
answer 401 without ``Authorization: Token <key>`` and 400 for requests Deepgram
refuses (empty audio, a non-Aura model).
"""

from __future__ import annotations

import hashlib
import math
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from gateway.core.audio import encode_pcm16, encode_wav
from tests.fakes.base import FakeServer, Recorded, Reply

NOVA_3_UUID = "2187e11a-3532-4498-b076-81fa530bdd49"
SECONDS_PER_CHARACTER = 0.05


@dataclass(frozen=True)
class ScriptWord:
    """One recognised word as Deepgram reports it (punctuated form from smart_format/punctuate)."""

    word: str
    punctuated: str
    start: float
    end: float
    confidence: float
    speaker: int


# Two speakers taking one turn each, three sentences: enough for paragraphs, utterances and speakers.
CONVERSATION = (
    ScriptWord("hello", "Hello", 0.08, 0.40, 0.998, 0),
    ScriptWord("there", "there.", 0.44, 0.90, 0.991, 0),
    ScriptWord("hi", "Hi!", 1.20, 1.38, 0.987, 1),
    ScriptWord("how", "How", 1.50, 1.64, 0.995, 1),
    ScriptWord("are", "are", 1.66, 1.78, 0.999, 1),
    ScriptWord("you", "you?", 1.80, 2.10, 0.993, 1),
)


def _flag(recorded: Recorded, name: str) -> bool:
    return recorded.query.get(name, ["false"])[-1] == "true"


def _error(status: int, code: str, message: str) -> Reply:
    return Reply(status, {"err_code": code, "err_msg": message, "request_id": str(uuid.uuid4())})


class FakeDeepgram(FakeServer):
    def __init__(self, api_key: str | None = None, words: tuple[ScriptWord, ...] = CONVERSATION) -> None:
        super().__init__()
        self.api_key = api_key
        self.words = words
        self.reported_duration_s = 2.5  # what Deepgram claims; the gateway must bill its own
        self.detected_language = "en"
        self.tone_hz = 330.0
        self.speak_chunk_bytes: int | None = None
        self.speak_chunk_delay_s = 0.0
        self.speak_replies: list[Reply] = []
        self._speak_drops: list[int | None] = []
        self.route("POST", "/v1/listen", self._listen)
        self.route("POST", "/v1/speak", self._speak)

    def requests_to(self, path: str) -> list[Recorded]:
        return [r for r in self.requests if r.path == path]

    # -- auth ---------------------------------------------------------------------

    def _unauthorized(self, recorded: Recorded) -> Reply | None:
        header = recorded.headers.get("authorization", "")
        scheme, _, key = header.partition(" ")
        if scheme != "Token" or not key or (self.api_key is not None and key != self.api_key):
            return _error(401, "INVALID_AUTH", "Invalid credentials.")
        return None

    # -- /v1/listen ---------------------------------------------------------------

    def _listen(self, recorded: Recorded, _: re.Match[str]) -> Reply:
        refused = self._unauthorized(recorded)
        if refused is not None:
            return refused
        if not recorded.body:
            return _error(
                400, "Bad Request", "Bad Request: failed to process audio: corrupt or unsupported data"
            )
        punctuated = _flag(recorded, "punctuate") or _flag(recorded, "smart_format")
        diarize = _flag(recorded, "diarize")

        def word(w: ScriptWord) -> dict:
            out: dict = {"word": w.word, "start": w.start, "end": w.end, "confidence": w.confidence}
            if diarize:
                out["speaker"] = w.speaker
                out["speaker_confidence"] = 0.71
            if punctuated:
                out["punctuated_word"] = w.punctuated
            return out

        def text(words: tuple[ScriptWord, ...]) -> str:
            return " ".join(w.punctuated if punctuated else w.word for w in words)

        turns = self._turns()
        alternative: dict = {
            "transcript": text(self.words),
            "confidence": min((w.confidence for w in self.words), default=0.0),
            "words": [word(w) for w in self.words],
        }
        # smart_format turns paragraphs on, as the real API does.
        if _flag(recorded, "paragraphs") or _flag(recorded, "smart_format"):
            alternative["paragraphs"] = self._paragraphs(turns, diarize)
        channel: dict = {"alternatives": [alternative]}
        if _flag(recorded, "detect_language"):
            channel["detected_language"] = self.detected_language
            channel["language_confidence"] = 0.97
        results: dict = {"channels": [channel]}
        if _flag(recorded, "utterances"):
            results["utterances"] = [
                {
                    "start": turn[0].start,
                    "end": turn[-1].end,
                    "confidence": sum(w.confidence for w in turn) / len(turn),
                    "channel": 0,
                    "transcript": text(turn),
                    "words": [word(w) for w in turn],
                    **({"speaker": turn[0].speaker} if diarize else {}),
                    "id": str(uuid.uuid4()),
                }
                for turn in turns
            ]
        model = recorded.query.get("model", ["base"])[-1]
        metadata: dict = {
            "transaction_key": "deprecated",
            "request_id": str(uuid.uuid4()),
            "sha256": hashlib.sha256(recorded.body).hexdigest(),
            "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "duration": self.reported_duration_s,
            "channels": 1,
            "models": [NOVA_3_UUID],
            "model_info": {
                NOVA_3_UUID: {"name": f"general-{model}", "version": "2025-04-17.21547", "arch": model}
            },
        }
        if diarize:
            metadata["diarize_info"] = {"model_uuid": str(uuid.uuid4()), "arch": "v2"}
        return Reply(200, {"metadata": metadata, "results": results})

    def _turns(self) -> list[tuple[ScriptWord, ...]]:
        """Runs of one speaker: where Deepgram would break utterances and paragraphs."""
        turns: list[list[ScriptWord]] = []
        for w in self.words:
            if not turns or turns[-1][-1].speaker != w.speaker:
                turns.append([])
            turns[-1].append(w)
        return [tuple(t) for t in turns]

    @staticmethod
    def _paragraphs(turns: list[tuple[ScriptWord, ...]], diarize: bool) -> dict:
        paragraphs = []
        lines = []
        for turn in turns:
            sentences, current = [], []
            for w in turn:
                current.append(w)
                if w.punctuated[-1] in ".!?":
                    sentences.append(tuple(current))
                    current = []
            if current:
                sentences.append(tuple(current))
            paragraph = {
                "sentences": [
                    {"text": " ".join(w.punctuated for w in s), "start": s[0].start, "end": s[-1].end}
                    for s in sentences
                ],
                "num_words": len(turn),
                "start": turn[0].start,
                "end": turn[-1].end,
            }
            body = " ".join(w.punctuated for w in turn)
            if diarize:
                paragraph["speaker"] = turn[0].speaker
                body = f"Speaker {turn[0].speaker}: {body}"
            paragraphs.append(paragraph)
            lines.append(body)
        return {"transcript": "\n" + "\n\n".join(lines), "paragraphs": paragraphs}

    # -- /v1/speak ----------------------------------------------------------------

    def _speak(self, recorded: Recorded, _: re.Match[str]) -> Reply:
        refused = self._unauthorized(recorded)
        if refused is not None:
            return refused
        model = recorded.query.get("model", ["aura-asteria-en"])[-1]
        if not model.startswith("aura-"):
            return _error(
                400, "INVALID_QUERY_PARAMETER", f"No such model/version/language combination: {model}"
            )
        try:
            text = recorded.json()["text"]
        except (ValueError, KeyError, TypeError):
            return _error(400, "INVALID_JSON", "Invalid JSON body: expected an object with 'text'")
        if not isinstance(text, str) or not text.strip():
            return _error(400, "INVALID_TEXT", "Text must not be empty")
        rate = int(float(recorded.query.get("sample_rate", ["24000"])[-1]))
        samples = self.tone(len(text) * SECONDS_PER_CHARACTER, rate)
        container = recorded.query.get("container", ["wav"])[-1]
        body = encode_wav(samples, rate) if container == "wav" else encode_pcm16(samples)
        headers = {
            "content-type": "audio/wav" if container == "wav" else "application/octet-stream",
            "dg-model-name": model,
            "dg-model-uuid": str(uuid.uuid4()),
            "dg-char-count": str(len(text)),
            "dg-request-id": str(uuid.uuid4()),
        }
        reply = Reply(200, body, headers)
        if self.speak_chunk_bytes:
            size = self.speak_chunk_bytes
            reply.chunks = [body[i : i + size] for i in range(0, len(body), size)]
            reply.chunk_delay_s = self.speak_chunk_delay_s
            reply.drop_after = self._speak_drops.pop(0) if self._speak_drops else None
        self.speak_replies.append(reply)
        return reply

    def drop_speak(self, after_chunks: int, skip: int = 0) -> None:
        """Cut the connection after ``after_chunks`` chunks of a streamed speak body: the body of the
        request after the next ``skip`` ones (which stream whole)."""
        self._speak_drops = [None] * skip + [after_chunks]

    def tone(self, seconds: float, rate: int) -> np.ndarray:
        count = math.ceil(seconds * rate)
        t = np.arange(count) / rate
        return (np.sin(2 * np.pi * self.tone_hz * t) * 8_000).astype(np.int16)
