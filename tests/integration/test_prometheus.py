"""The Grafana dashboard against a real Prometheus scraping the gateway's metrics endpoint.

Traffic is reported to :class:`gateway.metrics.Metrics` the way the router and server report it, the
endpoint is scraped every second by the Debian ``prometheus`` binary, and then every query of every panel
in ``docs/dashboards/audio-gateway.json`` must return finite data, with the values the traffic implies.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import re
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import grpc
import pytest

from gateway.core.provider_types import Operation
from gateway.health.book import BreakerState, breaker_gauge_value
from gateway.telemetry.metrics import Metrics

DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "dashboards" / "audio-gateway.json"
# What Grafana would put in place of each variable: every tenant and provider, and windows that hold every
# sample of this short test (scrapes are 1 s apart, so a 1 m window has dozens).
TEMPLATE_VALUES = {
    "tenant": ".*",
    "provider": ".*",
    "__rate_interval": "1m",
    "__range": "1m",
    "__interval": "5s",
}

TENANTS = ("acme", "globex", "initech")
# provider -> (attempt latency in seconds, breaker state)
PROVIDERS = {
    "whisper": (0.3, BreakerState.CLOSED),
    "openai": (1.5, BreakerState.HALF_OPEN),
    "deepgram": (8.0, BreakerState.OPEN),
}
ERROR_STATUSES = ("UNAVAILABLE", "DEADLINE_EXCEEDED", "INVALID_ARGUMENT")
BUDGETS = {"acme": Decimal("100.00"), "globex": Decimal("42.50")}
SPOOL_DEPTH, QUEUE_DEPTH = 7, 2


@dataclass
class Traffic:
    """Reports requests to the metrics as the router would, and counts what it reported."""

    metrics: Metrics
    requests: int = 0
    spent: dict[str, Decimal] = field(default_factory=dict)

    def round(self) -> None:
        for operation, tenant in itertools.product(Operation, TENANTS):
            for provider, (latency_s, _) in PROVIDERS.items():
                # Three hits and a miss per lookup group, plus one request that skipped the cache.
                for result in ("hit", "hit", "hit", "miss", "bypass"):
                    self.metrics.cache(operation, result)  # type: ignore[arg-type]
                    cost = Decimal(0) if result == "hit" else Decimal("0.0125")
                    saved = Decimal("0.0125") if result == "hit" else Decimal(0)
                    if result != "hit":
                        self.metrics.observe_attempt(provider, operation, latency_s)
                    self.metrics.add_cost(tenant, provider, operation, cost, saved)
                    self.metrics.observe_request(operation, provider, grpc.StatusCode.OK, latency_s + 0.01)
                    self.requests += 1
                    self.spent[tenant] = self.spent.get(tenant, Decimal(0)) + cost
            failed_over = "openai"
            self.metrics.observe_attempt(failed_over, operation, 30.0)
            self.metrics.observe_request(operation, failed_over, "UNAVAILABLE", 30.5)
            self.metrics.observe_request(operation, failed_over, "DEADLINE_EXCEEDED", 60.0)
            self.metrics.observe_request(operation, "", "INVALID_ARGUMENT", 0.001)
            self.requests += 3
        for tenant, budget in BUDGETS.items():
            self.metrics.set_budget_remaining(tenant, budget - self.spent[tenant])
        for provider, (_, state) in PROVIDERS.items():
            self.metrics.set_breaker(provider, breaker_gauge_value(state))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return json.load(response)
    except urllib.error.HTTPError as exc:
        # Prometheus explains a bad query in the body of its 400.
        raise AssertionError(f"{url}: HTTP {exc.code}: {exc.read().decode()}") from exc


def _wait_for(what: str, check: Callable[[], bool], timeout_s: float, log: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if check():
                return
        except (OSError, AssertionError):
            pass
        if time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
            pytest.fail(f"timed out waiting for {what}; prometheus log:\n{tail}")
        time.sleep(0.2)


class Prometheus:
    def __init__(self, base: str, log: Path) -> None:
        self.base = base
        self.log = log

    def query(self, expr: str) -> list[dict[str, Any]]:
        body = _get(f"{self.base}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
        assert body["status"] == "success", body
        assert body["data"]["resultType"] == "vector", (expr, body["data"]["resultType"])
        return body["data"]["result"]

    def label_values(self, label: str, metric: str) -> set[str]:
        body = _get(f"{self.base}/api/v1/label/{label}/values?" + urllib.parse.urlencode({"match[]": metric}))
        assert body["status"] == "success", body
        return set(body["data"])

    def wait_for(self, what: str, check: Callable[[], bool], timeout_s: float = 30) -> None:
        _wait_for(what, check, timeout_s, self.log)


@pytest.fixture
def scrapes() -> list[float]:
    return []


@pytest.fixture
def metrics(scrapes: list[float]) -> Iterator[Metrics]:
    metrics = Metrics()

    def spool_depth() -> int:
        # Called once per scrape, which tells the test when Prometheus has seen the latest values.
        scrapes.append(time.monotonic())
        return SPOOL_DEPTH

    metrics.track_depths(spool_depth, lambda: QUEUE_DEPTH)
    yield metrics
    metrics.stop()


@pytest.fixture
def prometheus(metrics: Metrics, tmp_path: Path) -> Iterator[Prometheus]:
    with scraping(metrics.start_http_server("127.0.0.1", 0), tmp_path) as server:
        yield server


@contextlib.contextmanager
def scraping(target: int, tmp_path: Path) -> Iterator[Prometheus]:
    """A real Prometheus scraping 127.0.0.1:``target`` every second."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("prometheus is not installed: apt-get install prometheus (.ci/run does)")
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n"
        "  scrape_interval: 1s\n"
        "  scrape_timeout: 1s\n"
        "  evaluation_interval: 1s\n"
        "scrape_configs:\n"
        "  - job_name: gateway\n"
        "    static_configs:\n"
        f"      - targets: ['127.0.0.1:{target}']\n"
    )
    port = _free_port()
    log = tmp_path / "prometheus.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        server = Prometheus(f"http://127.0.0.1:{port}", log)
        server.wait_for("prometheus to start", lambda: proc.poll() is None and _ready(server.base))
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def _ready(base: str) -> bool:
    with urllib.request.urlopen(f"{base}/-/ready", timeout=2) as response:
        return response.status == 200


