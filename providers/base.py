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
lists the ones it implements in ``capabilities.operations``:

- :class:`Transcriber`: a probed :class:`~gateway.core.audio.Recording` in, timed text out. Cloud
  providers send ``recording.original`` as it came; local engines ``await recording.samples()``,
  which decodes once, in a bounded pool, and raises the caller's input errors (InvalidInput,
  UnsupportedAudio) when the audio cannot be decoded. Those reach the caller as they are: they are
  not ProviderErrors, and no other candidate would do better.
- :class:`Synthesizer`: text in, PCM samples out.
- :class:`Answerer`: a question about a recording. ``listens=False`` answerers
  (text LLMs) get the transcript; the router transcribes first.
"""

from __future__ import annotations

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
