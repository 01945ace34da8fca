"""Admission control: caps per operation, quick refusals, slots freed on every way out; and the router
turning "every provider busy" into Overloaded without blaming the providers' health."""

from __future__ import annotations

import asyncio
import time

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from gateway.app import build_app
from gateway.core.domain import AudioInput, CallKind, ExplainRequest, Routing, TranscribeRequest
from gateway.core.errors import (
    AllAttemptsFailed,
    LimitExceeded,
    Overloaded,
    ProviderBusy,
    ProviderUnavailable,
    clip,
    status_name,
)
from gateway.core.provider_types import Operation, TranscribeOptions
from gateway.routing.admission import Admission
from gateway.routing.router import RequestContext
from gateway.settings import AdmissionSettings, Settings
from gateway.telemetry.metrics import Metrics
from providers.testing import FakeTranscriber
from tests.audio_files import encode, tone


def sample(metrics: Metrics, name: str, **labels: str) -> float | None:
    text = generate_latest(metrics.registry).decode()
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == f"audio_gateway_{name}" and s.labels == labels:
                return s.value
    return None


def admission(**caps: float) -> tuple[Admission, Metrics]:
    metrics = Metrics()
    return Admission(AdmissionSettings(**caps), metrics), metrics


async def hold(gate: Admission, kind: Operation | CallKind, release: asyncio.Event) -> None:
    async with gate.admit(kind):
        await release.wait()


async def test_calls_past_the_cap_are_refused_at_once_with_a_retry_hint():
    gate, metrics = admission(transcribe=2, retry_after_s=1.5)
    release = asyncio.Event()
    holders = [asyncio.create_task(hold(gate, Operation.TRANSCRIBE, release)) for _ in range(2)]
    await asyncio.sleep(0)
    assert gate.in_flight(Operation.TRANSCRIBE) == 2
    assert sample(metrics, "in_flight", operation="transcribe") == 2

    started = time.monotonic()
    with pytest.raises(Overloaded) as caught:
        async with gate.admit(Operation.TRANSCRIBE):
            pytest.fail("admitted past the cap")
    assert time.monotonic() - started < 0.05
    assert caught.value.retry_after_s == 1.5
    assert "limit of 2 transcribe calls" in str(caught.value) and "retry in 1.5 s" in str(caught.value)
    assert status_name(caught.value) == "RESOURCE_EXHAUSTED"
    assert sample(metrics, "admissions_refused_total", operation="transcribe", reason="concurrency") == 1

    # Each operation has its own cap: synthesis is not held up by transcriptions.
    async with gate.admit(Operation.SYNTHESIZE):
        assert gate.in_flight(Operation.SYNTHESIZE) == 1

    release.set()
    await asyncio.gather(*holders)
    assert gate.in_flight(Operation.TRANSCRIBE) == 0
    assert sample(metrics, "in_flight", operation="transcribe") == 0
    async with gate.admit(Operation.TRANSCRIBE):
        pass


async def test_slots_are_released_on_error_and_on_cancellation_without_leaking():
    gate, _ = admission(understand=1)
    for _ in range(3):
        with pytest.raises(RuntimeError):
            async with gate.admit(Operation.UNDERSTAND):
                raise RuntimeError("the body failed")
        assert gate.in_flight(Operation.UNDERSTAND) == 0

    release = asyncio.Event()
    for _ in range(3):
        task = asyncio.create_task(hold(gate, Operation.UNDERSTAND, release))
        await asyncio.sleep(0)
        assert gate.in_flight(Operation.UNDERSTAND) == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert gate.in_flight(Operation.UNDERSTAND) == 0

    # After all that the one slot is still there, exactly once.
    holder = asyncio.create_task(hold(gate, Operation.UNDERSTAND, release))
    await asyncio.sleep(0)
    with pytest.raises(Overloaded):
        async with gate.admit(Operation.UNDERSTAND):
            pass
    release.set()
    await holder


async def test_a_short_wait_admits_a_call_when_a_slot_frees_in_time_and_no_longer():
    gate, metrics = admission(explain=1, max_wait_s=0.5)
    release = asyncio.Event()
    holder = asyncio.create_task(hold(gate, CallKind.EXPLAIN, release))
    await asyncio.sleep(0)
    asyncio.get_running_loop().call_later(0.1, release.set)
    started = time.monotonic()
    async with gate.admit(CallKind.EXPLAIN):
        waited = time.monotonic() - started
    await holder
    assert 0.05 < waited < 0.45

    release = asyncio.Event()
    holder = asyncio.create_task(hold(gate, CallKind.EXPLAIN, release))
    await asyncio.sleep(0)
    started = time.monotonic()
    with pytest.raises(Overloaded):
        async with gate.admit(CallKind.EXPLAIN):
            pass
    assert 0.45 < time.monotonic() - started < 1.0
    release.set()
    await holder
    assert gate.in_flight(CallKind.EXPLAIN) == 0
    assert sample(metrics, "admissions_refused_total", operation="explain", reason="concurrency") == 1


async def test_a_waiter_cancelled_while_waiting_takes_no_slot():
    gate, _ = admission(synthesize=1, max_wait_s=5.0)
    release = asyncio.Event()
    holder = asyncio.create_task(hold(gate, Operation.SYNTHESIZE, release))
    await asyncio.sleep(0)
    waiter = asyncio.create_task(hold(gate, Operation.SYNTHESIZE, asyncio.Event()))
    await asyncio.sleep(0.05)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    release.set()
    await holder
    assert gate.in_flight(Operation.SYNTHESIZE) == 0
    second = asyncio.Event()
    second.set()
    await asyncio.wait_for(hold(gate, Operation.SYNTHESIZE, second), 1.0)


