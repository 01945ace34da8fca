"""The health book: breaker state machine, learned latency, and sharing both through a real Redis."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator
from uuid import uuid4

import pytest
import structlog
from redis.asyncio import Redis

from gateway.core.provider_types import LatencyModel
from gateway.health.book import (
    BreakerState,
    HealthBook,
    HealthSnapshot,
    LatencyEstimate,
    LatencySource,
    breaker_gauge_value,
    run_sync_loop,
)
from gateway.settings import BreakerSettings
from tests.conftest import throwaway_redis

START = 1_700_000_000.0
PRIOR = LatencyModel(fixed_ms=1000.0, rtf=1.0)


class FakeClock:
    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def settings(**overrides) -> BreakerSettings:
    values = {"failure_threshold": 3, "cooldown_s": 30.0, "latency_alpha": 0.2, "latency_min_observations": 3}
    return BreakerSettings(**(values | overrides))


def book(clock: FakeClock, **overrides) -> HealthBook:
    return HealthBook(settings(**overrides), clock=clock)


def fail(health: HealthBook, name: str, times: int = 1) -> None:
    for _ in range(times):
        health.record(name, ok=False, latency_ms=5000.0)


def opened(clock: FakeClock, name: str = "vendor") -> HealthBook:
    health = book(clock)
    fail(health, name, 3)
    return health


# -- breaker ----------------------------------------------------------------


def test_breaker_opens_after_threshold_consecutive_failures():
    clock = FakeClock()
    health = book(clock)
    fail(health, "vendor", 2)
    assert health.snapshot()["vendor"].state is BreakerState.CLOSED
    assert health.try_acquire("vendor")

    fail(health, "vendor")
    state = health.snapshot()["vendor"]
    assert state.state is BreakerState.OPEN
    assert state.consecutive_failures == 3
    assert state.failures == 3
    assert state.opened_at == START
    assert state.retry_at == START + 30.0
    assert not health.try_acquire("vendor")


def test_a_success_resets_the_consecutive_count():
    health = book(FakeClock())
    fail(health, "vendor", 2)
    health.record("vendor", ok=True, latency_ms=100.0, audio_s=1.0)
    fail(health, "vendor", 2)
    state = health.snapshot()["vendor"]
    assert state.state is BreakerState.CLOSED
    assert state.consecutive_failures == 2
    assert (state.successes, state.failures) == (1, 4)


def test_blocked_reason_counts_down_and_clears_after_the_cool_down():
    clock = FakeClock()
    snapshot = opened(clock).snapshot()
    assert snapshot.blocked("vendor", clock.now) == (
        "circuit breaker open after 3 consecutive failures; retry in 30 s"
    )
    assert snapshot.blocked("vendor", clock.now + 18.5) == (
        "circuit breaker open after 3 consecutive failures; retry in 12 s"
    )
    assert snapshot.blocked("vendor", clock.now + 30.0) is None
    assert snapshot.blocked("someone-else", clock.now) is None


def test_blocked_reason_singular():
    clock = FakeClock()
    health = book(clock, failure_threshold=1, cooldown_s=5.0)
    fail(health, "vendor")
    assert health.snapshot().blocked("vendor", clock.now) == (
        "circuit breaker open after 1 consecutive failure; retry in 5 s"
    )


def test_exactly_one_probe_after_the_cool_down():
    clock = FakeClock()
    health = opened(clock)
    clock.advance(29.9)
    assert not health.try_acquire("vendor")

    clock.advance(0.1)
    assert health.try_acquire("vendor")
    assert health.snapshot()["vendor"].state is BreakerState.HALF_OPEN
    assert health.snapshot().blocked("vendor", clock.now) is None
    assert not health.try_acquire("vendor")
    clock.advance(29.0)
    assert not health.try_acquire("vendor"), "a second probe while the first is in flight"


def test_a_probe_that_never_reports_is_replaced_after_a_cool_down():
    clock = FakeClock()
    health = opened(clock)
    clock.advance(30.0)
    assert health.try_acquire("vendor")  # its caller is cancelled: no record() follows
    clock.advance(29.0)
    assert not health.try_acquire("vendor")
    clock.advance(1.0)
    assert health.try_acquire("vendor")
    assert not health.try_acquire("vendor")


def test_probe_success_closes_the_breaker():
    clock = FakeClock()
    health = opened(clock)
    clock.advance(30.0)
    assert health.try_acquire("vendor")
    health.record("vendor", ok=True, latency_ms=300.0, audio_s=1.0)

    state = health.snapshot()["vendor"]
    assert state.state is BreakerState.CLOSED
    assert state.consecutive_failures == 0
    assert state.opened_at is None and state.retry_at is None
    assert all(health.try_acquire("vendor") for _ in range(5))


def test_probe_failure_reopens_with_a_fresh_cool_down():
    clock = FakeClock()
    health = opened(clock)
    clock.advance(31.0)
    assert health.try_acquire("vendor")
    fail(health, "vendor")

    state = health.snapshot()["vendor"]
    assert state.state is BreakerState.OPEN
    assert state.opened_at == START + 31.0
    assert state.retry_at == START + 61.0
    assert state.consecutive_failures == 4
    assert not health.try_acquire("vendor")
    assert health.snapshot().blocked("vendor", clock.now) == (
        "circuit breaker open after 4 consecutive failures; retry in 30 s"
    )


def test_non_retryable_failures_do_not_count():
    health = book(FakeClock())
    for _ in range(10):
        health.record("vendor", ok=False, latency_ms=20.0, retryable_failure=False)
    state = health.snapshot()["vendor"]
    assert state.state is BreakerState.CLOSED
    assert (state.consecutive_failures, state.failures) == (0, 0)
    assert health.try_acquire("vendor")


def test_a_non_retryable_probe_result_frees_the_probe_slot():
    clock = FakeClock()
    health = opened(clock)
    clock.advance(30.0)
    assert health.try_acquire("vendor")
    health.record("vendor", ok=False, latency_ms=20.0, retryable_failure=False)
    assert health.snapshot()["vendor"].state is BreakerState.HALF_OPEN
    assert health.try_acquire("vendor"), "the caller's bad input says nothing: probe again"


def test_late_failures_while_open_do_not_extend_the_cool_down():
    clock = FakeClock()
    health = opened(clock)
    clock.advance(10.0)
    fail(health, "vendor", 5)  # attempts admitted before the breaker opened
    state = health.snapshot()["vendor"]
    assert state.retry_at == START + 30.0
    assert state.consecutive_failures == 3


def test_unknown_provider_is_admitted_and_uses_the_prior():
    health = book(FakeClock())
    assert health.try_acquire("new")
    assert health.snapshot().latency_model("new", PRIOR) is PRIOR
    assert "new" not in health.snapshot()


def test_snapshot_is_immutable_and_cached_until_something_changes():
    health = book(FakeClock())
    fail(health, "vendor")
    first = health.snapshot()
    assert health.snapshot() is first
    fail(health, "vendor")
    assert health.snapshot() is not first
    assert first["vendor"].consecutive_failures == 1
    assert isinstance(first, HealthSnapshot)
    with pytest.raises(TypeError):
        first.providers["x"] = first["vendor"]  # type: ignore[index]


def test_breaker_gauge_values():
    assert [breaker_gauge_value(s) for s in BreakerState] == [0, 2, 1]


# -- learned latency ------------------------------------------------------------


def observe_audio(health: HealthBook, name: str, count: int, seed: int = 7, noise_ms: float = 0.0) -> None:
    rng = random.Random(seed)
    for _ in range(count):
        audio_s = rng.uniform(1.0, 30.0)
        latency = 200.0 + 0.3 * audio_s * 1000.0 + rng.gauss(0.0, noise_ms)
        health.record(name, ok=True, latency_ms=latency, audio_s=audio_s)


def test_prior_until_min_observations_then_learned():
    health = book(FakeClock())
    observe_audio(health, "stt", 2)
    snap = health.snapshot()
    assert snap["stt"].learned is None
    assert snap["stt"].observations == 2
    assert snap.latency_model("stt", PRIOR) is PRIOR

    observe_audio(health, "stt", 1, seed=8)
    learned = health.snapshot().latency_model("stt", PRIOR)
    assert learned is not PRIOR
    assert learned.fixed_ms == pytest.approx(200.0, abs=1e-6)
    assert learned.rtf == pytest.approx(0.3, abs=1e-9)


def test_learned_latency_converges_with_noise():
    health = book(FakeClock())
    observe_audio(health, "stt", 300, noise_ms=20.0)
    model = health.snapshot().latency_model("stt", PRIOR)
    assert model.fixed_ms == pytest.approx(200.0, abs=50.0)
    assert model.rtf == pytest.approx(0.3, rel=0.02)
    assert model.ms_per_char == 0.0
    assert model.estimate_ms(audio_s=10.0) == pytest.approx(3200.0, rel=0.03)


def test_learned_latency_follows_a_vendor_that_slows_down():
    health = book(FakeClock())
    observe_audio(health, "stt", 50)
    rng = random.Random(3)
    for _ in range(40):
        audio_s = rng.uniform(1.0, 30.0)
        health.record("stt", ok=True, latency_ms=900.0 + 0.6 * audio_s * 1000.0, audio_s=audio_s)
    model = health.snapshot().latency_model("stt", PRIOR)
    assert model.estimate_ms(audio_s=10.0) == pytest.approx(6900.0, rel=0.05)


def test_one_stalled_call_does_not_wreck_the_model():
    health = book(FakeClock())
    observe_audio(health, "stt", 50)
    before = health.snapshot().latency_model("stt", PRIOR).estimate_ms(audio_s=10.0)
    health.record("stt", ok=True, latency_ms=120_000.0, audio_s=2.0)
    after = health.snapshot().latency_model("stt", PRIOR).estimate_ms(audio_s=10.0)
    assert before == pytest.approx(3200.0, rel=1e-6)
    # Unclipped, the stall would add about 0.2 * 120 s to the mean latency.
    assert after < before * 1.25


def test_text_series_learns_ms_per_char():
    health = book(FakeClock())
    for chars in (20, 400, 90, 1500, 700, 60, 3000):
        health.record("tts", ok=True, latency_ms=80.0 + 0.5 * chars, characters=chars)
    model = health.snapshot().latency_model("tts", PRIOR)
    assert model.fixed_ms == pytest.approx(80.0, abs=1e-6)
    assert model.ms_per_char == pytest.approx(0.5, abs=1e-9)
    assert model.rtf == PRIOR.rtf, "no audio was observed: audio keeps the declared rate"


def test_a_single_size_learns_the_level_and_keeps_the_prior_rate():
    health = book(FakeClock())
    for latency in (3000.0, 3400.0, 3200.0, 3200.0):
        health.record("stt", ok=True, latency_ms=latency, audio_s=10.0)
    prior = LatencyModel(fixed_ms=500.0, rtf=0.05)
    model = health.snapshot().latency_model("stt", prior)
    assert model.rtf == prior.rtf
    assert 3000.0 < model.estimate_ms(audio_s=10.0) < 3400.0
    # The prior's rate alone (1.0: 10 s for this clip) would exceed the level seen: proportional instead.
    model = health.snapshot().latency_model("stt", PRIOR)
    assert model.fixed_ms == 0.0
    assert 3000.0 < model.estimate_ms(audio_s=10.0) < 3400.0


def test_terms_are_never_negative():
    health = book(FakeClock())
    # Bigger inputs answered faster: a negative slope is noise, not physics.
    for audio_s, latency in ((1.0, 900.0), (10.0, 600.0), (20.0, 300.0), (5.0, 800.0)):
        health.record("odd", ok=True, latency_ms=latency, audio_s=audio_s)
    model = health.snapshot().latency_model("odd", PRIOR)
    assert model.rtf >= 0.0 and model.fixed_ms >= 0.0
    assert health.snapshot().latency("odd", PRIOR, audio=True).source is LatencySource.LEVEL
    # Pure proportional latency with a little noise would fit a negative intercept.
    for audio_s in (1.0, 2.0, 4.0, 8.0, 16.0):
        health.record("prop", ok=True, latency_ms=audio_s * 100.0 - 5.0, audio_s=audio_s)
    model = health.snapshot().latency_model("prop", PRIOR)
    assert model.fixed_ms == 0.0
    assert model.rtf > 0.0


FASTER_WHISPER_LIKE = LatencyModel(fixed_ms=150.0, rtf=0.35)


def observe_short_clips(health: HealthBook, name: str, count: int = 20, seed: int = 11) -> None:
    """Clips of 1-2 s answered in about 841 ms: the traffic that once froze the estimate for any length."""
    rng = random.Random(seed)
    for _ in range(count):
        health.record(name, ok=True, latency_ms=841.0 + rng.gauss(0.0, 10.0), audio_s=rng.uniform(1.0, 2.0))


def test_short_clips_alone_scale_to_long_audio_by_the_prior_rate():
    health = book(FakeClock())
    observe_short_clips(health, "stt")
    snap = health.snapshot()
    estimate = snap.latency("stt", FASTER_WHISPER_LIKE, audio=True)
    assert estimate.source is LatencySource.LEVEL and estimate.observations == 20
    one, long = estimate.model.estimate_ms(audio_s=1.0), estimate.model.estimate_ms(audio_s=1800.0)
    assert long - one == pytest.approx(FASTER_WHISPER_LIKE.rtf * 1799.0 * 1000.0, rel=1e-9)
    # Still right where it was measured.
    assert estimate.model.estimate_ms(audio_s=1.5) == pytest.approx(841.0, abs=25.0)


def test_observations_spread_over_lengths_are_fitted():
    health = book(FakeClock())
    observe_short_clips(health, "stt")
    rng = random.Random(4)
    for _ in range(40):
        audio_s = rng.choice((2.0, 30.0, 120.0, 300.0)) * rng.uniform(0.9, 1.1)
        health.record("stt", ok=True, latency_ms=300.0 + 0.12 * audio_s * 1000.0, audio_s=audio_s)
    estimate = health.snapshot().latency("stt", FASTER_WHISPER_LIKE, audio=True)
    assert estimate.source is LatencySource.FIT and estimate.observations == 60
    assert estimate.model.rtf == pytest.approx(0.12, rel=0.05)
    assert estimate.model.estimate_ms(audio_s=300.0) == pytest.approx(36_300.0, rel=0.05)


def test_a_span_needs_three_times_the_smallest_size():
    health = book(FakeClock())
    for audio_s in (2.0, 2.5, 3.0, 3.9, 5.9):  # two power-of-two buckets, but under 3x
        health.record("stt", ok=True, latency_ms=200.0 + 100.0 * audio_s, audio_s=audio_s)
    assert health.snapshot().latency("stt", FASTER_WHISPER_LIKE, audio=True).source is LatencySource.LEVEL
    health.record("stt", ok=True, latency_ms=200.0 + 100.0 * 6.0, audio_s=6.0)
    estimate = health.snapshot().latency("stt", FASTER_WHISPER_LIKE, audio=True)
    assert estimate.source is LatencySource.FIT
    assert estimate.model.rtf == pytest.approx(0.1, rel=1e-6)


def test_a_long_clip_after_short_ones_is_not_clipped_as_an_outlier():
    health = book(FakeClock())
    observe_short_clips(health, "stt")
    health.record("stt", ok=True, latency_ms=60_000.0, audio_s=600.0)
    health.record("stt", ok=True, latency_ms=30_000.0, audio_s=300.0)
    model = health.snapshot().latency_model("stt", FASTER_WHISPER_LIKE)
    assert model.estimate_ms(audio_s=600.0) > 40_000.0


def test_the_prior_is_named_as_the_source_until_enough_observations():
    health = book(FakeClock())
    observe_short_clips(health, "stt", count=2)
    estimate = health.snapshot().latency("stt", FASTER_WHISPER_LIKE, audio=True)
    assert estimate == LatencyEstimate(FASTER_WHISPER_LIKE, LatencySource.PRIOR, 0)


def test_failures_do_not_feed_the_latency_model():
    health = book(FakeClock())
    for _ in range(5):
        health.record("stt", ok=False, latency_ms=30_000.0, audio_s=5.0)
    assert health.snapshot()["stt"].observations == 0


# -- sharing through Redis ------------------------------------------------------


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url, socket_timeout=2.0, socket_connect_timeout=2.0)
    yield client
    await client.aclose()


@pytest.fixture
async def prefix(redis_client: Redis) -> AsyncIterator[str]:
    value = f"test:{uuid4().hex}:"
    yield value
    keys = [key async for key in redis_client.scan_iter(match=f"{value}*")]
    if keys:
        await redis_client.delete(*keys)


async def test_an_open_breaker_is_seen_by_the_whole_fleet(redis_client: Redis, prefix: str):
    clock = FakeClock()
    a, b = opened(clock), book(clock)
    assert await a.sync(redis_client, prefix)
    assert b.try_acquire("vendor")
    assert await b.sync(redis_client, prefix)

    assert not b.try_acquire("vendor")
    assert b.snapshot().blocked("vendor", clock.now) == (
        "circuit breaker open after 3 consecutive failures; retry in 30 s"
    )
    assert b.snapshot()["vendor"].retry_at == START + 30.0


async def test_a_successful_probe_closes_the_breaker_fleet_wide(redis_client: Redis, prefix: str):
    clock = FakeClock()
    a, b = opened(clock), book(clock)
    await a.sync(redis_client, prefix)
    await b.sync(redis_client, prefix)
    clock.advance(30.0)
    assert b.try_acquire("vendor")
    b.record("vendor", ok=True, latency_ms=250.0, audio_s=1.0)
    assert await b.sync(redis_client, prefix)
    assert await a.sync(redis_client, prefix)

    assert a.snapshot()["vendor"].state is BreakerState.CLOSED
    assert a.try_acquire("vendor") and a.try_acquire("vendor")


async def test_a_failed_probe_reopens_the_fleet_with_the_fresh_cool_down(redis_client: Redis, prefix: str):
    clock = FakeClock()
    a, b = opened(clock), book(clock)
    await a.sync(redis_client, prefix)
    await b.sync(redis_client, prefix)
    clock.advance(30.0)
    assert b.try_acquire("vendor")
    fail(b, "vendor")
    await b.sync(redis_client, prefix)
    await a.sync(redis_client, prefix)
    assert a.snapshot()["vendor"].retry_at == START + 60.0
    assert not a.try_acquire("vendor")


async def test_the_newest_transition_wins_whatever_order_replicas_report(redis_client: Redis, prefix: str):
    clock = FakeClock()
    stale = opened(clock)  # opens, then cannot reach Redis for a while
    b = opened(clock)
    await b.sync(redis_client, prefix)
    clock.advance(30.0)
    assert b.try_acquire("vendor")
    b.record("vendor", ok=True, latency_ms=250.0, audio_s=1.0)
    await b.sync(redis_client, prefix)

    assert await stale.sync(redis_client, prefix)
    assert stale.snapshot()["vendor"].state is BreakerState.CLOSED
    c = book(clock)
    await c.sync(redis_client, prefix)
    assert c.snapshot()["vendor"].state is BreakerState.CLOSED


async def test_learned_latency_is_shared_and_merges_atomically(redis_client: Redis, prefix: str):
    clock = FakeClock()
    books = [book(clock) for _ in range(5)]
    for seed, health in enumerate(books):
        observe_audio(health, "stt", 2, seed=seed)  # below min_observations on its own
    assert books[0].snapshot().latency_model("stt", PRIOR) is PRIOR

    results = await asyncio.gather(*(h.sync(redis_client, prefix) for h in books))
    assert all(results)
    await books[0].sync(redis_client, prefix)

    state = books[0].snapshot()["stt"]
    assert state.observations == 10, "no replica's batch may be lost to a concurrent one"
    model = books[0].snapshot().latency_model("stt", PRIOR)
    assert model.fixed_ms == pytest.approx(200.0, abs=1e-3)
    assert model.rtf == pytest.approx(0.3, abs=1e-6)
    newcomer = book(clock)
    await newcomer.sync(redis_client, prefix)
    assert newcomer.snapshot().latency_model("stt", PRIOR) == pytest.approx(model)


async def test_the_fleet_model_follows_the_newest_observations(redis_client: Redis, prefix: str):
    clock = FakeClock()
    old, new = book(clock), book(clock)
    observe_audio(old, "stt", 30)  # 200 ms + 0.3 rtf
    await old.sync(redis_client, prefix)
    rng = random.Random(5)
    for _ in range(30):
        audio_s = rng.uniform(1.0, 30.0)
        new.record("stt", ok=True, latency_ms=100.0 + 0.1 * audio_s * 1000.0, audio_s=audio_s)
    await new.sync(redis_client, prefix)
    await old.sync(redis_client, prefix)
    # The older batch decays as the newer one is folded in, in Redis as it would locally.
    model = old.snapshot().latency_model("stt", PRIOR)
    assert model.estimate_ms(audio_s=10.0) == pytest.approx(1100.0, rel=0.01)
    assert old.snapshot()["stt"].observations == 60


async def test_the_span_of_lengths_is_shared_across_replicas(redis_client: Redis, prefix: str):
    clock = FakeClock()
    short, long = book(clock), book(clock)
    for audio_s in (2.0, 2.2, 2.4, 2.6):
        short.record("stt", ok=True, latency_ms=100.0 + 200.0 * audio_s, audio_s=audio_s)
    for audio_s in (60.0, 64.0, 70.0, 75.0):
        long.record("stt", ok=True, latency_ms=100.0 + 200.0 * audio_s, audio_s=audio_s)
    for health in (short, long):
        assert health.snapshot().latency("stt", FASTER_WHISPER_LIKE, audio=True).source is LatencySource.LEVEL
    assert await short.sync(redis_client, prefix) and await long.sync(redis_client, prefix)
    assert await short.sync(redis_client, prefix)
    for health in (short, long):
        estimate = health.snapshot().latency("stt", FASTER_WHISPER_LIKE, audio=True)
        assert estimate.source is LatencySource.FIT and estimate.observations == 8
        assert estimate.model.rtf == pytest.approx(0.2, rel=0.02)
    sizes = await redis_client.hgetall(f"{prefix}health:stt:latency:audio")
    assert float(sizes[b"min_x"]) == 2.0 and float(sizes[b"max_x"]) == 75.0


async def test_syncing_does_not_replay_a_transition_already_applied(redis_client: Redis, prefix: str):
    clock = FakeClock()
    a, b = opened(clock), book(clock)
    await a.sync(redis_client, prefix)
    await b.sync(redis_client, prefix)
    clock.advance(30.0)
    assert b.try_acquire("vendor")
    b.record("vendor", ok=True, latency_ms=250.0, audio_s=1.0)
    await b.sync(redis_client, prefix)
    await a.sync(redis_client, prefix)
    assert a.snapshot()["vendor"].state is BreakerState.CLOSED

    fail(a, "vendor", 2)
    await a.sync(redis_client, prefix)  # the fleet's CLOSED must not wipe the count
    fail(a, "vendor")
    assert a.snapshot()["vendor"].state is BreakerState.OPEN


async def test_observations_recorded_between_syncs_stay_in_the_view(redis_client: Redis, prefix: str):
    clock = FakeClock()
    a, b = book(clock), book(clock)
    observe_audio(a, "stt", 3, seed=1)
    await a.sync(redis_client, prefix)
    observe_audio(b, "stt", 3, seed=2)
    await b.sync(redis_client, prefix)
    observe_audio(a, "stt", 2, seed=3)
    await a.sync(redis_client, prefix)
    assert a.snapshot()["stt"].observations == 8
    observe_audio(a, "stt", 1, seed=4)  # not yet pushed
    assert a.snapshot()["stt"].observations == 9


async def test_run_sync_loop_shares_state_before_it_stops(redis_client: Redis, prefix: str):
    clock = FakeClock()
    a, b = opened(clock), book(clock)
    stop = asyncio.Event()
    stop.set()
    await asyncio.wait_for(run_sync_loop(a, redis_client, prefix, 60.0, stop), timeout=10)
    await b.sync(redis_client, prefix)
    assert b.snapshot()["vendor"].state is BreakerState.OPEN


# -- Redis absent or broken -----------------------------------------------------


async def test_sync_degrades_when_redis_is_unreachable_and_catches_up_later(redis_client: Redis, prefix: str):
    with throwaway_redis() as url:
        pass  # stopped: nothing listens on its port any more
    dead = Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
    clock = FakeClock()
    a = opened(clock)
    observe_audio(a, "stt", 4)
    try:
        with structlog.testing.capture_logs() as logs:
            assert await a.sync(dead, prefix, timeout_s=2.0) is False
            assert await a.sync(dead, prefix, timeout_s=2.0) is False
    finally:
        await dead.aclose()

    failures = [e for e in logs if e["event"] == "health.sync_failed"]
    # Warned once when the fleet became unreachable, not on every interval after.
    assert failures[0]["log_level"] == "warning"
    assert [e["log_level"] for e in failures].count("warning") == 1
    assert url not in repr(failures)
    # The replica keeps working on its own evidence.
    assert not a.try_acquire("vendor")
    assert a.snapshot()["stt"].observations == 4

    assert await a.sync(redis_client, prefix)
    b = book(clock)
    await b.sync(redis_client, prefix)
    assert b.snapshot()["vendor"].state is BreakerState.OPEN
    assert b.snapshot()["stt"].observations == 4, "updates unsent while Redis was down are not lost"


async def test_sync_gives_up_on_a_redis_that_never_answers():
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # accept, read, never answer
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = Redis(host="127.0.0.1", port=port)
    health = opened(FakeClock())
    try:
        started = time.monotonic()
        assert await health.sync(client, "test:", timeout_s=0.3) is False
        assert time.monotonic() - started < 2.0
    finally:
        await client.aclose()
        server.close()
        await server.wait_closed()
    assert health.snapshot()["vendor"].state is BreakerState.OPEN
