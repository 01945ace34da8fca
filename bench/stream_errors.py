"""Where a stream's finals lose words that batch transcription of the same recording keeps.

Each recording of bench/stream_transcribe.py is streamed to the local engine in this process (in 100 ms
chunks, as fast as the engine takes them: a stream's finals are then the same decodes of the same
utterances as at real-time pace, bar an utterance over ``STREAM_MAX_BUFFER_S``, which real time cuts
early) and transcribed whole. Both are aligned word by word with the reference after Whisper's English
normaliser, and every error the stream makes where batch got the reference word right is classified by
where it falls in the stream's utterances:

- ``edge``: at the first or the last word of an utterance (a word clipped by the segmentation);
- ``short``: in an utterance of fewer than ``SHORT_WORDS`` words (too little context for Whisper);
- ``number``: a reference word holding a digit (the normaliser's spelling of numbers);
- ``inside``: elsewhere, within an utterance.

An insertion at an utterance's edge that repeats a word of the neighbouring utterance is a ``duplicate``.
Errors both sides make are counted apart (``shared``), and so are errors batch makes and the stream does
not (``batch only``).

Settings come from the environment (``GATEWAY_WHISPER__…``); ``--show`` prints each recording's alignment.

Run: PYTHONPATH=. python bench/stream_errors.py [--quick] [--show]
"""

from __future__ import annotations

import asyncio
import collections
from dataclasses import dataclass

import jiwer

from bench.harness import argument_parser
from bench.stream_transcribe import CHUNK_S, FULL, QUICK, TRAILING_SILENCE_S
from gateway.core.audio import encode_wav
from gateway.core.provider_types import TranscribeOptions
from gateway.core.streaming import StreamConfig, StreamResult
from gateway.settings import Settings
from providers.faster_whisper import FasterWhisperTranscriber
from tests import speech
from tests.audio_files import recording

SHORT_WORDS = 5


@dataclass(frozen=True)
class Op:
    """One word of an alignment: ``ref`` index (None for an insertion) and what the hypothesis has."""

    kind: str  # equal, substitute, delete, insert
    ref: int | None
    ref_word: str
    hyp: int | None
    hyp_word: str


def align(reference: list[str], hypothesis: list[str]) -> list[Op]:
    if not hypothesis:
        return [Op("delete", i, w, None, "") for i, w in enumerate(reference)]
    out = jiwer.process_words(" ".join(reference), " ".join(hypothesis))
    ops: list[Op] = []
    for chunk in out.alignments[0]:
        if chunk.type == "insert":
            for j in range(chunk.hyp_start_idx, chunk.hyp_end_idx):
                ops.append(Op("insert", None, "", j, hypothesis[j]))
            continue
        for k in range(chunk.ref_end_idx - chunk.ref_start_idx):
            i = chunk.ref_start_idx + k
            j = chunk.hyp_start_idx + k if chunk.type != "delete" else None
            ops.append(Op(chunk.type, i, reference[i], j, hypothesis[j] if j is not None else ""))
    return ops


@dataclass
class Streamed:
    words: list[str]  # the finals' words, normalised
    utterance: list[int]  # the final each word belongs to
    lengths: list[int]  # words per final
    text: str  # the finals' texts, as written, joined by " | "


async def stream(provider: FasterWhisperTranscriber, clip: speech.RealClip) -> Streamed:
    session = await provider.open_stream(StreamConfig(sample_rate=clip.rate, language="en"), timeout_s=10)
    pcm = clip.pcm() + b"\0\0" * round(TRAILING_SILENCE_S * clip.rate)
    step = round(CHUNK_S * clip.rate) * 2
    for offset in range(0, len(pcm), step):
        await session.send(pcm[offset : offset + step])
    await session.close()
    finals = [e for e in [e async for e in session.events()] if isinstance(e, StreamResult) and e.is_final]
    out = Streamed([], [], [], " | ".join(f.text for f in finals))
    for index, final in enumerate(finals):
        words = speech.english(final.text).split()
        out.words += words
        out.utterance += [index] * len(words)
        out.lengths.append(len(words))
    return out


