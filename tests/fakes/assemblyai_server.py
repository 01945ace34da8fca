"""AssemblyAI's pre-recorded API on 127.0.0.1: upload, create a transcript job, poll it.

Speaks the wire format the ``assemblyai`` SDK sends and parses:

- ``POST /v2/upload``: the raw file as the body; answers ``{"upload_url": ...}``.
- ``POST /v2/transcript``: a JSON job (``audio_url``, ``speech_model``,
  ``language_code`` ...); answers the job as ``queued``, echoing its settings.
- ``GET /v2/transcript/{id}``: the job, ``processing`` for the first
  ``polls_before_done`` polls, then ``completed`` (text, words, utterances with
  speaker labels when asked, confidence, an integer ``audio_duration``) or
  ``error`` with a reason when ``job_error`` is set.

Every reply to a poll carries ``audio_url``: the SDK's model requires it.
Authentication is the raw key in ``Authorization`` (no "Bearer"); any other
value gets AssemblyAI's 401. Times on the wire are integer milliseconds.

Beyond the base server's knobs, ``fail_step(step, status)`` fails one
particular step (``upload``, ``create`` or ``poll``) once, and
``never_complete`` keeps a job processing forever.
"""

from __future__ import annotations

import re
import threading
import uuid
from dataclasses import dataclass
from typing import Any, Literal

from tests.fakes.base import FakeServer, Recorded, Reply

Step = Literal["upload", "create", "poll"]


@dataclass(frozen=True)
class SpokenWord:
    text: str
    start_ms: int
    end_ms: int
    confidence: float
    speaker: str


# Two speakers, two turns each way: enough to see utterances regroup words by speaker.
CONVERSATION: tuple[SpokenWord, ...] = (
    SpokenWord("Hello", 120, 480, 0.98, "A"),
    SpokenWord("there.", 520, 900, 0.95, "A"),
    SpokenWord("Hi,", 1100, 1300, 0.97, "B"),
    SpokenWord("back.", 1350, 1800, 0.90, "B"),
)

_UNAVAILABLE = {"status": "unavailable", "results": [], "summary": {}}


