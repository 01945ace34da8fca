"""What every provider is, and what it tells the router about itself.

A provider makes exactly **one attempt** per call. Retries, fallback, caching,
pricing and policy belong to the router; a provider that retried on its own
would multiply latency and cost behind the router's back.

A provider declares frozen :class:`Capabilities` that the policy reads without
calling it, and returns its result together with :class:`Usage` measured in
units (audio seconds, characters, tokens, compute seconds). It never returns
money: the price book turns units into cost.

Failures are raised as :class:`gateway.errors.ProviderError` subclasses, mapped
from the engine's or SDK's own exceptions with ``raise ... from exc``. Whether
the router may try another candidate is decided by ``retryable`` on the error,
never by matching message strings.

Three operation protocols exist. A provider implements one or more of them and
lists the ones it implements in ``capabilities.operations`` (the catalogue refuses, at start, a
provider that lists one it does not implement; requests then trust the list):

- :class:`Transcriber`: a probed :class:`~gateway.core.audio.Recording` in, timed text out. Cloud
  providers send ``recording.original`` as it came; local engines ``await recording.samples()``,
  which decodes once, in a bounded pool, and raises the caller's input errors (InvalidInput,
  UnsupportedAudio) when the audio cannot be decoded. Those reach the caller as they are: they are
  not ProviderErrors, and no other candidate would do better.
- :class:`Synthesizer`: text in, PCM samples out.
- :class:`Answerer`: a question about a recording. ``listens=False`` answerers
  (text LLMs) get the transcript; the router transcribes first.
- :class:`StreamingTranscriber`: live audio in, interim and final results out, over one
  :class:`TranscriptionStream` per attempt. It declares the ``streaming`` feature. The stream receives
  16-bit mono PCM at ``config.sample_rate`` (see :mod:`gateway.core.streaming`), and reports every time
  on its own timeline. A failure mid-stream is raised from :meth:`TranscriptionStream.events` as a
  ProviderError; the gateway then opens the next candidate and replays the audio since the last final.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from gateway.core.provider_types import (
    Answer,
    AnswerOptions,
    Capabilities,
    Speech,
    SynthesizeOptions,
    TranscribeOptions,
    Transcript,
)

if TYPE_CHECKING:
    from gateway.core.audio import Recording
    from gateway.core.provider_types import Usage
    from gateway.core.streaming import StreamConfig, StreamEvent


@runtime_checkable
class Provider(Protocol):
    """Common surface of every provider."""

    name: str
    model: str
    capabilities: Capabilities

    async def start(self) -> None:
        """Load and warm up. Called once before any traffic; may take seconds."""

    async def close(self) -> None:
        """Release threads, sessions and memory."""


@runtime_checkable
class Transcriber(Provider, Protocol):
    async def transcribe(
        self, audio: Recording, options: TranscribeOptions, timeout_s: float | None
    ) -> Transcript: ...


@runtime_checkable
class Synthesizer(Provider, Protocol):
    def voices(self) -> frozenset[str]:
        """Voice names this provider accepts."""
        ...

    async def synthesize(self, text: str, options: SynthesizeOptions, timeout_s: float | None) -> Speech: ...


@runtime_checkable
class StreamingSynthesizer(Synthesizer, Protocol):
    """A synthesizer whose engine or vendor returns audio while it is still speaking (streamed bodies).

    StreamSynthesize hands it one sentence at a time, so a failure loses at most a sentence's work.
    Every other synthesizer streams too, a whole sentence per piece, through ``synthesize``.
    """

    def synthesize_stream(
        self, text: str, options: SynthesizeOptions, timeout_s: float | None
    ) -> AsyncIterator[Speech]:
        """Pieces of the speech for ``text`` in order, as they arrive; each carries its own usage (the
        characters on the last piece). A failure part-way is raised as a ProviderError."""
        ...


@runtime_checkable
class Answerer(Provider, Protocol):
    #: True when the model takes audio itself; False when it needs a transcript.
    listens: bool

    async def answer(
        self,
        question: str,
        transcript: str | None,
        audio: Recording | None,
        options: AnswerOptions,
        timeout_s: float | None,
    ) -> Answer: ...


class TranscriptionStream(Protocol):
    """One attempt at live transcription: audio goes in with ``send``, events come out of ``events``.

    ``send``, ``finalize`` and ``keepalive`` may be called while ``events`` is being iterated (from another
    task). ``close`` ends the input: the provider flushes finals for what it heard, then ``events`` ends.
    ``abort`` drops everything at once (the caller left, or the gateway failed over). Any failure (the
    vendor hung up, an error event, a stall the provider detects) is raised from ``events`` as a
    :class:`~gateway.core.errors.ProviderError`, never swallowed.
    """

    async def send(self, pcm: bytes) -> None:
        """Audio: s16le mono PCM at the stream's sample rate, any whole number of samples."""

    async def finalize(self) -> None:
        """Flush: turn what has been heard so far into final results now (the caller's FINALIZE)."""

    async def keepalive(self) -> None:
        """The caller is still there, though it sends no audio (vendors close idle sockets)."""

    async def close(self) -> None:
        """No more audio: flush finals, then let ``events`` end."""

    async def abort(self) -> None:
        """Stop now, without flushing; ``events`` ends or raises soon after."""

    def events(self) -> AsyncIterator[StreamEvent]:
        """Results and speech events, in order, until the stream ends."""
        ...

    def usage(self) -> Usage:
        """What this attempt has consumed so far (audio seconds received, compute seconds)."""
        ...

    def acknowledged_s(self) -> float:
        """How far into the audio sent (seconds on this stream's timeline) the vendor has shown it heard:
        the furthest its results, VAD events and acknowledgements reach. Audio sent past it may never
        have arrived; a stream that fails is billed only up to here."""
        ...


@runtime_checkable
class StreamingTranscriber(Provider, Protocol):
    async def open_stream(self, config: StreamConfig, timeout_s: float | None) -> TranscriptionStream:
        """Connect (a vendor's websocket) or reserve an engine slot; ``timeout_s`` bounds the opening."""
        ...
