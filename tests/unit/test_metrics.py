"""Metrics: each method shows in the exposition text, labels stay bounded, and the endpoint serves."""

from __future__ import annotations

import math
import socket
import urllib.error
import urllib.request
import uuid
from decimal import Decimal

import grpc
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from gateway.core.provider_types import Operation
from gateway.health.book import BreakerState, breaker_gauge_value
from gateway.settings import MetricsSettings
from gateway.telemetry.metrics import LATENCY_BUCKETS, Metrics

ALLOWED_LABELS = {"operation", "provider", "status", "tenant", "result", "reason", "le"}


def samples(metrics: Metrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of the exposition text, parsed back the way a scraper reads it."""
    text = generate_latest(metrics.registry).decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return samples(metrics).get((f"audio_gateway_{name}", frozenset(labels.items())))


def test_observe_request_counts_ok_requests_without_errors() -> None:
    metrics = Metrics()
    metrics.observe_request(Operation.TRANSCRIBE, "whisper", grpc.StatusCode.OK, 0.2)
    metrics.observe_request("transcribe", "whisper", "OK", 0.7)

    assert value(metrics, "requests_total", operation="transcribe", provider="whisper", status="OK") == 2
    assert value(metrics, "request_errors_total", operation="transcribe", status="OK") is None
    assert value(metrics, "request_latency_seconds_count", operation="transcribe") == 2
    assert value(metrics, "request_latency_seconds_sum", operation="transcribe") == pytest.approx(0.9)
    assert value(metrics, "request_latency_seconds_bucket", operation="transcribe", le="0.25") == 1
    assert value(metrics, "request_latency_seconds_bucket", operation="transcribe", le="1.0") == 2


def test_observe_request_counts_errors_by_status_name() -> None:
    metrics = Metrics()
    metrics.observe_request(Operation.SYNTHESIZE, "", grpc.StatusCode.INVALID_ARGUMENT, 0.01)
    metrics.observe_request(Operation.SYNTHESIZE, "piper", "UNAVAILABLE", 3.0)
    metrics.observe_request(Operation.SYNTHESIZE, "piper", "UNAVAILABLE", 4.0)

    assert value(metrics, "request_errors_total", operation="synthesize", status="UNAVAILABLE") == 2
    assert value(metrics, "request_errors_total", operation="synthesize", status="INVALID_ARGUMENT") == 1
    # A request rejected before routing has no provider; it still counts, under "none".
    assert (
        value(metrics, "requests_total", operation="synthesize", provider="none", status="INVALID_ARGUMENT")
        == 1
    )
    assert (
        value(metrics, "requests_total", operation="synthesize", provider="piper", status="UNAVAILABLE") == 2
    )


def test_observe_attempt_fills_the_provider_histogram() -> None:
    metrics = Metrics()
    metrics.observe_attempt("deepgram", Operation.TRANSCRIBE, 0.04)
    metrics.observe_attempt("deepgram", Operation.TRANSCRIBE, 12.0)
    metrics.observe_attempt("deepgram", Operation.TRANSCRIBE, 400.0)

    labels = {"provider": "deepgram", "operation": "transcribe"}
    assert value(metrics, "attempt_latency_seconds_bucket", le="0.05", **labels) == 1
    assert value(metrics, "attempt_latency_seconds_bucket", le="20.0", **labels) == 2
    assert value(metrics, "attempt_latency_seconds_bucket", le="300.0", **labels) == 2
    assert value(metrics, "attempt_latency_seconds_bucket", le="+Inf", **labels) == 3
    assert value(metrics, "attempt_latency_seconds_count", **labels) == 3


def test_latency_buckets_span_50_ms_to_5_minutes() -> None:
    assert LATENCY_BUCKETS[0] == 0.05
    assert LATENCY_BUCKETS[-1] == 300.0
    assert list(LATENCY_BUCKETS) == sorted(set(LATENCY_BUCKETS))


def test_add_cost_accumulates_cost_and_savings() -> None:
    metrics = Metrics()
    metrics.add_cost("acme", "openai", Operation.TRANSCRIBE, Decimal("0.006"), Decimal(0))
    metrics.add_cost("acme", "openai", Operation.TRANSCRIBE, Decimal(0), Decimal("0.006"))
    metrics.add_cost("globex", "openai", Operation.TRANSCRIBE, Decimal("0.0125"), Decimal(0))

    acme = {"tenant": "acme", "provider": "openai", "operation": "transcribe"}
    assert value(metrics, "cost_usd_total", **acme) == pytest.approx(0.006)
    assert value(metrics, "saved_usd_total", **acme) == pytest.approx(0.006)
    globex = acme | {"tenant": "globex"}
    assert value(metrics, "cost_usd_total", **globex) == pytest.approx(0.0125)
    # Zero savings still create the series, so a dashboard shows 0 rather than "no data".
    assert value(metrics, "saved_usd_total", **globex) == 0


def test_add_cost_refuses_negative_amounts() -> None:
    metrics = Metrics()
    with pytest.raises(ValueError, match="negative"):
        metrics.add_cost("acme", "openai", Operation.TRANSCRIBE, Decimal("-0.01"), Decimal(0))
    assert value(metrics, "cost_usd_total", tenant="acme", provider="openai", operation="transcribe") is None


def test_cache_counts_each_result_and_starts_every_series_at_zero() -> None:
    metrics = Metrics()
    for operation in Operation:
        for result in ("hit", "miss", "bypass"):
            assert value(metrics, "cache_requests_total", operation=operation.value, result=result) == 0

    metrics.cache(Operation.SYNTHESIZE, "hit")
    metrics.cache(Operation.SYNTHESIZE, "hit")
    metrics.cache(Operation.SYNTHESIZE, "miss")
    metrics.cache("understand", "bypass")

    assert value(metrics, "cache_requests_total", operation="synthesize", result="hit") == 2
    assert value(metrics, "cache_requests_total", operation="synthesize", result="miss") == 1
    assert value(metrics, "cache_requests_total", operation="understand", result="bypass") == 1
    assert value(metrics, "cache_requests_total", operation="transcribe", result="hit") == 0


def test_set_breaker_uses_the_health_book_values() -> None:
    metrics = Metrics()
    metrics.set_breaker("deepgram", breaker_gauge_value(BreakerState.OPEN))
    metrics.set_breaker("whisper", breaker_gauge_value(BreakerState.CLOSED))
    assert value(metrics, "breaker_state", provider="deepgram") == 2
    assert value(metrics, "breaker_state", provider="whisper") == 0

    metrics.set_breaker("deepgram", breaker_gauge_value(BreakerState.HALF_OPEN))
    assert value(metrics, "breaker_state", provider="deepgram") == 1


def test_set_budget_remaining_replaces_the_previous_value() -> None:
    metrics = Metrics()
    metrics.set_budget_remaining("acme", Decimal("100.00"))
    metrics.set_budget_remaining("acme", Decimal("99.25"))
    metrics.set_budget_remaining("globex", Decimal("0"))
    assert value(metrics, "budget_remaining_usd", tenant="acme") == 99.25
    assert value(metrics, "budget_remaining_usd", tenant="globex") == 0


def test_depths_are_read_at_scrape_time() -> None:
    metrics = Metrics()
    spooled: list[str] = []
    queued = {"n": 4}
    metrics.track_depths(lambda: len(spooled), lambda: queued["n"])
    assert value(metrics, "ledger_spool_depth") == 0
    assert value(metrics, "ledger_queue_depth") == 4

    spooled.extend(["a", "b", "c"])
    queued["n"] = 0
    assert value(metrics, "ledger_spool_depth") == 3
    assert value(metrics, "ledger_queue_depth") == 0


def test_a_failing_depth_callback_does_not_break_the_scrape() -> None:
    metrics = Metrics()
    metrics.observe_request(Operation.TRANSCRIBE, "whisper", "OK", 0.1)

    def broken() -> int:
        raise OSError("spool directory vanished")

    metrics.track_depths(broken, lambda: 2)
    spool = value(metrics, "ledger_spool_depth")
    assert spool is not None and math.isnan(spool)
    assert value(metrics, "ledger_queue_depth") == 2
    assert value(metrics, "requests_total", operation="transcribe", provider="whisper", status="OK") == 1


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda m: m.observe_request("translate", "whisper", "OK", 0.1), "translate"),
        (lambda m: m.observe_request("transcribe", "whisper", "FINE", 0.1), "gRPC status"),
        (lambda m: m.observe_request("transcribe", "whisper", "ok", 0.1), "gRPC status"),
        (lambda m: m.observe_attempt("whisper", "Transcribe", 0.1), "Transcribe"),
        (lambda m: m.cache("transcribe", "stale"), "cache result"),
        (lambda m: m.set_breaker("whisper", 3), "breaker value"),
    ],
)
def test_unknown_label_values_are_refused(call, message: str) -> None:
    metrics = Metrics()
    before = generate_latest(metrics.registry)
    with pytest.raises(ValueError, match=message):
        call(metrics)
    assert generate_latest(metrics.registry) == before


def drive(metrics: Metrics, requests: int) -> None:
    """Traffic as the router reports it; each request carries its own id, which must go nowhere."""
    for i in range(requests):
        request_id = uuid.uuid4().hex
        tenant = ("acme", "globex")[i % 2]
        operation = list(Operation)[i % 3]
        provider = ("whisper", "openai")[i % 2]
        status = grpc.StatusCode.OK if i % 5 else grpc.StatusCode.UNAVAILABLE
        metrics.cache(operation, ("hit", "miss")[i % 2])
        metrics.observe_attempt(provider, operation, 0.01 * (i + 1))
        metrics.add_cost(tenant, provider, operation, Decimal("0.001") * i, Decimal(i % 2))
        metrics.observe_request(operation, provider, status, 0.02 * (i + 1))
        metrics.set_budget_remaining(tenant, Decimal(1000 - i))
        assert request_id not in generate_latest(metrics.registry).decode()


def test_series_do_not_grow_with_requests_and_no_label_holds_an_id() -> None:
    metrics = Metrics()
    drive(metrics, 30)
    after_30 = samples(metrics)
    drive(metrics, 300)
    after_330 = samples(metrics)

    assert after_30.keys() == after_330.keys()
    label_names = {name for _, labels in after_330 for name, _ in labels}
    assert label_names <= ALLOWED_LABELS
    label_values = {v for _, labels in after_330 for _, v in labels}
    assert not any(len(v) >= 32 for v in label_values), label_values


def test_instances_do_not_share_state() -> None:
    first, second = Metrics(), Metrics()
    first.observe_request(Operation.TRANSCRIBE, "whisper", "OK", 0.1)
    assert value(first, "requests_total", operation="transcribe", provider="whisper", status="OK") == 1
    assert value(second, "requests_total", operation="transcribe", provider="whisper", status="OK") is None


def fetch(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        assert response.status == 200
        return response.read().decode()


def test_http_endpoint_serves_on_a_free_port_and_stops() -> None:
    metrics = Metrics()
    metrics.add_cost("acme", "openai", Operation.TRANSCRIBE, Decimal("0.5"), Decimal(0))
    port = metrics.start_http_server("127.0.0.1", 0)
    try:
        assert port > 0
        assert metrics.port == port
        body = fetch(port)
        assert (
            'audio_gateway_cost_usd_total{operation="transcribe",provider="openai",tenant="acme"} 0.5' in body
        )
        # The endpoint reads live values, not a snapshot taken at start.
        metrics.set_breaker("openai", 2)
        assert 'audio_gateway_breaker_state{provider="openai"} 2.0' in fetch(port)
        with pytest.raises(RuntimeError, match="already listens"):
            metrics.start_http_server("127.0.0.1", 0)
    finally:
        metrics.stop()
    assert metrics.port is None
    with pytest.raises(urllib.error.URLError):
        fetch(port)
    metrics.stop()  # a second stop is harmless


def test_two_instances_serve_their_own_registries() -> None:
    first, second = Metrics(), Metrics()
    first.set_budget_remaining("acme", Decimal("7"))
    second.set_budget_remaining("globex", Decimal("9"))
    ports = first.start_http_server("127.0.0.1", 0), second.start_http_server("[::]", 0)
    try:
        assert ports[0] != ports[1]
        one, two = fetch(ports[0]), fetch(ports[1])
        assert 'tenant="acme"' in one and 'tenant="globex"' not in one
        assert 'tenant="globex"' in two and 'tenant="acme"' not in two
    finally:
        first.stop()
        second.stop()


def test_a_taken_port_is_an_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(OSError):
            Metrics().start_http_server("127.0.0.1", taken.getsockname()[1])


def test_settings_defaults() -> None:
    settings = MetricsSettings()
    assert (settings.enabled, settings.host, settings.port) == (True, "0.0.0.0", 9464)
    assert MetricsSettings(port=0).port == 0
    with pytest.raises(ValueError):
        MetricsSettings(port=70000)
