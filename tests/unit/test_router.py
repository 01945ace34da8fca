"""The router's attempt loop, with fake providers: fallback, errors, privacy, deadlines, chaining."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from decimal import Decimal

import pytest

from gateway.app import build_app
from gateway.core.domain import (
    AudioInput,
    OutputFormat,
    Privacy,
    Routing,
    SynthesizeRequest,
    TranscribeRequest,
)
from gateway.core.domain import UnderstandRequest as UnderstandReq
from gateway.core.errors import (
    AllAttemptsFailed,
    DeadlineExceeded,
    InvalidInput,
    NoRoute,
    NotReady,
    ProviderInputError,
    ProviderRejected,
    ProviderUnavailable,
)
from gateway.core.provider_types import Locality, TranscribeOptions
from gateway.money.pricing import UnitPrices
from gateway.routing.attempts import attempt_timeout_s
from gateway.routing.router import RequestContext
from gateway.settings import Settings
from providers.testing import FakeAnswerer, FakeSynthesizer, FakeTranscriber
from tests.audio_files import encode, tone

CLIP = AudioInput(content=encode(tone(2.0), 16_000, "wav"), uri=None, mime_type="audio/wav")


def ctx(timeout_s: float = 30.0) -> RequestContext:
    return RequestContext(request_id="r1", deadline=time.monotonic() + timeout_s)


async def started(*providers):
    app = build_app(Settings(), providers=list(providers))
    await app.catalogue.start()
    return app.router


def transcribe_request(**routing) -> TranscribeRequest:
    return TranscribeRequest(audio=CLIP, options=TranscribeOptions(), routing=Routing(**routing))


async def test_falls_back_to_the_next_candidate_on_a_provider_failure():
    first = FakeTranscriber(name="a", fail_with=ProviderUnavailable("a", "overloaded"))
    second = FakeTranscriber(name="b", text="from b")
    router = await started(first, second)
    result = await router.transcribe(transcribe_request(), ctx())
    assert result.text == "from b"
    assert [(a.provider, a.outcome) for a in result.route.attempts] == [("a", "unavailable"), ("b", "ok")]
    assert result.route.attempts[0].cost_usd == 0
    assert result.route.cost_usd == result.route.attempts[1].cost_usd
    assert result.duration_s == pytest.approx(2.0, abs=0.01)


async def test_every_attempt_failing_lists_each_one():
    router = await started(
        FakeTranscriber(name="a", fail_with=ProviderUnavailable("a", "down")),
        FakeTranscriber(name="b", fail_with=ProviderUnavailable("b", "also down")),
    )
    with pytest.raises(AllAttemptsFailed, match=r"a: down.*b: also down"):
        await router.transcribe(transcribe_request(), ctx())


async def test_caller_input_errors_do_not_fall_back():
    first = FakeTranscriber(name="a", fail_with=ProviderInputError("a", "unknown voice"))
    second = FakeTranscriber(name="b")
    router = await started(first, second)
    with pytest.raises(InvalidInput, match="unknown voice"):
        await router.transcribe(transcribe_request(), ctx())
    assert second.calls == 0


async def test_local_only_fails_rather_than_leaving_the_building():
    local = FakeTranscriber(name="local", fail_with=ProviderUnavailable("local", "crashed"))
    onprem = FakeTranscriber(name="onprem", locality=Locality.ON_PREM)
    cloud = FakeTranscriber(name="cloud", locality=Locality.CLOUD)
    router = await started(local, onprem, cloud)
    with pytest.raises(AllAttemptsFailed):
        await router.transcribe(transcribe_request(privacy=Privacy.LOCAL_ONLY), ctx())
    assert (onprem.calls, cloud.calls) == (0, 0)
    result = await router.transcribe(transcribe_request(privacy=Privacy.ON_PREM), ctx())
    assert result.route.provider == "onprem" and cloud.calls == 0


async def test_no_candidate_names_the_rule_for_each_provider():
    router = await started(FakeTranscriber(name="cloud", locality=Locality.CLOUD), FakeSynthesizer())
    with pytest.raises(NoRoute) as caught:
        await router.transcribe(transcribe_request(privacy=Privacy.LOCAL_ONLY), ctx())
    message = str(caught.value)
    assert "cloud: locality cloud is not allowed under privacy local_only" in message
    assert "fake-tts: does not transcribe" in message


async def test_engines_still_loading_is_not_ready():
    app = build_app(Settings(), providers=[FakeTranscriber()])
    with pytest.raises(NotReady, match="still loading"):
        await app.router.transcribe(transcribe_request(), ctx())


async def test_a_slow_provider_times_out_and_the_next_one_serves():
    slow = FakeTranscriber(name="slow", delay_s=5.0)
    fast = FakeTranscriber(name="fast")
    router = await started(slow, fast)
    began = time.monotonic()
    # The slow one gets only its share of the deadline, which leaves the rest to the next candidate.
    result = await router.transcribe(transcribe_request(), ctx(timeout_s=1.0))
    assert time.monotonic() - began < 1.0
    assert result.route.provider == "fast"
    assert [(a.provider, a.outcome) for a in result.route.attempts] == [("slow", "timeout"), ("fast", "ok")]
    assert result.route.attempts[0].latency_ms == pytest.approx(500, abs=150)
    assert (slow.calls, fast.calls) == (1, 1)


class _Deaf(FakeTranscriber):
    """A provider that ignores the timeout it is given and simply hangs."""

    async def transcribe(self, audio, options, timeout_s):  # type: ignore[no-untyped-def]
        self.calls += 1
        await asyncio.sleep(60)
        raise AssertionError("the walk should have ended this attempt")


async def test_a_provider_that_ignores_its_timeout_is_cut_off_by_the_walk():
    deaf, fast = _Deaf(name="deaf"), FakeTranscriber(name="fast")
    router = await started(deaf, fast)
    began = time.monotonic()
    result = await router.transcribe(transcribe_request(), ctx(timeout_s=1.0))
    assert time.monotonic() - began < 1.0
    assert [(a.provider, a.outcome) for a in result.route.attempts] == [("deaf", "timeout"), ("fast", "ok")]


async def test_the_providers_own_timeout_bounds_an_attempt_below_its_share():
    slow = FakeTranscriber(name="slow", delay_s=30.0)
    slow.capabilities = replace(slow.capabilities, timeout_s=0.2)
    fast = FakeTranscriber(name="fast")
    router = await started(slow, fast)
    began = time.monotonic()
    result = await router.transcribe(transcribe_request(), ctx(timeout_s=30.0))
    assert time.monotonic() - began < 2.0
    assert [(a.provider, a.outcome) for a in result.route.attempts] == [("slow", "timeout"), ("fast", "ok")]


async def test_a_hang_on_the_last_candidate_is_a_deadline_error_before_the_deadline():
    only = _Deaf(name="deaf")
    router = await started(only)
    began = time.monotonic()
    with pytest.raises(DeadlineExceeded, match=r"\[timeout\] deaf"):
        await router.transcribe(transcribe_request(), ctx(timeout_s=0.5))
    assert time.monotonic() - began < 0.5


@pytest.mark.parametrize(
    ("remaining", "provider_timeout", "share", "expected"),
    [
        (10.0, None, 0.5, 5.0),  # another candidate could follow: half the deadline
        (10.0, 2.0, 0.5, 2.0),  # the provider's own timeout is shorter
        (10.0, None, 1.0, 9.95),  # the last attempt: all but the wrap-up sliver
        (0.2, None, 1.0, 0.18),  # the sliver shrinks with the deadline
        (0.0, None, 0.5, 0.001),  # never zero or negative
    ],
)
def test_attempt_timeout(remaining, provider_timeout, share, expected):
    assert attempt_timeout_s(remaining, provider_timeout, share) == pytest.approx(expected)


async def test_synthesis_is_resampled_encoded_and_priced():
    router = await started(FakeSynthesizer())
    request = SynthesizeRequest(
        text=" Hello. ", voice=None, format=OutputFormat.PCM16, sample_rate=8000, speed=1.0, routing=Routing()
    )
    result = await router.synthesize(request, ctx())
    assert result.mime_type == "audio/L16;rate=8000"
    assert len(result.audio) == pytest.approx(0.5 * 8000 * 2, abs=64)
    assert result.route.cost_usd >= 0 and isinstance(result.route.cost_usd, Decimal)


async def test_understand_transcribes_then_answers_and_sums_the_cost():
    stt, llm = FakeTranscriber(text="we meet on thursday"), FakeAnswerer(answer="Thursday.")
    router = await started(stt, llm)
    request = UnderstandReq(
        audio=CLIP, question="When?", language=None, max_answer_tokens=None, routing=Routing()
    )
    result = await router.understand(request, ctx())
    assert (result.answer, result.transcript) == ("Thursday.", "we meet on thursday")
    assert [a.operation.value for a in result.route.attempts] == ["transcribe", "understand"]
    assert result.route.cost_usd == sum(a.cost_usd for a in result.route.attempts)
    assert llm.calls == 1 and stt.calls == 1


class _Listener(FakeAnswerer):
    listens = True


async def test_a_hanging_listener_falls_back_to_a_text_model_with_a_transcript():
    ears = _Listener(name="ears", delay_s=5.0)
    stt, text = FakeTranscriber(text="we meet on thursday"), FakeAnswerer(name="text", answer="Thursday.")
    router = await started(ears, stt, text)
    request = UnderstandReq(
        audio=CLIP, question="When?", language=None, max_answer_tokens=None, routing=Routing()
    )
    began = time.monotonic()
    result = await router.understand(request, ctx(timeout_s=2.0))
    assert time.monotonic() - began < 2.0
    assert (result.answer, result.transcript) == ("Thursday.", "we meet on thursday")
    assert [(a.provider, a.operation.value, a.outcome) for a in result.route.attempts] == [
        ("ears", "understand", "timeout"),
        ("fake-stt", "transcribe", "ok"),
        ("text", "understand", "ok"),
    ]
    assert text.last_transcript == "we meet on thursday"


async def test_a_non_retryable_refusal_stops_the_walk():
    first = FakeTranscriber(
        name="a", fail_with=ProviderRejected("a", "HTTP 401 (check the provider's api_key_env)")
    )
    second = FakeTranscriber(name="b")
    router = await started(first, second)
    with pytest.raises(AllAttemptsFailed, match=r"\[rejected\] a: HTTP 401"):
        await router.transcribe(transcribe_request(), ctx())
    assert second.calls == 0


async def test_a_failing_provider_is_cut_off_by_its_breaker_and_readmitted_when_it_recovers():
    settings = Settings()
    settings.breaker.failure_threshold = 3
    settings.breaker.cooldown_s = 30.0
    flaky = FakeTranscriber(name="a", fail_with=ProviderUnavailable("a", "HTTP 503"))
    # b is a pricier cloud vendor, so a is preferred whenever its breaker lets it be.
    steady = FakeTranscriber(name="b", text="from b", locality=Locality.CLOUD)
    now = [1_700_000_000.0]
    app = build_app(
        settings,
        providers=[flaky, steady],
        prices={("b", "fake-stt-1"): UnitPrices(per_audio_second=Decimal("0.01"))},
        clock=lambda: now[0],
    )
    await app.catalogue.start()
    router = app.router

    for _ in range(3):
        result = await router.transcribe(transcribe_request(), ctx())
        # No client-visible error: the next candidate answers.
        assert result.route.provider == "b"
        assert [a.provider for a in result.route.attempts] == ["a", "b"]
    assert flaky.calls == 3

    result = await router.transcribe(transcribe_request(), ctx())
    assert [a.provider for a in result.route.attempts] == ["b"] and flaky.calls == 3
    assert app.health.snapshot()["a"].state.value == "open"

    flaky.fail_with = None
    now[0] += 29.0
    still_open = await router.transcribe(transcribe_request(), ctx())
    assert [a.provider for a in still_open.route.attempts] == ["b"] and flaky.calls == 3
    now[0] += 1.0
    probe = await router.transcribe(transcribe_request(), ctx())
    assert [a.provider for a in probe.route.attempts] == ["a"] and probe.route.provider == "a"
    assert app.health.snapshot()["a"].state.value == "closed"
    again = await router.transcribe(transcribe_request(), ctx())
    assert again.route.provider == "a"
