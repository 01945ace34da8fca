"""Budgets hold against long answers and skipped breakers; a probe in flight is transient. Over gRPC.

A real server with real Redis, fake cloud providers at known prices, and one tenant with a monthly budget.
What a tenant has spent is read where the gateway keeps it: the budget's total in Redis.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import grpc
import pytest
import redis.asyncio

from gateway.api.v1 import audio_gateway_pb2 as pb
from gateway.api.v1 import audio_gateway_pb2_grpc as pb_grpc
from gateway.api.v1 import common_pb2 as common
from gateway.core.errors import ProviderUnavailable
from gateway.core.provider_types import Locality
from gateway.grpc.server import GatewayServer
from gateway.money.pricing import UnitPrices
from policies.loader import hash_key
from providers.base import Provider
from providers.testing import FakeAnswerer, FakeTranscriber
from tests.audio_files import encode, tone
from tests.conftest import local_settings

KEY = "budget-tenant-key"
METADATA = (("authorization", f"Bearer {KEY}"),)
CLIP = common.Audio(content=encode(tone(1.0), 16_000, "wav"))
BYPASS = common.RoutingOptions(cache=common.CACHE_MODE_BYPASS)


@dataclass
class Gateway:
    server: GatewayServer
    stub: pb_grpc.AudioGatewayStub
    redis: redis.asyncio.Redis
    prefix: str

    async def spent(self) -> Decimal:
        """The tenant's total this month: settled costs plus reservations still held."""
        raw = await self.redis.get(f"{self.prefix}budget:acme:{datetime.now(UTC):%Y-%m}")
        return Decimal(int(raw or 0)).scaleb(-9)

    async def spent_once_released(self, expected: Decimal) -> Decimal:
        """The total once a cancelled request's reservation is given back (the server does it after the
        client has gone), or whatever it still is after a few seconds."""
        for _ in range(250):
            if (spent := await self.spent()) == expected:
                return spent
            await asyncio.sleep(0.02)
        return spent


@asynccontextmanager
async def gateway(
    tmp_path: Path,
    redis_url: str,
    providers: list[Provider],
    prices: dict[tuple[str, str], UnitPrices],
    budget_usd: str,
    policy: str = "",
) -> AsyncIterator[Gateway]:
    policies = tmp_path / "policies.yaml"
    policies.write_text(
        f"policies:\n  - {{name: default{policy}}}\n"
        f"tenants:\n  - {{name: acme, key_sha256: {hash_key(KEY)}, default_policy: default, "
        f'monthly_budget_usd: "{budget_usd}"}}\n'
    )
    settings = local_settings()
    settings.redis.url = redis_url
    settings.redis.key_prefix = f"test:{uuid.uuid4().hex}:"
    settings.policies_file = policies
    # Bursts are the point here: the budget, not the admission caps, must be what refuses them.
    settings.admission.transcribe = settings.admission.understand = 0
    # One failure opens a breaker. The cool-down also bounds how long a probe counts as in flight, so it
    # must outlast the requests a test sends while its probe hangs, on a loaded machine too.
    settings.breaker.failure_threshold = 1
    settings.breaker.cooldown_s = 2.0
    server = GatewayServer(settings, providers=providers, prices=prices)
    port = await server.start()
    await server.wait_ready(10)
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield Gateway(server, pb_grpc.AudioGatewayStub(channel), client, settings.redis.key_prefix)
    finally:
        await client.aclose()
        await server.stop(5)


async def code_of(call: Callable[[], object]) -> grpc.StatusCode:
    try:
        await call()  # type: ignore[misc]
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


# -- long answers ----------------------------------------------------------------------------------------

OUTPUT_PER_TOKEN = Decimal("0.000001")  # $1 per million output tokens
ANSWER_TOKENS = 4000