def panel_queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, expr) for every target of every panel, rows' nested panels included."""
    queries = []
    panels = list(dashboard["panels"])
    while panels:
        panel = panels.pop(0)
        panels.extend(panel.get("panels", []))
        for target in panel.get("targets", []):
            queries.append((f"{panel['title']} [{target['refId']}]", target["expr"]))
    return queries


def substitute(expr: str) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        assert name in TEMPLATE_VALUES, f"the test does not know dashboard variable ${name}"
        return TEMPLATE_VALUES[name]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", value, expr)


def by_label(result: list[dict[str, Any]], label: str) -> dict[str, float]:
    values = {}
    for sample in result:
        key = sample["metric"].get(label, "")
        assert key not in values, f"two series for {label}={key!r}: {result}"
        values[key] = float(sample["value"][1])
    return values


def test_every_dashboard_query_returns_data_from_a_real_prometheus(
    metrics: Metrics, prometheus: Prometheus, scrapes: list[float]
) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    queries = panel_queries(dashboard)
    assert len(queries) >= 9

    # A scrape before any traffic: the pre-created cache series then start from zero in the database.
    prometheus.wait_for("the first scrape", lambda: prometheus.query('up{job="gateway"} == 1') != [])

    traffic = Traffic(metrics)
    started = len(scrapes)
    # Traffic across several scrapes, so every rate() has increases between samples.
    while len(scrapes) < started + 3:
        traffic.round()
        time.sleep(0.2)
    expected = traffic.requests
    prometheus.wait_for(
        f"Prometheus to hold all {expected} requests",
        lambda: (
            [float(s["value"][1]) for s in prometheus.query("sum(audio_gateway_requests_total)")]
            == [expected]
        ),
    )

    results: dict[str, list[dict[str, Any]]] = {}
    for title, expr in queries:
        result = prometheus.query(substitute(expr))
        assert result, f"panel {title!r} returned no data: {expr}"
        values = [float(sample["value"][1]) for sample in result]
        assert all(math.isfinite(v) for v in values), f"panel {title!r} returned {result}: {expr}"
        results[title] = result

    # Beyond "some data": the values the traffic implies.
    for operation, ratio in by_label(results["Cache hit ratio [A]"], "operation").items():
        assert ratio == pytest.approx(0.75, abs=0.05), operation
    assert set(by_label(results["Cache hit ratio [A]"], "operation")) == {op.value for op in Operation}
    bypassed = by_label(results["Cache hit ratio [B]"], "operation")
    assert all(v == pytest.approx(0.2, abs=0.05) for v in bypassed.values()), bypassed

    for title in ("Cost per tenant (USD/hour) [A]", "Saved by the cache (USD/hour) [A]"):
        per_tenant = by_label(results[title], "tenant")
        assert set(per_tenant) == set(TENANTS), title
        assert all(v > 0 for v in per_tenant.values()), (title, per_tenant)
    per_provider = by_label(results["Cost per provider (USD/hour) [A]"], "provider")
    assert set(per_provider) == set(PROVIDERS)
    assert all(v > 0 for v in per_provider.values()), per_provider
    total = by_label(results["Cost over the selected range [A]"], "tenant")
    assert set(total) == set(TENANTS) and all(v > 0 for v in total.values()), total

    p95 = by_label(results["p95 latency per provider [A]"], "provider")
    assert set(p95) == set(PROVIDERS)
    # Each provider's calls take one fixed time; the quantile lands in the bucket holding it.
    assert 0.25 <= p95["whisper"] <= 0.5
    # A fifth of openai's calls are 30 s failures: its p95 sits in the 20-30 s bucket.
    assert 20.0 < p95["openai"] <= 30.0
    assert 5.0 <= p95["deepgram"] <= 10.0

    errors = {
        sample["metric"]["status"]
        for sample in results["Errors by status [A]"]
        if float(sample["value"][1]) > 0
    }
    assert errors == set(ERROR_STATUSES)
    statuses = {sample["metric"]["status"] for sample in results["Requests by provider and status [A]"]}
    assert statuses == {"OK", *ERROR_STATUSES}

    breakers = by_label(results["Breaker state [A]"], "provider")
    assert breakers == {name: breaker_gauge_value(state) for name, (_, state) in PROVIDERS.items()}

    budgets = by_label(results["Budget remaining [A]"], "tenant")
    assert budgets == {t: pytest.approx(float(b - traffic.spent[t])) for t, b in BUDGETS.items()}

    depths = results["Ledger spool and queue depth [A]"], results["Ledger spool and queue depth [B]"]
    assert [float(r[0]["value"][1]) for r in depths] == [SPOOL_DEPTH, QUEUE_DEPTH]

    # The dashboard's variables list what the traffic used.
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    for name, expected_values in (("tenant", set(TENANTS)), ("provider", {*PROVIDERS, "none"})):
        match = re.fullmatch(r"label_values\((\w+), *(\w+)\)", variables[name]["definition"])
        assert match is not None and match.group(2) == name, variables[name]["definition"]
        assert prometheus.label_values(name, match.group(1)) == expected_values


