"""What the gateway accepts as a recording, and how much work it will spend on one."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.core.errors import UnsupportedAudio

# Speech recognisers take 16 kHz mono; that is what a recording decodes to.
ASR_SAMPLE_RATE = 16_000


@dataclass(frozen=True)
class AudioLimits:
    max_bytes: int = 25 * 1024 * 1024
    max_duration_s: float = 1800.0
    # Outside this range a header describes no recording anyone makes, and resampling from it costs
    # without bound (a 2 GHz header held the GIL for 14 s in the resampler).
    min_sample_rate: int = 8_000
    max_sample_rate: int = 192_000
    max_channels: int = 8
    # The fewest bytes of encoded audio a second of sound can take; fewer means the timestamps claim
    # more audio than the bytes can hold. Silence is the cheapest sound: AAC at 8 kHz mono takes 32 B/s,
    # FLAC 123 B/s, Opus (without DTX) 150 B/s.
    min_bytes_per_s: float = 16.0
    # CPU seconds reading a container's packets may take (30 min of 20 ms Opus packets take ~0.7 s).
    probe_cpu_s: float = 3.0
    # CPU seconds a decode may take: a fixed part plus a part per second of audio. Decoding and
    # resampling measured 1–5 ms per second of audio across wav, flac, mp3, opus and aac.
    decode_cpu_s: float = 1.0
    decode_cpu_s_per_audio_s: float = 0.02

    def check_format(self, sample_rate: int, channels: int, where: str) -> None:
        """Refuse a sample rate or channel count no recording has; ``where`` names who claimed it."""
        if not self.min_sample_rate <= sample_rate <= self.max_sample_rate:
            raise UnsupportedAudio(
                f"{where} a sample rate of {sample_rate} Hz; accepted rates are {self.min_sample_rate}–"
                f"{self.max_sample_rate} Hz: resample the recording (16 kHz suits speech)"
            )
        if not 1 <= channels <= self.max_channels:
            raise UnsupportedAudio(
                f"{where} {channels} channels; accepted are 1–{self.max_channels}: "
                "mix the recording down to mono or stereo"
            )

    def decode_cpu_budget_s(self, duration_s: float) -> float:
        return self.decode_cpu_s + self.decode_cpu_s_per_audio_s * duration_s