async def test_concurrent_long_answers_spend_at_most_the_budget_plus_one_request(tmp_path, redis_url):
    # A text model that uses its whole allowance: 4000 tokens at $1/M is $0.004 an answer, so a $0.05
    # budget covers about a dozen. Reserving an answer at a short "expected" length let all 60 through.
    stt = FakeTranscriber(name="cloud-stt", locality=Locality.CLOUD, delay_s=0.05)
    llm = FakeAnswerer(
        name="cloud-llm", locality=Locality.CLOUD, answer="word " * (ANSWER_TOKENS + 500), delay_s=0.1
    )
    prices = {
        ("cloud-stt", stt.model): UnitPrices(per_audio_second=Decimal("0.0001")),
        ("cloud-llm", llm.model): UnitPrices(
            per_input_token=Decimal("0.000001"), per_output_token=OUTPUT_PER_TOKEN
        ),
    }
    async with gateway(tmp_path, redis_url, [stt, llm], prices, budget_usd="0.05") as gw:
        request = pb.UnderstandRequest(
            audio=CLIP, question="What is said?", max_answer_tokens=ANSWER_TOKENS, routing=BYPASS
        )
        costs: list[Decimal] = []

        async def one() -> grpc.StatusCode:
            try:
                reply = await gw.stub.Understand(request, metadata=METADATA, timeout=60)
            except grpc.aio.AioRpcError as exc:
                return exc.code()
            costs.append(Decimal(reply.route.cost_usd))
            return grpc.StatusCode.OK

        codes = await asyncio.gather(*(one() for _ in range(60)))
        spent = await gw.spent()

    assert set(codes) == {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}, codes
    assert min(costs) >= ANSWER_TOKENS * OUTPUT_PER_TOKEN  # every answer did use its whole allowance
    assert spent <= Decimal("0.05") + max(costs), (spent, len(costs))
    # Nothing is held once every request is over: the total is what the answered requests cost, plus any
    # transcription that ran for a request whose answer then did not fit.
    assert sum(costs) <= spent


# -- half-open breakers ----------------------------------------------------------------------------------


async def open_then_cool(gw: Gateway, provider: FakeTranscriber) -> None:
    """Open ``provider``'s breaker with one failure, then wait until ranking lets a probe through."""
    provider.fail_with = ProviderUnavailable(provider.name, "down")
    pinned = pb.TranscribeRequest(
        audio=CLIP,
        routing=common.RoutingOptions(cache=common.CACHE_MODE_BYPASS, provider=provider.name),
    )
    assert await code_of(lambda: gw.stub.Transcribe(pinned, metadata=METADATA)) == grpc.StatusCode.UNAVAILABLE
    provider.fail_with = None
    explain = pb.ExplainRouteRequest(operation=pb.OPERATION_TRANSCRIBE, audio_duration_s=1.0)
    for _ in range(300):
        explained = await gw.stub.ExplainRoute(explain, metadata=METADATA)
        candidate = next(c for c in explained.candidates if c.provider == provider.name)
        if candidate.eligible:
            return
        assert "circuit breaker open" in candidate.rejected_reason
        await asyncio.sleep(0.02)
    raise AssertionError(f"{provider.name}'s breaker never let a probe through")


@asynccontextmanager
async def probe_in_flight(gw: Gateway, provider: FakeTranscriber) -> AsyncIterator[None]:
    """A request that became ``provider``'s half-open probe, and hangs there until the block ends."""
    provider.delay_s = 30.0
    calls = provider.calls

    async def send() -> pb.TranscribeResponse:
        return await gw.stub.Transcribe(pb.TranscribeRequest(audio=CLIP, routing=BYPASS), metadata=METADATA)

    probe = asyncio.create_task(send())
    try:
        for _ in range(500):
            if provider.calls > calls:
                break
            assert not probe.done(), probe
            await asyncio.sleep(0.01)
        else:
            raise AssertionError("the probe request never reached the provider")
        yield
    finally:
        probe.cancel()
        with pytest.raises((asyncio.CancelledError, grpc.aio.AioRpcError)):
            await probe


async def test_every_breaker_half_open_with_its_probe_out_is_unavailable(tmp_path, redis_url):
    solo = FakeTranscriber(name="solo", locality=Locality.CLOUD)
    prices = {("solo", solo.model): UnitPrices(per_audio_second=Decimal("0.0001"))}
    async with gateway(tmp_path, redis_url, [solo], prices, budget_usd="1") as gw:
        await open_then_cool(gw, solo)
        async with probe_in_flight(gw, solo):
            request = pb.TranscribeRequest(audio=CLIP, routing=BYPASS)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await gw.stub.Transcribe(request, metadata=METADATA)
        spent = await gw.spent_once_released(Decimal(0))
    # Transient: the same call succeeds once the probe is back, so it is not the policy's refusal.
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE, caught.value
    assert "half-open with a probe in flight" in caught.value.details()
    assert spent == 0  # neither request was billed, and nothing stays reserved


