"""Deepgram's live transcription websocket (``/v1/listen``) on 127.0.0.1, driven by the audio it receives.

It speaks what the ``deepgram-sdk`` websocket client parses, as Deepgram documents it:

- authentication is ``Authorization: Token <key>`` on the handshake; any other key gets HTTP 401;
- the query carries ``model``, ``encoding``, ``sample_rate``, ``interim_results``, ``endpointing`` (ms of
  silence that ends an utterance), ``utterance_end_ms``, ``vad_events``, ``punctuate``, ``language``...;
- binary messages are audio (s16le at ``sample_rate`` here); text messages are controls: ``Finalize``,
  ``KeepAlive``, ``CloseStream``;
- answers: ``Results`` (``is_final``, ``speech_final``, ``from_finalize``, ``start``, ``duration``,
  ``channel.alternatives[0]`` with ``transcript``, ``confidence`` and ``words``), ``SpeechStarted`` (with
  ``vad_events=true``), ``UtteranceEnd`` (with ``utterance_end_ms``) and, after ``CloseStream``,
  ``Metadata`` followed by a normal close.

The words it "hears" come from a script on the audio timeline (:data:`SCRIPT`): a word is heard once the
audio received passes its end, an utterance ends once ``endpointing`` ms of audio follow its last word.
Silence is answered too, with an empty final about every second of audio, as Deepgram does.
The error knob sends an ``Error`` message and closes with 1011, the code Deepgram closes with on its side.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers

from tests.fakes.ws_base import SCRIPT, ScriptWord, Session, WsFake

MODEL_UUID = "1dbdfb4d-85b2-4659-9fb8-eb5f5e4e6f0e"
# Deepgram answers silence with an empty final about this often.
SILENCE_REPORT_S = 1.0


@dataclass
class _State:
    segment_start: float = 0.0
    finalized: set[ScriptWord] = field(default_factory=set)
    started: set[int] = field(default_factory=set)
    done: set[int] = field(default_factory=set)
    interim_count: int = -1
    utterance_end_due: tuple[float, float] | None = None  # (when, last_word_end)


class FakeDeepgramLive(WsFake):
    def __init__(self, api_key: str | None = None) -> None:
        super().__init__(api_key)
        self.script: tuple[tuple[ScriptWord, ...], ...] = SCRIPT
        self.request_id = str(uuid.uuid4())

    def reset(self) -> None:
        super().reset()
        self.script = SCRIPT

    def authorized(self, headers: Headers) -> bool:
        scheme, _, key = headers.get("Authorization", "").partition(" ")
        return scheme == "Token" and key == self.api_key

    # -- the conversation ---------------------------------------------------------------

    async def converse(self, ws: ServerConnection, session: Session) -> None:
        state = _State()
        async for message in ws:
            if session.closing:
                continue
            if isinstance(message, bytes):
                session.audio.extend(message)
                session.audio_messages += 1
                if self.should_drop(session):
                    self.drop(ws, session)
                    continue
                if self.should_error(session):
                    await self.send(ws, session, _error())
                    self.close(ws, session, 1011, "NET-0001")
                    continue
                await self._advance(ws, session, state)
                continue
            control = json.loads(message)
            session.controls.append(control)
            session.control_at_s.append(session.heard_s)
            kind = control.get("type")
            if kind == "Finalize":
                await self._flush(ws, session, state, from_finalize=True)
            elif kind == "CloseStream":
                await self._flush(ws, session, state, from_finalize=False)
                await self.send(ws, session, self._metadata(session))
                if not self.stalled(session):
                    self.close(ws, session, 1000)

    async def _advance(self, ws: ServerConnection, session: Session, state: _State) -> None:
        heard = session.heard_s
        endpointing = _endpointing_s(session)
        interim = session.query.get("interim_results") == "true"
        for index, utterance in enumerate(self.script):
            if index in state.done:
                continue
            if heard < utterance[0].start:
                break
            if session.query.get("vad_events") == "true" and index not in state.started:
                state.started.add(index)
                await self.send(
                    ws, session, {"type": "SpeechStarted", "channel": [0], "timestamp": utterance[0].start}
                )
            pending = [w for w in utterance if w not in state.finalized and w.end <= heard]
            last = utterance[-1]
            if endpointing is not None and heard >= last.end + endpointing:
                end = last.end + endpointing
                await self._final(ws, session, state, pending, end, speech_final=True)
                state.done.add(index)
                if "utterance_end_ms" in session.query:
                    due = last.end + int(session.query["utterance_end_ms"]) / 1000
                    state.utterance_end_due = (due, last.end)
                continue
            if interim and pending and len(pending) != state.interim_count:
                state.interim_count = len(pending)
                await self.send(ws, session, self._results(session, state, pending, heard, is_final=False))
            break
        if state.utterance_end_due is not None and heard >= state.utterance_end_due[0]:
            last_word_end = state.utterance_end_due[1]
            state.utterance_end_due = None
            await self.send(
                ws, session, {"type": "UtteranceEnd", "channel": [0, 1], "last_word_end": last_word_end}
            )
        if heard - state.segment_start >= SILENCE_REPORT_S and not self._unfinalized_heard(state, heard):
            await self._final(ws, session, state, [], heard, speech_final=False)

    def _unfinalized_heard(self, state: _State, heard: float) -> bool:
        return any(w.end <= heard and w not in state.finalized for u in self.script for w in u)

    async def _flush(
        self, ws: ServerConnection, session: Session, state: _State, *, from_finalize: bool
    ) -> None:
        heard = session.heard_s
        pending = [w for u in self.script for w in u if w.end <= heard and w not in state.finalized]
        await self._final(ws, session, state, pending, heard, speech_final=False, from_finalize=from_finalize)

    async def _final(
        self,
        ws: ServerConnection,
        session: Session,
        state: _State,
        words: list[ScriptWord],
        end: float,
        *,
        speech_final: bool,
        from_finalize: bool = False,
    ) -> None:
        message = self._results(session, state, words, end, is_final=True)
        message["speech_final"] = speech_final
        message["from_finalize"] = from_finalize
        state.finalized.update(words)
        state.segment_start = max(end, state.segment_start)
        state.interim_count = -1
        await self.send(ws, session, message)

    def _results(
        self, session: Session, state: _State, words: list[ScriptWord], end: float, *, is_final: bool
    ) -> dict[str, Any]:
        punctuate = session.query.get("punctuate") == "true" or session.query.get("smart_format") == "true"
        start = state.segment_start
        return {
            "type": "Results",
            "channel_index": [0, 1],
            "duration": round(max(end - start, 0.0), 3),
            "start": round(start, 3),
            "is_final": is_final,
            "speech_final": False,
            "channel": {
                "alternatives": [
                    {
                        "transcript": " ".join(w.punctuated if punctuate else w.text for w in words),
                        "confidence": min((w.confidence for w in words), default=0.0),
                        "words": [
                            {
                                "word": w.text,
                                "start": w.start,
                                "end": w.end,
                                "confidence": w.confidence,
                                **({"punctuated_word": w.punctuated} if punctuate else {}),
                            }
                            for w in words
                        ],
                    }
                ]
            },
            "metadata": {
                "request_id": self.request_id,
                "model_info": {"name": "general-nova-3", "version": "2025-04-17.21547", "arch": "nova-3"},
                "model_uuid": MODEL_UUID,
            },
        }

    def _metadata(self, session: Session) -> dict[str, Any]:
        return {
            "type": "Metadata",
            "transaction_key": "deprecated",
            "request_id": self.request_id,
            "sha256": "",
            "created": "2026-11-27T00:00:00.000Z",
            "duration": round(session.heard_s, 3),
            "channels": 1,
            "models": [MODEL_UUID],
        }


def _endpointing_s(session: Session) -> float | None:
    value = session.query.get("endpointing", "10")
    if value == "false":
        return None
    return int(value) / 1000


def _error() -> dict[str, Any]:
    return {
        "type": "Error",
        "variant": "net",
        "code": "NET-0001",
        "description": "Deepgram did not receive audio data or a text message within the timeout window.",
    }
