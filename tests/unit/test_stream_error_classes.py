"""bench/stream_errors.py's classes of the errors a stream's finals make that batch does not."""

from __future__ import annotations

from bench.stream_errors import Streamed, classify

SENTENCE = "and mister john dashwood had then leisure to consider how much there might be his power"
REST = "to consider how much there might be his power"


def ws(text: str) -> list[str]:
    return text.split()


def streamed(*finals: str) -> Streamed:
    out = Streamed([], [], [], " | ".join(finals))
    for index, text in enumerate(finals):
        out.words += ws(text)
        out.utterance += [index] * len(ws(text))
        out.lengths.append(len(ws(text)))
    return out


def test_a_word_lost_at_an_utterance_edge_is_an_edge_error():
    stream = streamed("mister john dashwood had then leisure", REST)
    counts = classify(ws(SENTENCE), stream, ws(SENTENCE), show=False, label="")
    assert counts == {"delete at edge": 1, "batch only": 0}


def test_an_error_batch_makes_too_is_shared_and_one_only_batch_makes_is_counted_apart():
    stream = streamed(SENTENCE.replace("power", "tower"))
    batch = ws(SENTENCE.replace("power", "tower").replace("then", "than"))
    counts = classify(ws(SENTENCE), stream, batch, show=False, label="")
    assert counts == {"shared": 1, "batch only": 1}


def test_a_word_written_twice_across_a_boundary_is_a_duplicate():
    stream = streamed("and mister john dashwood had then leisure to", REST)
    counts = classify(ws(SENTENCE), stream, ws(SENTENCE), show=False, label="")
    assert counts == {"duplicate at edge": 1, "batch only": 0}


def test_errors_inside_short_and_long_utterances_and_numbers_are_told_apart():
    reference = ws("go forward 10 meters then turn left at the second corner and stop go forward 9")
    stream = streamed(
        "go forward 11 meters", "then turn right at the second corner and stop", "go for word 9"
    )
    counts = classify(reference, stream, reference, show=False, label="")
    assert counts["substitute at number"] == 1  # "11" for "10"
    assert counts["substitute at inside"] == 1  # "right" for "left" in a nine-word final
    assert counts["insert at short"] + counts["substitute at short"] == 2  # "for word" in a 4-word final
