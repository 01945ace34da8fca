"""The worst case a budget reservation holds: each unit a vendor may bill, bounded by the request."""

from __future__ import annotations

from decimal import Decimal

import pytest

from gateway.core.provider_types import Capabilities, LatencyModel, Locality, Operation
from gateway.money.pricing import PriceBook, UnitPrices, estimated_usage, worst_case_usage
from policies.rank import CandidateInfo, RankContext


def candidate(name: str, locality: Locality, operation: Operation) -> CandidateInfo:
    caps = Capabilities(
        operations=frozenset({operation}),
        locality=locality,
        retains_data=False,
        latency_prior=LatencyModel(fixed_ms=100.0),
    )
    return CandidateInfo(name, f"{name}-model", caps)


LLM = candidate("llm", Locality.CLOUD, Operation.UNDERSTAND)
TTS = candidate("tts", Locality.CLOUD, Operation.SYNTHESIZE)
STT = candidate("stt", Locality.CLOUD, Operation.TRANSCRIBE)
LOCAL = candidate("local", Locality.LOCAL, Operation.UNDERSTAND)
PRICES = PriceBook(
    local_usd_per_hour=Decimal("0.36"),
    vendor_prices={
        ("llm", "llm-model"): UnitPrices(
            per_input_token=Decimal("0.000002"),
            per_audio_input_token=Decimal("0.00004"),
            per_output_token=Decimal("0.00001"),
        ),
        # Billed by the second of speech it returns, as some voices are.
        ("tts", "tts-model"): UnitPrices(per_audio_second=Decimal("0.00025")),
        ("stt", "stt-model"): UnitPrices(per_audio_second=Decimal("0.0001")),
    },
)


def understand(max_answer_tokens: int, audio_s: float = 10.0, question: str = "What?") -> RankContext:
    return RankContext(
        Operation.UNDERSTAND,
        audio_s=audio_s,
        max_answer_tokens=max_answer_tokens,
        question_bytes=len(question.encode()),
    )


def test_an_answer_is_reserved_for_its_whole_token_allowance():
    usage = worst_case_usage(understand(4000))
    assert usage.output_tokens == 4000
    # The prompt's wording, the question's bytes, and at most 15 transcript tokens a second.
    assert usage.input_tokens == 200 + 5 + 150
    assert usage.audio_input_tokens == 100
    cost = PRICES.worst_case(LLM, understand(4000), max_compute_s=30.0)
    assert cost == Decimal("0.000002") * 355 + Decimal("0.00004") * 100 + Decimal("0.00001") * 4000
    # The allowance is what moves it: ten times the tokens, about ten times the reservation.
    assert PRICES.worst_case(LLM, understand(40_000), 30.0) - cost == Decimal("0.00001") * 36_000


def test_the_question_counts_by_its_bytes():
    # A byte-level tokenizer never makes more tokens than bytes: "è" is two.
    assert worst_case_usage(understand(10, question="è" * 100)).input_tokens == 200 + 200 + 150


def test_the_expected_answer_never_exceeds_its_allowance():
    assert estimated_usage(Operation.UNDERSTAND, 10.0, 0, answer_tokens=40).output_tokens == 40
    assert estimated_usage(Operation.UNDERSTAND, 10.0, 0, answer_tokens=4000).output_tokens == 150
    assert estimated_usage(Operation.UNDERSTAND, 10.0, 0).output_tokens == 150


@pytest.mark.parametrize("max_answer_tokens", [1, 150, 4000])
def test_the_worst_case_is_never_below_the_estimate(max_answer_tokens: int):
    ctx = understand(max_answer_tokens)
    assert PRICES.worst_case(LLM, ctx, 0.0) >= PRICES.estimate(LLM, ctx, 100.0)


def test_slower_speech_is_longer_audio():
    normal = RankContext(Operation.SYNTHESIZE, characters=400)
    slow = RankContext(Operation.SYNTHESIZE, characters=400, speed=0.25)
    # At most 0.25 s a character at normal speed, four times that at a quarter of it.
    assert worst_case_usage(normal).audio_seconds == 100.0
    assert worst_case_usage(slow).audio_seconds == 400.0
    assert PRICES.worst_case(TTS, slow, 0.0) == Decimal("0.1")
    # The estimate prices the speech too, where it used to count only characters.
    assert PRICES.estimate(TTS, normal, 10.0) > 0
    assert PRICES.estimate(TTS, normal, 10.0) < PRICES.worst_case(TTS, normal, 0.0)


def test_a_transcription_is_billed_for_the_measured_audio():
    ctx = RankContext(Operation.TRANSCRIBE, audio_s=60.0)
    assert PRICES.worst_case(STT, ctx, 0.0) == PRICES.estimate(STT, ctx, 1.0) == Decimal("0.006")


def test_a_local_engine_is_reserved_for_the_time_its_attempt_may_take():
    ctx = understand(4000)
    # $0.36/h is $0.0001/s: the remaining deadline bounds the compute, whatever the latency estimate.
    assert PRICES.worst_case(LOCAL, ctx, max_compute_s=30.0) == Decimal("0.003")
    assert PRICES.estimate(LOCAL, ctx, latency_ms=500.0) == Decimal("0.00005")
    assert PRICES.worst_case(LOCAL, ctx, max_compute_s=-1.0) == 0
