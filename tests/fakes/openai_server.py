"""A fake of OpenAI's audio and chat endpoints, speaking the wire format the real SDK sends and parses.

Serves, under ``/v1`` (give the SDK ``base_url=fake.base_url``):

- ``POST /v1/audio/transcriptions``: multipart form (``file``, ``model``, ``language``, ``prompt``,
  ``response_format``, repeated ``timestamp_granularities[]``); answers ``json``, ``text`` or
  ``verbose_json`` (segments and/or words). The gpt-4o transcription models accept only json and text,
  as the real API does.
- ``POST /v1/audio/translations``: multipart form (``file``, ``model``, ``prompt``, ``response_format``,
  ``temperature``); English text (``translation``) as ``json``, ``text`` or ``verbose_json`` (segments,
  ``task: translate``). Like the real API it serves ``whisper-1`` only, and refuses ``language`` (a
  translation's output language is always English).
- ``POST /v1/audio/speech``: JSON body; answers real WAV bytes (a tone at 24 kHz whose length follows
  the text) or raw 24 kHz s16le for ``response_format=pcm``. With ``speech_chunk_bytes`` set the body is
  streamed in chunks of that size, ``speech_chunk_delay_s`` apart, as the real API streams speech while
  it is generated; ``drop_speech(after_chunks)`` cuts one such body off mid-stream. ``speech_replies``
  keeps every speech reply, so a test can see when its body was wholly sent.
- ``POST /v1/chat/completions``: JSON body; answers a ``chat.completion`` whose usage counts
  ``input_audio`` parts as audio prompt tokens (10 per second of audio).

The uploaded audio is decoded for real, so undecodable audio is refused with 400 the way OpenAI does.
Errors use OpenAI's ``{"error": {"message", "type", "param", "code"}}`` envelope.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import math
import re
import time
from dataclasses import dataclass
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any

import numpy as np

from gateway.core.audio import decode_pcm16, encode_wav
from tests.audio_files import tone
from tests.fakes.base import FakeServer, Recorded, Reply

SPEECH_RATE = 24_000
AUDIO_TOKENS_PER_SECOND = 10
VOICES = frozenset(
    {"alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage", "shimmer", "verse"}
)
# verbose_json reports the language by name, as Whisper does.
LANGUAGE_NAMES = {"en": "english", "fr": "french", "de": "german", "es": "spanish", "it": "italian"}
_JSON_ONLY_MODELS = ("gpt-4o-transcribe", "gpt-4o-mini-transcribe")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def openai_error(
    message: str, type_: str = "invalid_request_error", code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


@dataclass(frozen=True)
class FormFile:
    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True)
class Form:
    fields: dict[str, list[str]]
    files: dict[str, FormFile]

    def value(self, name: str) -> str | None:
        values = self.fields.get(name)
        return values[-1] if values else None


def parse_form(recorded: Recorded) -> Form:
    """Parse a multipart/form-data body with the standard library's MIME parser."""
    header = f"Content-Type: {recorded.headers.get('content-type', '')}\r\n\r\n".encode()
    message = BytesParser(policy=HTTP).parsebytes(header + recorded.body)
    fields: dict[str, list[str]] = {}
    files: dict[str, FormFile] = {}
    if not message.is_multipart():
        return Form(fields, files)
    for part in message.iter_parts():
        assert isinstance(part, EmailMessage)
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if not isinstance(name, str) or not isinstance(payload, bytes):
            continue
        filename = part.get_filename()
        if filename is not None:
            files[name] = FormFile(filename, part.get_content_type(), payload)
        else:
            fields.setdefault(name, []).append(payload.decode())
    return Form(fields, files)


def _audio_seconds(data: bytes, mime_type: str = "") -> float | None:
    try:
        samples, rate = decode_pcm16(data, mime_type)
    except ValueError:
        return None
    return len(samples) / rate


