"""AssemblyAI's Universal-Streaming v3 websocket (``/v3/ws``) on 127.0.0.1, driven by the audio it receives.

It speaks what the ``assemblyai`` SDK's v3 streaming client sends and parses:

- authentication is the raw key in ``Authorization``; any other key gets HTTP 401 on the handshake;
- the query carries ``sample_rate``, ``encoding`` (``pcm_s16le``), ``speech_model``, ``format_turns``,
  ``min_turn_silence`` / ``max_turn_silence`` (ms);
- binary messages are audio; text messages are ``ForceEndpoint``, ``KeepAlive``, ``UpdateConfiguration``
  and ``Terminate``;
- answers: ``Begin`` on connect; ``SpeechStarted`` when a turn starts; ``Turn`` messages as the words of the
  current turn come in (``transcript`` holds the final words, ``words`` also the one still being spoken),
  then ``end_of_turn: true`` once ``min_turn_silence`` ms of audio follow the turn's last word, followed by
  the same turn formatted (``turn_is_formatted: true``) when ``format_turns`` is on; after ``Terminate``,
  the last turn, ``Termination`` and a normal close. Times on the wire are integer milliseconds.

The error knob closes the session with 3005 (AssemblyAI's "Server error").
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers

from tests.fakes.ws_base import SCRIPT, ScriptWord, Session, WsFake

DEFAULT_MIN_TURN_SILENCE_MS = 400


@dataclass
class _State:
    turn_order: int = 0
    consumed: set[ScriptWord] = field(default_factory=set)
    started: set[int] = field(default_factory=set)
    shown: int = -1


class FakeAssemblyAILive(WsFake):
    def __init__(self, api_key: str | None = None) -> None:
        super().__init__(api_key)
        self.script: tuple[tuple[ScriptWord, ...], ...] = SCRIPT

    def reset(self) -> None:
        super().reset()
        self.script = SCRIPT

    def authorized(self, headers: Headers) -> bool:
        return headers.get("Authorization") == self.api_key

    async def converse(self, ws: ServerConnection, session: Session) -> None:
        state = _State()
        await self.send(
            ws,
            session,
            {"type": "Begin", "id": str(uuid.uuid4()), "expires_at": int(time.time()) + 3600},
        )
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
                    self.close(ws, session, 3005, "Internal server error")
                    continue
                await self._advance(ws, session, state)
                continue
            control = json.loads(message)
            session.controls.append(control)
            session.control_at_s.append(session.heard_s)
            kind = control.get("type")
            if kind == "ForceEndpoint":
                await self._end_turn(ws, session, state, self._heard_words(session.heard_s, state))
            elif kind == "Terminate":
                await self._end_turn(ws, session, state, self._heard_words(session.heard_s, state))
                await self.send(
                    ws,
                    session,
                    {
                        "type": "Termination",
                        "audio_duration_seconds": int(session.heard_s),
                        "session_duration_seconds": int(time.monotonic() - session.opened_at) + 1,
                    },
                )
                if not self.stalled(session):
                    self.close(ws, session, 1000)

    def _heard_words(self, heard: float, state: _State) -> list[ScriptWord]:
        return [w for u in self.script for w in u if w.end <= heard and w not in state.consumed]

    async def _advance(self, ws: ServerConnection, session: Session, state: _State) -> None:
        heard = session.heard_s
        silence_s = int(session.query.get("min_turn_silence", DEFAULT_MIN_TURN_SILENCE_MS)) / 1000
        for index, utterance in enumerate(self.script):
            remaining = [w for w in utterance if w not in state.consumed]
            if not remaining:
                continue
            if heard < remaining[0].start:
                return
            if index not in state.started:
                state.started.add(index)
                await self.send(
                    ws, session, {"type": "SpeechStarted", "timestamp": int(remaining[0].start * 1000)}
                )
            if heard >= remaining[-1].end + silence_s:
                await self._end_turn(ws, session, state, remaining)
                continue
            final = [w for w in remaining if w.end <= heard]
            partial = [w for w in remaining if w.start <= heard < w.end][:1]
            if len(final) + len(partial) != state.shown:
                state.shown = len(final) + len(partial)
                await self.send(
                    ws, session, self._turn(state, final, partial, end_of_turn=False, formatted=False)
                )
            return

    async def _end_turn(
        self, ws: ServerConnection, session: Session, state: _State, words: list[ScriptWord]
    ) -> None:
        if not words:
            return
        state.consumed.update(words)
        await self.send(ws, session, self._turn(state, words, [], end_of_turn=True, formatted=False))
        if session.query.get("format_turns", "").lower() == "true":
            await self.send(ws, session, self._turn(state, words, [], end_of_turn=True, formatted=True))
        state.turn_order += 1
        state.shown = -1

    @staticmethod
    def _turn(
        state: _State,
        final: list[ScriptWord],
        partial: list[ScriptWord],
        *,
        end_of_turn: bool,
        formatted: bool,
    ) -> dict[str, Any]:
        def text(w: ScriptWord) -> str:
            return w.punctuated if formatted else w.text

        return {
            "type": "Turn",
            "turn_order": state.turn_order,
            "turn_is_formatted": formatted,
            "end_of_turn": end_of_turn,
            "transcript": " ".join(text(w) for w in final),
            "end_of_turn_confidence": 0.93 if end_of_turn else 0.02,
            "words": [
                {
                    "start": int(w.start * 1000),
                    "end": int(w.end * 1000),
                    "text": text(w),
                    "confidence": w.confidence,
                    "word_is_final": w in final,
                }
                for w in final + partial
            ],
        }