async def test_a_running_gateway_feeds_every_panel(tmp_path: Path, redis_url: str) -> None:
    """The same dashboard against a real gateway: gRPC traffic in, Prometheus scraping its metrics port."""
    import asyncio
    import uuid

    from gateway.api.v1 import audio_gateway_pb2 as pb
    from gateway.api.v1 import audio_gateway_pb2_grpc as pb_grpc
    from gateway.api.v1 import common_pb2 as common
    from gateway.core.errors import ProviderUnavailable
    from gateway.core.provider_types import Locality
    from gateway.grpc.server import GatewayServer
    from gateway.money.pricing import UnitPrices
    from policies.loader import hash_key
    from providers.testing import FakeSynthesizer, FakeTranscriber
    from tests.audio_files import encode, tone
    from tests.conftest import local_settings

    policies = tmp_path / "policies.yaml"
    policies.write_text(
        "policies:\n  - name: default\n"
        f"tenants:\n  - {{name: acme, key_sha256: {hash_key('k1')}, default_policy: default, "
        'monthly_budget_usd: "10"}\n'
        f"  - {{name: globex, key_sha256: {hash_key('k2')}, default_policy: default}}\n"
    )
    settings = local_settings()
    settings.policies_file = policies
    settings.redis.url = redis_url
    settings.redis.key_prefix = f"test:{uuid.uuid4().hex}:"
    settings.breaker.failure_threshold = 2
    flaky = FakeTranscriber(name="flaky-stt", fail_with=ProviderUnavailable("flaky-stt", "HTTP 503"))
    steady = FakeTranscriber(name="cloud-stt", locality=Locality.CLOUD, delay_s=0.05)
    tts = FakeSynthesizer(name="cloud-tts", locality=Locality.CLOUD)
    prices = {
        ("cloud-stt", steady.model): UnitPrices(per_audio_second=Decimal("0.001")),
        ("cloud-tts", tts.model): UnitPrices(per_character=Decimal("0.0001")),
    }
    server = GatewayServer(settings, providers=[flaky, steady, tts], prices=prices)
    port = await server.start()
    await server.wait_ready(10)
    assert server.metrics_port
    try:
        with scraping(server.metrics_port, tmp_path) as prom:
            prom.wait_for("the gateway to be scraped", lambda: bool(prom.query('up{job="gateway"} == 1')))
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                stub = pb_grpc.AudioGatewayStub(channel)
                for round_ in range(3):
                    for api_key in ("k1", "k2"):
                        meta = (("authorization", f"Bearer {api_key}"),)
                        for n in range(3):  # the third of each is a repeat: a cache hit
                            clip = common.Audio(content=encode(tone(1.0, hz=300.0 + n % 2), 16_000, "wav"))
                            await stub.Transcribe(pb.TranscribeRequest(audio=clip), metadata=meta)
                        await stub.Synthesize(pb.SynthesizeRequest(text=f"Round {round_}."), metadata=meta)
                    with contextlib.suppress(grpc.aio.AioRpcError):
                        await stub.Synthesize(
                            pb.SynthesizeRequest(text=""), metadata=(("authorization", "Bearer k1"),)
                        )
                    await asyncio.sleep(1.2)  # several scrapes over the traffic, so rates have two points
            prom.wait_for(
                "the traffic to be scraped",
                lambda: (
                    bool(prom.query('sum(audio_gateway_requests_total{status="OK"}) >= 24'))
                    and bool(prom.query("sum(rate(audio_gateway_requests_total[1m])) > 0"))
                ),
            )
            empty = []
            for title, expr in panel_queries(json.loads(DASHBOARD.read_text())):
                result = prom.query(substitute(expr))
                if not any(math.isfinite(float(sample["value"][1])) for sample in result):
                    empty.append(f"{title}: {expr}")
            assert not empty, "panels without data from a running gateway:\n" + "\n".join(empty)
            assert prom.label_values("tenant", "audio_gateway_cost_usd_total") == {"acme", "globex"}
    finally:
        await server.stop(2)
