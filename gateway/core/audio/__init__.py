"""Audio in and out: probe uploads by demuxing, decode only when an engine needs samples, encode results.

- :mod:`.probe` validates and measures an upload from container metadata and packet timestamps;
- :mod:`.decode` turns it into 16 kHz mono samples, lazily, with bounded work;
- :mod:`.recording` is what providers receive; :mod:`.intake` reads, probes and owns the decode pool;
- :mod:`.uri` reads ``file://`` URIs under the allowed roots; :mod:`.encode` writes PCM and WAV.
"""

from gateway.core.audio.decode import decode_pcm16, decode_samples
from gateway.core.audio.encode import encode_pcm16, encode_wav, resample_pcm16
from gateway.core.audio.intake import AudioIntake
from gateway.core.audio.limits import ASR_SAMPLE_RATE, AudioLimits
from gateway.core.audio.probe import ProbeResult, probe, quick_pcm_wav
from gateway.core.audio.recording import Recording
from gateway.core.audio.uri import read_uri

__all__ = [
    "ASR_SAMPLE_RATE",
    "AudioIntake",
    "AudioLimits",
    "ProbeResult",
    "Recording",
    "decode_pcm16",
    "decode_samples",
    "encode_pcm16",
    "encode_wav",
    "probe",
    "quick_pcm_wav",
    "read_uri",
    "resample_pcm16",
]