CHEAP_PER_S, DEAR_PER_S = Decimal("0.001"), Decimal("0.01")


async def test_a_walk_past_a_half_open_breaker_stays_within_the_budget(tmp_path, redis_url):
    # One attempt per request (max_attempts 1), cheapest first. With the cheap provider's probe out, every
    # other request passes over it to the dear one: each must have reserved the dear one's cost.
    cheap = FakeTranscriber(name="cheap", locality=Locality.CLOUD)
    dear = FakeTranscriber(name="dear", locality=Locality.CLOUD, delay_s=0.2)
    prices = {
        ("cheap", cheap.model): UnitPrices(per_audio_second=CHEAP_PER_S),
        ("dear", dear.model): UnitPrices(per_audio_second=DEAR_PER_S),
    }
    async with gateway(
        tmp_path, redis_url, [cheap, dear], prices, budget_usd="0.05", policy=", max_attempts: 1"
    ) as gw:
        await open_then_cool(gw, cheap)
        async with probe_in_flight(gw, cheap):
            request = pb.TranscribeRequest(audio=CLIP, routing=BYPASS)
            codes = await asyncio.gather(
                *(code_of(lambda: gw.stub.Transcribe(request, metadata=METADATA)) for _ in range(20))
            )
        served = codes.count(grpc.StatusCode.OK)
        spent = await gw.spent_once_released(served * DEAR_PER_S)
    assert dear.calls == served > 0, codes
    # Each 1 s clip costs $0.01 at the dear provider; the budget buys at most five.
    assert spent == served * DEAR_PER_S
    assert spent <= Decimal("0.05"), (spent, codes)
    assert set(codes) <= {
        grpc.StatusCode.OK,
        grpc.StatusCode.RESOURCE_EXHAUSTED,  # the budget could not hold the dear provider's cost
        grpc.StatusCode.UNAVAILABLE,  # only the cheap provider fitted, and its probe was out
    }, codes


async def test_a_fallback_whose_worst_case_does_not_fit_leaves_the_cheaper_candidate_serving(
    tmp_path, redis_url
):
    # Two listening answerers; at 4000 tokens the dear one's worst case ($0.04) is past the $0.03 budget,
    # though its expected cost (a short answer) is not. The request still runs, on the cheap one alone.
    short = FakeAnswerer(name="short", locality=Locality.CLOUD)
    dear = FakeAnswerer(name="dear", locality=Locality.CLOUD)
    short.listens = dear.listens = True  # no transcription step: one reservation per request
    prices = {
        ("short", short.model): UnitPrices(per_output_token=Decimal("0.0000001")),
        ("dear", dear.model): UnitPrices(per_output_token=Decimal("0.00001")),
    }
    async with gateway(tmp_path, redis_url, [short, dear], prices, budget_usd="0.03") as gw:
        request = pb.UnderstandRequest(
            audio=CLIP, question="What is said?", max_answer_tokens=ANSWER_TOKENS, routing=BYPASS
        )
        explain = pb.ExplainRouteRequest(operation=pb.OPERATION_UNDERSTAND, audio_duration_s=1.0)
        explained = await gw.stub.ExplainRoute(explain, metadata=METADATA)
        reply = await gw.stub.Understand(request, metadata=METADATA)
        # With the cheap one failing, there is no fallback: the dear one was never reserved for.
        short.fail_with = ProviderUnavailable("short", "down")
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await gw.stub.Understand(request, metadata=METADATA)
        spent = await gw.spent()
    assert all(c.eligible for c in explained.candidates)  # ranking keeps both on their expected cost
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE and dear.calls == 0
    assert [a.provider for a in reply.route.attempts] == ["short"] and reply.route.provider == "short"
    assert spent == Decimal(reply.route.cost_usd) > 0