class FakeAssemblyAI(FakeServer):
    def __init__(self, api_key: str = "aai-test-key") -> None:
        super().__init__()
        self.api_key = api_key
        self.words: tuple[SpokenWord, ...] = CONVERSATION
        self.audio_duration = 2
        self.detected_language = "en_us"
        self.polls_before_done = 1
        self.never_complete = False
        self.job_error: str | None = None
        self.uploads: dict[str, bytes] = {}
        self.jobs: dict[str, dict[str, Any]] = {}
        self._polls: dict[str, int] = {}
        self._step_failures: dict[Step, Reply] = {}
        self._state = threading.Lock()
        self.route("POST", "/v2/upload", self._upload)
        self.route("POST", "/v2/transcript", self._create)
        self.route("GET", r"/v2/transcript/(?P<id>[^/]+)", self._poll)

    # -- knobs and observations --------------------------------------------------------

    def fail_step(self, step: Step, status: int, body: dict[str, Any] | None = None) -> None:
        """Answer the next request of this step with ``status`` (and ``body``), once."""
        with self._state:
            self._step_failures[step] = Reply(status, body if body is not None else {"error": "injected"})

    def reset(self) -> None:
        super().reset()
        with self._state:
            self.uploads.clear()
            self.jobs.clear()
            self._polls.clear()
            self._step_failures.clear()
        self.words = CONVERSATION
        self.audio_duration = 2
        self.detected_language = "en_us"
        self.polls_before_done = 1
        self.never_complete = False
        self.job_error = None

    def requests_to(self, method: str, pattern: str) -> list[Recorded]:
        return [r for r in self.requests if r.method == method and re.fullmatch(pattern, r.path)]

    @property
    def polls(self) -> list[Recorded]:
        return self.requests_to("GET", r"/v2/transcript/[^/]+")

    @property
    def creates(self) -> list[Recorded]:
        return self.requests_to("POST", "/v2/transcript")

    @property
    def upload_requests(self) -> list[Recorded]:
        return self.requests_to("POST", "/v2/upload")

    # -- routes --------------------------------------------------------------------

    def _refused(self, request: Recorded, step: Step) -> Reply | None:
        if request.headers.get("authorization") != self.api_key:
            return Reply(401, {"error": "Authentication error, API token missing/invalid"})
        with self._state:
            return self._step_failures.pop(step, None)

    def _upload(self, request: Recorded, _: re.Match[str]) -> Reply:
        refused = self._refused(request, "upload")
        if refused is not None:
            return refused
        token = uuid.uuid4().hex
        url = f"{self.url}/upload/{token}"
        with self._state:
            self.uploads[url] = request.body
        return Reply(200, {"upload_url": url})

    def _create(self, request: Recorded, _: re.Match[str]) -> Reply:
        refused = self._refused(request, "create")
        if refused is not None:
            return refused
        try:
            body = request.json()
        except ValueError:
            return Reply(400, {"error": "Invalid JSON payload"})
        if not isinstance(body, dict) or not isinstance(body.get("audio_url"), str):
            return Reply(400, {"error": "audio_url is required"})
        job_id = str(uuid.uuid4())
        with self._state:
            self.jobs[job_id] = body
            self._polls[job_id] = 0
        return Reply(200, self._transcript(job_id, body, "queued"))

    def _poll(self, request: Recorded, match: re.Match[str]) -> Reply:
        refused = self._refused(request, "poll")
        if refused is not None:
            return refused
        job_id = match["id"]
        with self._state:
            body = self.jobs.get(job_id)
            if body is None:
                return Reply(400, {"error": "Transcript lookup error, transcript id not found"})
            self._polls[job_id] += 1
            polls = self._polls[job_id]
            uploaded = body["audio_url"] in self.uploads
        if self.never_complete or polls <= self.polls_before_done:
            return Reply(200, self._transcript(job_id, body, "processing"))
        if not uploaded:
            return Reply(200, self._failed(job_id, body, "Download error, unable to download the audio_url"))
        if self.job_error is not None:
            return Reply(200, self._failed(job_id, body, self.job_error))
        return Reply(200, self._completed(job_id, body))

    # -- bodies --------------------------------------------------------------------

    def _transcript(self, job_id: str, body: dict[str, Any], status: str) -> dict[str, Any]:
        """A job as the API shows it: its settings (with the API's defaults) and no results yet."""
        return {
            "id": job_id,
            "status": status,
            "audio_url": body["audio_url"],
            "language_model": "assemblyai_default",
            "acoustic_model": "assemblyai_default",
            "language_code": body.get("language_code", None if body.get("language_detection") else "en_us"),
            "language_detection": body.get("language_detection", False),
            "language_confidence_threshold": None,
            "language_confidence": None,
            "speech_model": body.get("speech_model"),
            "punctuate": body.get("punctuate", True),
            "format_text": body.get("format_text", True),
            "speaker_labels": body.get("speaker_labels", False),
            "speakers_expected": body.get("speakers_expected"),
            "dual_channel": None,
            "webhook_url": None,
            "webhook_status_code": None,
            "webhook_auth": False,
            "webhook_auth_header_name": None,
            "audio_start_from": None,
            "audio_end_at": None,
            "word_boost": [],
            "boost_param": None,
            "filter_profanity": False,
            "redact_pii": False,
            "redact_pii_audio": False,
            "redact_pii_audio_quality": None,
            "redact_pii_policies": None,
            "redact_pii_sub": None,
            "content_safety": False,
            "content_safety_labels": _UNAVAILABLE,
            "iab_categories": False,
            "iab_categories_result": _UNAVAILABLE,
            "auto_highlights": False,
            "auto_highlights_result": None,
            "auto_chapters": False,
            "chapters": None,
            "summarization": False,
            "summary_type": None,
            "summary_model": None,
            "summary": None,
            "custom_spelling": None,
            "disfluencies": False,
            "sentiment_analysis": False,
            "sentiment_analysis_results": None,
            "entity_detection": False,
            "entities": None,
            "speech_threshold": None,
            "throttled": False,
            "text": None,
            "words": None,
            "utterances": None,
            "confidence": None,
            "audio_duration": None,
            "error": None,
        }

    def _failed(self, job_id: str, body: dict[str, Any], reason: str) -> dict[str, Any]:
        return {**self._transcript(job_id, body, "error"), "error": reason}

    def _completed(self, job_id: str, body: dict[str, Any]) -> dict[str, Any]:
        diarized = bool(body.get("speaker_labels"))
        words = [_word(w, diarized) for w in self.words]
        language = body.get("language_code") or self.detected_language
        return {
            **self._transcript(job_id, body, "completed"),
            "language_code": language,
            "language_confidence": 0.97 if body.get("language_detection") else None,
            "text": " ".join(w.text for w in self.words),
            "words": words,
            "utterances": _utterances(self.words) if diarized else None,
            "confidence": _mean([w.confidence for w in self.words]),
            "audio_duration": self.audio_duration,
            "speech_model_used": body.get("speech_model") or "universal",
        }


def _word(word: SpokenWord, diarized: bool) -> dict[str, Any]:
    return {
        "text": word.text,
        "start": word.start_ms,
        "end": word.end_ms,
        "confidence": word.confidence,
        "speaker": word.speaker if diarized else None,
        "channel": None,
    }


def _utterances(words: tuple[SpokenWord, ...]) -> list[dict[str, Any]]:
    turns: list[list[SpokenWord]] = []
    for word in words:
        if turns and turns[-1][-1].speaker == word.speaker:
            turns[-1].append(word)
        else:
            turns.append([word])
    return [
        {
            "text": " ".join(w.text for w in turn),
            "start": turn[0].start_ms,
            "end": turn[-1].end_ms,
            "confidence": _mean([w.confidence for w in turn]),
            "speaker": turn[0].speaker,
            "channel": None,
            "words": [_word(w, True) for w in turn],
        }
        for turn in turns
    ]


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0