class FakeOpenAI(FakeServer):
    def __init__(
        self,
        transcript: str = "The quick brown fox jumps over the lazy dog. It was not amused.",
        answer: str = "The speaker talks about a fox jumping over a dog.",
        seconds_per_char: float = 0.05,
        translation: str = "Good morning. The train to the city leaves at nine.",
    ) -> None:
        super().__init__()
        self._defaults = (transcript, answer, translation)
        self.transcript = transcript
        self.answer = answer
        self.translation = translation
        self.seconds_per_char = seconds_per_char
        self.voices = VOICES
        self.last_usage: dict[str, Any] | None = None
        self.speech_chunk_bytes: int | None = None
        self.speech_chunk_delay_s = 0.0
        self.speech_replies: list[Reply] = []
        self._speech_drops: list[int | None] = []
        self.route("POST", "/v1/audio/transcriptions", self._transcribe)
        self.route("POST", "/v1/audio/translations", self._translate)
        self.route("POST", "/v1/audio/speech", self._speech)
        self.route("POST", "/v1/chat/completions", self._chat)

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def reset(self) -> None:
        """Clear the knobs and recordings, and restore the configured transcript, answer and voices."""
        super().reset()
        self.transcript, self.answer, self.translation = self._defaults
        self.voices = VOICES
        self.last_usage = None
        self.speech_chunk_bytes = None
        self.speech_chunk_delay_s = 0.0
        self.speech_replies = []
        self._speech_drops = []

    def drop_speech(self, after_chunks: int, skip: int = 0) -> None:
        """Cut the connection after ``after_chunks`` chunks of a streamed speech body: the body of the
        speech request after the next ``skip`` ones (which stream whole)."""
        self._speech_drops = [None] * skip + [after_chunks]

    def fail_next(self, status: int, body: dict | str | None = None, times: int = 1) -> None:
        default = openai_error(
            "injected failure", "server_error" if status >= 500 else "invalid_request_error"
        )
        super().fail_next(status, body if body is not None else default, times)

    # -- /v1/audio/transcriptions ------------------------------------------------------

    @staticmethod
    def _upload(form: Form) -> tuple[str, float] | Reply:
        """The model and the uploaded audio's duration, or the refusal the API answers."""
        upload = form.files.get("file")
        model = form.value("model")
        if upload is None or not model:
            missing = "file" if upload is None else "model"
            return Reply(400, openai_error(f"Missing required parameter: '{missing}'.", param=missing))
        duration = _audio_seconds(upload.data)
        if duration is None:
            return Reply(
                400,
                openai_error(
                    "Invalid file format. Supported formats: ['flac', 'm4a', 'mp3', 'mp4', 'mpeg', 'mpga', "
                    "'oga', 'ogg', 'wav', 'webm']",
                    param="file",
                ),
            )
        return model, duration

    def _transcribe(self, recorded: Recorded, _: re.Match[str]) -> Reply:
        form = parse_form(recorded)
        checked = self._upload(form)
        if isinstance(checked, Reply):
            return checked
        model, duration = checked
        response_format = form.value("response_format") or "json"
        granularities = form.fields.get("timestamp_granularities[]", [])
        if model.startswith(_JSON_ONLY_MODELS) and response_format not in ("json", "text"):
            return Reply(
                400,
                openai_error(
                    f"response_format '{response_format}' is not compatible with model '{model}'. "
                    "Use 'json' or 'text' instead.",
                    param="response_format",
                    code="unsupported_value",
                ),
            )
        if granularities and response_format != "verbose_json":
            return Reply(
                400,
                openai_error(
                    "timestamp_granularities requires response_format=verbose_json",
                    param="timestamp_granularities",
                ),
            )
        text = self.transcript
        if response_format == "text":
            return Reply(200, text + "\n", {"content-type": "text/plain; charset=utf-8"})
        if response_format == "json":
            return Reply(200, {"text": text, "usage": self._transcription_usage(model, duration)})
        if response_format != "verbose_json":
            return Reply(400, openai_error("this fake serves json, text and verbose_json only"))
        body: dict[str, Any] = {
            "task": "transcribe",
            "language": LANGUAGE_NAMES.get(form.value("language") or "en", "english"),
            "duration": duration,
            "text": text,
            "usage": {"type": "duration", "seconds": math.ceil(duration)},
        }
        segments = self._segments(text, duration)
        # The API returns segments unless only word timestamps were asked for.
        if not granularities or "segment" in granularities:
            body["segments"] = [segment for segment, _ in segments]
        if "word" in granularities:
            body["words"] = [word for _, words in segments for word in words]
        return Reply(200, body)

    # -- /v1/audio/translations --------------------------------------------------------

    def _translate(self, recorded: Recorded, _: re.Match[str]) -> Reply:
        form = parse_form(recorded)
        checked = self._upload(form)
        if isinstance(checked, Reply):
            return checked
        model, duration = checked
        for refused in ("language", "timestamp_granularities[]"):
            if refused in form.fields:
                return Reply(
                    400, openai_error(f"Unrecognized request argument supplied: {refused}", param=refused)
                )
        if model != "whisper-1":
            return Reply(
                400,
                openai_error(
                    f"Invalid model '{model}': translations support whisper-1 only.",
                    param="model",
                    code="unsupported_value",
                ),
            )
        text = self.translation
        response_format = form.value("response_format") or "json"
        if response_format == "text":
            return Reply(200, text + "\n", {"content-type": "text/plain; charset=utf-8"})
        if response_format == "json":
            return Reply(200, {"text": text})
        if response_format != "verbose_json":
            return Reply(400, openai_error("this fake serves json, text and verbose_json only"))
        return Reply(
            200,
            {
                "task": "translate",
                "language": "english",
                "duration": duration,
                "text": text,
                "segments": [segment for segment, _ in self._segments(text, duration)],
            },
        )

    @staticmethod
    def _transcription_usage(model: str, duration: float) -> dict[str, Any]:
        if model.startswith(_JSON_ONLY_MODELS):
            audio_tokens = math.ceil(duration * AUDIO_TOKENS_PER_SECOND)
            return {
                "type": "tokens",
                "input_tokens": audio_tokens,
                "output_tokens": 20,
                "total_tokens": audio_tokens + 20,
                "input_token_details": {"text_tokens": 0, "audio_tokens": audio_tokens},
            }
        return {"type": "duration", "seconds": math.ceil(duration)}

    @staticmethod
    def _segments(text: str, duration: float) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
        """Sentences as segments, spread over the audio in proportion to their word counts."""
        sentences = [s for s in _SENTENCE_END.split(text.strip()) if s]
        total_words = sum(len(s.split()) for s in sentences) or 1
        per_word = duration / total_words
        out = []
        cursor = 0.0
        for index, sentence in enumerate(sentences):
            start = cursor
            words = []
            for token in sentence.split():
                words.append({"word": token.strip(".,!?;:"), "start": cursor, "end": cursor + per_word})
                cursor += per_word
            segment = {
                "id": index,
                "seek": 0,
                "start": start,
                "end": cursor,
                "text": f" {sentence}",
                "tokens": list(range(50364, 50364 + len(words))),
                "temperature": 0.0,
                "avg_logprob": -0.25,
                "compression_ratio": 1.2,
                "no_speech_prob": 0.01,
            }
            out.append((segment, words))
        return out

    # -- /v1/audio/speech ----------------------------------------------------------

    def _speech(self, recorded: Recorded, _: re.Match[str]) -> Reply:
        body = recorded.json()
        for required in ("model", "input", "voice"):
            if not body.get(required):
                return Reply(400, openai_error(f"Missing required parameter: '{required}'.", param=required))
        if body["voice"] not in self.voices:
            return Reply(
                400,
                openai_error(
                    f"Invalid value: '{body['voice']}'. Supported values are: {sorted(self.voices)}",
                    param="voice",
                    code="invalid_value",
                ),
            )
        speed = float(body.get("speed", 1.0))
        if not 0.25 <= speed <= 4.0:
            return Reply(400, openai_error("speed must be between 0.25 and 4.0", param="speed"))
        seconds = max(0.2, len(body["input"]) * self.seconds_per_char) / speed
        samples = tone(seconds, SPEECH_RATE, hz=330.0)
        response_format = body.get("response_format", "mp3")
        if response_format == "wav":
            reply = Reply(200, encode_wav(samples, SPEECH_RATE), {"content-type": "audio/wav"})
        elif response_format == "pcm":
            reply = Reply(200, samples.astype("<i2").tobytes(), {"content-type": "audio/pcm"})
        else:
            return Reply(400, openai_error("this fake serves wav and pcm only", param="response_format"))
        size = self.speech_chunk_bytes
        if size:
            data = reply.body
            assert isinstance(data, bytes)
            reply.chunks = [data[i : i + size] for i in range(0, len(data), size)]
            reply.chunk_delay_s = self.speech_chunk_delay_s
            reply.drop_after = self._speech_drops.pop(0) if self._speech_drops else None
        self.speech_replies.append(reply)
        return reply

    # -- /v1/chat/completions --------------------------------------------------------

    def _chat(self, recorded: Recorded, _: re.Match[str]) -> Reply:
        body = recorded.json()
        messages = body.get("messages")
        if not body.get("model") or not isinstance(messages, list) or not messages:
            return Reply(400, openai_error("'model' and a non-empty 'messages' are required"))
        text_tokens = 0
        audio_tokens = 0
        for message in messages:
            text_tokens += 4  # the chat template's per-message overhead
            content = message.get("content")
            parts = [{"type": "text", "text": content}] if isinstance(content, str) else content or []
            for part in parts:
                if part.get("type") == "text":
                    text_tokens += len(part["text"].split())
                elif part.get("type") == "input_audio":
                    seconds = self._input_audio_seconds(part.get("input_audio") or {})
                    if seconds is None:
                        return Reply(
                            400,
                            openai_error(
                                "The audio file could not be decoded or its format is not supported.",
                                param="messages",
                                code="invalid_value",
                            ),
                        )
                    audio_tokens += math.ceil(seconds * AUDIO_TOKENS_PER_SECOND)
                else:
                    return Reply(400, openai_error(f"unsupported content part {part.get('type')!r}"))
        words = self.answer.split()
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        finish_reason = "stop"
        if limit is not None and len(words) > limit:
            words, finish_reason = words[:limit], "length"
        usage = {
            "prompt_tokens": text_tokens + audio_tokens,
            "completion_tokens": len(words),
            "total_tokens": text_tokens + audio_tokens + len(words),
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": audio_tokens},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }
        self.last_usage = usage
        return Reply(
            200,
            {
                "id": f"chatcmpl-fake{next(_ids)}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": {
                            "role": "assistant",
                            "content": " ".join(words),
                            "refusal": None,
                            "annotations": [],
                        },
                        "logprobs": None,
                        "finish_reason": finish_reason,
                    }
                ],
                "usage": usage,
                "service_tier": "default",
                "system_fingerprint": "fp_fake",
            },
        )

    @staticmethod
    def _input_audio_seconds(input_audio: dict[str, Any]) -> float | None:
        if input_audio.get("format") not in ("wav", "mp3"):
            return None
        try:
            data = base64.b64decode(input_audio.get("data", ""), validate=True)
        except (binascii.Error, ValueError):
            return None
        return _audio_seconds(data, "audio/mpeg" if input_audio["format"] == "mp3" else "audio/wav")

    def speech_samples(self, text: str, speed: float = 1.0) -> np.ndarray:
        """The samples the fake speaks for ``text``, for comparing with what an adapter decoded."""
        return tone(max(0.2, len(text) * self.seconds_per_char) / speed, SPEECH_RATE, hz=330.0)


_ids = itertools.count(1)
