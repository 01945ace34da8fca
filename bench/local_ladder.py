"""The local model ladder: each rung's real-time factor and word error rate on this node.

Each rung (Whisper tiny.en, the default; Whisper base, multilingual, joined from its PyPI packages) is an
engine as the gateway runs it (``FasterWhisperTranscriber.transcribe``, default settings, one worker), loaded
in this process. The short English recordings of the shared speech set (``../shared/speech``, subset
``short``) are transcribed one at a time, the rungs taking turns on each recording, round after round; a
rung's real-time factor is the median over rounds of its wall seconds over the audio's seconds. Its ratio to
tiny.en's is what ``providers/faster_whisper.py`` records for ranking (``RTF``): the machine may be shared,
and the ratio of interleaved runs is what holds. The goal: the measured ratio is within a quarter of the
recorded one. The rungs' word error rates on these recordings are printed beside it, for information (the
quality objective ranks by published WER).

Run: PYTHONPATH=. python bench/local_ladder.py [--quick] [--rounds N]
"""

from __future__ import annotations

import asyncio
import statistics
import time

from bench.harness import argument_parser, report
from gateway.core.audio import encode_wav
from gateway.core.provider_types import TranscribeOptions
from gateway.settings import WhisperSettings
from providers.faster_whisper import RTF, FasterWhisperTranscriber
from tests import speech
from tests.audio_files import recording

RUNGS = {"tiny.en": "", "base": "base"}
# How far the measured time ratio may stray from the one ranking uses before the record needs updating.
TOLERANCE = 0.25


async def measure(clip_ids: list[str], rounds: int) -> None:
    clips = {clip_id: speech.real_clip(clip_id) for clip_id in clip_ids}
    wavs = {clip_id: encode_wav(clip.samples, clip.rate) for clip_id, clip in clips.items()}
    audio_s = sum(clip.duration_s for clip in clips.values())
    engines = {}
    for rung, model in RUNGS.items():
        engine = FasterWhisperTranscriber(WhisperSettings(model=model, workers=1), name=rung)
        await engine.start()
        engines[rung] = engine
    options = TranscribeOptions(language="en")
    wall: dict[str, list[float]] = {rung: [] for rung in engines}
    wrong = dict.fromkeys(engines, 0)
    words = dict.fromkeys(engines, 0)
    for index in range(rounds):
        spent = dict.fromkeys(engines, 0.0)
        order = list(engines.items()) if index % 2 == 0 else list(reversed(engines.items()))
        for clip_id, wav in wavs.items():
            for rung, engine in order:
                started = time.perf_counter()
                text = (await engine.transcribe(recording(wav, "audio/wav"), options, None)).text
                spent[rung] += time.perf_counter() - started
                if index == 0:
                    errors, _, count = speech.errors(clips[clip_id].reference, text)
                    wrong[rung], words[rung] = wrong[rung] + errors, words[rung] + count
        for rung, seconds in spent.items():
            wall[rung].append(seconds)
    memory = {rung: engine.memory_bytes for rung, engine in engines.items()}
    for engine in engines.values():
        await engine.close()

    rtf = {rung: statistics.median(seconds) / audio_s for rung, seconds in wall.items()}
    wer = {rung: wrong[rung] / max(words[rung], 1) for rung in engines}
    for rung in engines:
        print(
            f"{rung:8s} rtf {rtf[rung]:.3f}  WER {wer[rung]:6.1%} ({wrong[rung]}/{words[rung]})  "
            f"model memory {memory[rung] / 2**20:.0f} MB"
        )
    measured, recorded = rtf["base"] / rtf["tiny.en"], RTF["base"] / RTF["tiny.en"]
    report(
        "base/tiny.en time",
        f"{measured:.2f}x",
        f"within {TOLERANCE:.0%} of {recorded:.2f}x",
        abs(measured / recorded - 1) <= TOLERANCE,
        f"{len(clips)} clips, {audio_s:.1f} s of audio, {rounds} interleaved rounds, "
        f"{'; '.join(f'{r} {rtf[r]:.3f} rtf' for r in engines)}",
    )


def main() -> None:
    parser = argument_parser(__doc__, "three clips, one round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    shorts = [clip_id for clip_id, entry in speech.manifest().items() if entry["subset"] == "short"]
    asyncio.run(measure(shorts[:3] if args.quick else shorts, 1 if args.quick else args.rounds))


if __name__ == "__main__":
    main()