async def test_zero_lifts_the_cap_but_calls_are_still_counted():
    gate, _ = admission(transcribe=0)
    release = asyncio.Event()
    holders = [asyncio.create_task(hold(gate, Operation.TRANSCRIBE, release)) for _ in range(50)]
    await asyncio.sleep(0)
    assert gate.in_flight(Operation.TRANSCRIBE) == 50
    release.set()
    await asyncio.gather(*holders)
    assert gate.in_flight(Operation.TRANSCRIBE) == 0


def test_overloaded_is_a_limit_with_a_retry_hint_and_clip_bounds_echoed_names():
    assert issubclass(Overloaded, LimitExceeded)
    assert ProviderBusy("x", "full", 0.3).retryable
    assert status_name(ProviderBusy("x", "full", 0.3)) == "RESOURCE_EXHAUSTED"
    assert clip("voice") == "voice"
    assert clip("v" * 100) == "v" * 100
    assert clip("v" * 5000) == "v" * 99 + "…"
    assert len(clip("abcdef", 4)) == 4


# -- the router ---------------------------------------------------------------------------------------

CLIP = AudioInput(content=encode(tone(1.0), 16_000, "wav"), uri=None, mime_type="audio/wav")


def ctx() -> RequestContext:
    return RequestContext(request_id="r1", deadline=time.monotonic() + 30)


def request() -> TranscribeRequest:
    return TranscribeRequest(audio=CLIP, options=TranscribeOptions(), routing=Routing())


async def started(settings: Settings, *providers):
    app = build_app(settings, providers=list(providers))
    await app.catalogue.start()
    return app


async def test_every_provider_busy_is_overloaded_with_the_soonest_retry_and_breakers_stay_closed():
    a = FakeTranscriber(name="a", fail_with=ProviderBusy("a", "4 requests already wait", 2.0))
    b = FakeTranscriber(name="b", fail_with=ProviderBusy("b", "8 requests already wait", 0.4))
    settings = Settings()
    settings.breaker.failure_threshold = 2
    app = await started(settings, a, b)
    for _ in range(3):
        with pytest.raises(Overloaded) as caught:
            await app.router.transcribe(request(), ctx())
    assert caught.value.retry_after_s == 0.4
    assert "a: 4 requests already wait" in str(caught.value)
    assert "b: 8 requests already wait" in str(caught.value)
    # Busy is not broken: three rounds past the threshold and both are still tried.
    assert (a.calls, b.calls) == (3, 3)
    assert (
        sample(app.metrics, "admissions_refused_total", operation="transcribe", reason="providers_busy") == 3
    )
    assert (
        sample(
            app.metrics,
            "requests_total",
            operation="transcribe",
            provider="none",
            status="RESOURCE_EXHAUSTED",
        )
        == 3
    )

    a.fail_with = None
    result = await app.router.transcribe(request(), ctx())
    assert result.route.provider == "a"
    assert [x.outcome for x in result.route.attempts] == ["ok"]
    assert app.admission.in_flight(Operation.TRANSCRIBE) == 0


async def test_a_busy_provider_falls_back_and_a_mix_of_failures_stays_unavailable():
    busy = FakeTranscriber(name="busy", fail_with=ProviderBusy("busy", "queue full", 1.0))
    down = FakeTranscriber(name="down", fail_with=ProviderUnavailable("down", "503"))
    ok = FakeTranscriber(name="ok")
    app = await started(Settings(), busy, down, ok)
    result = await app.router.transcribe(request(), ctx())
    assert [(x.provider, x.outcome) for x in result.route.attempts] == [
        ("busy", "busy"),
        ("down", "unavailable"),
        ("ok", "ok"),
    ]
    ok.fail_with = ProviderUnavailable("ok", "503")
    with pytest.raises(AllAttemptsFailed) as caught:
        await app.router.transcribe(request(), ctx())
    assert not isinstance(caught.value, Overloaded) and status_name(caught.value) == "UNAVAILABLE"


async def test_router_operations_are_admitted_against_their_own_caps():
    settings = Settings()
    settings.admission.transcribe = 1
    settings.admission.explain = 1
    slow = FakeTranscriber(delay_s=0.5)
    app = await started(settings, slow)
    first = asyncio.create_task(app.router.transcribe(request(), ctx()))
    await asyncio.sleep(0.1)
    assert app.admission.in_flight(Operation.TRANSCRIBE) == 1
    with pytest.raises(Overloaded):
        await app.router.transcribe(request(), ctx())
    explain = ExplainRequest(
        operation=Operation.TRANSCRIBE,
        audio=None,
        audio_s=1.0,
        text=None,
        characters=None,
        language=None,
        word_timestamps=False,
        voice=None,
        routing=Routing(),
    )
    # ExplainRoute has a cap of its own, free while transcriptions are at theirs.
    assert (await app.router.explain(explain, ctx())).candidates
    assert (await first).text
    assert slow.calls == 1
    assert app.admission.in_flight(Operation.TRANSCRIBE) == 0
    assert app.admission.in_flight(CallKind.EXPLAIN) == 0