def classify(
    ref: list[str], streamed: Streamed, batch: list[str], show: bool, label: str
) -> collections.Counter[str]:
    counts: collections.Counter[str] = collections.Counter()
    batch_ok = {op.ref for op in align(ref, batch) if op.kind == "equal"}
    batch_errors = sum(1 for op in align(ref, batch) if op.kind != "equal")
    stream_ops = align(ref, streamed.words)
    lines = []
    previous_hyp: int | None = None
    for op in stream_ops:
        hyp = op.hyp if op.hyp is not None else previous_hyp
        if op.hyp is not None:
            previous_hyp = op.hyp
        if op.kind == "equal":
            lines.append(op.ref_word)
            continue
        if op.kind == "insert":
            u = streamed.utterance[op.hyp] if op.hyp is not None else -1
            first = op.hyp is not None and (op.hyp == 0 or streamed.utterance[op.hyp - 1] != u)
            last = op.hyp is not None and (
                op.hyp == len(streamed.words) - 1 or streamed.utterance[op.hyp + 1] != u
            )
            neighbours = set(streamed.words[max(0, op.hyp - 3) : op.hyp] if op.hyp else [])
            neighbours |= set(streamed.words[op.hyp + 1 : op.hyp + 4] if op.hyp is not None else [])
            kind = "duplicate" if (first or last) and op.hyp_word in neighbours else "insert"
            where = "edge" if first or last else ("short" if streamed.lengths[u] < SHORT_WORDS else "inside")
            counts[f"{kind} at {where}"] += 1
            lines.append(f"[+{op.hyp_word}]")
            continue
        assert op.ref is not None
        if op.ref not in batch_ok:
            counts["shared"] += 1
            lines.append(f"[{op.ref_word}->{op.hyp_word or '-'}]*")
            continue
        # Where the stream was when it lost this reference word: the final of the nearest word it wrote.
        u = streamed.utterance[hyp] if hyp is not None and streamed.utterance else -1
        at_edge = False
        if op.hyp is not None:
            at_edge = (
                op.hyp == 0
                or streamed.utterance[op.hyp - 1] != u
                or op.hyp == len(streamed.words) - 1
                or streamed.utterance[op.hyp + 1] != u
            )
        else:
            # A deletion sits at an edge when the words around it belong to different finals.
            nxt = next((o.hyp for o in stream_ops[stream_ops.index(op) :] if o.hyp is not None), None)
            at_edge = hyp is None or nxt is None or streamed.utterance[hyp] != streamed.utterance[nxt]
        if any(c.isdigit() for c in op.ref_word):
            where = "number"
        elif at_edge:
            where = "edge"
        elif u >= 0 and streamed.lengths[u] < SHORT_WORDS:
            where = "short"
        else:
            where = "inside"
        counts[f"{op.kind} at {where}"] += 1
        lines.append(f"[{op.ref_word}->{op.hyp_word or '-'}]")
    counts["batch only"] = max(0, batch_errors - counts["shared"])
    if show:
        marks = []
        for i, w in enumerate(streamed.words):
            if i and streamed.utterance[i] != streamed.utterance[i - 1]:
                marks.append("|")
            marks.append(w)
        print(f"--- {label}: {len(streamed.lengths)} finals, words per final {streamed.lengths}")
        print("  finals: " + streamed.text)
        print("  stream: " + " ".join(marks))
        print("  batch:  " + " ".join(batch))
        print("  errors: " + " ".join(lines))
    return counts


async def analyse(clip_ids: tuple[str, ...], show: bool) -> None:
    settings = Settings().whisper
    provider = FasterWhisperTranscriber(settings)
    await provider.start()
    total: collections.Counter[str] = collections.Counter()
    words = stream_errors = batch_errors = 0
    try:
        for clip_id in clip_ids:
            clip = speech.real_clip(clip_id)
            streamed = await stream(provider, clip)
            result = await provider.transcribe(
                recording(encode_wav(clip.samples, clip.rate)), TranscribeOptions(language="en"), None
            )
            ref = speech.english(clip.reference).split()
            batch = speech.english(result.text).split()
            counts = classify(ref, streamed, batch, show, clip_id)
            total += counts
            words += len(ref)
            stream_errors += speech.errors(clip.reference, streamed.text.replace(" | ", " "))[0]
            batch_errors += speech.errors(clip.reference, result.text)[0]
    finally:
        await provider.close()
    print(
        f"stream {stream_errors} errors, batch {batch_errors}, over {words} reference words: "
        f"WER {stream_errors / words:.1%} vs {batch_errors / words:.1%}, ratio "
        f"{stream_errors / max(batch_errors, 1):.2f}"
    )
    for key, count in sorted(total.items(), key=lambda kv: -kv[1]):
        print(f"  {key}: {count}")


def main() -> None:
    parser = argument_parser(__doc__, "one short recording (a smoke run)")
    parser.add_argument("--show", action="store_true", help="print each recording's alignment")
    parser.add_argument(
        "--all", action="store_true", help="every recording of the speech set, not only the benchmark's"
    )
    args = parser.parse_args()
    clips = tuple(speech.manifest()) if args.all else (QUICK if args.quick else FULL).clips
    asyncio.run(analyse(clips, args.show))


if __name__ == "__main__":
    main()
