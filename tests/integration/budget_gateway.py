"""One gateway instance's share of a budget race, run as its own OS process by the fleet test.

It drives the real :class:`gateway.budget.RedisBudgets` against the real Redis, the way the router does for
each request: reserve the estimate, hold it while the request is in flight, then settle to the actual cost.
Several copies started together share one Redis and one tenant, so their reservations race.

Configuration (environment):

    REDIS_URL       the shared Redis
    PREFIX          key prefix (unique per test run)
    TENANT          the tenant whose budget is raced for
    LIMIT_USD       its monthly budget
    COST_USD        each request's estimated cost
    ACTUAL_USD      each request's actual cost (default: COST_USD)
    N_REQUESTS      requests this process makes
    CONCURRENCY     requests in flight at once
    MAX_INFLIGHT_S  upper bound of the random time between reserve and settle (default 0.02)
    TIMEOUT_S       the budget store timeout (default 2.0: generous, a refusal for slowness would skew counts)
    BARRIER         a path: the process writes BARRIER.ready.<pid> once connected, then starts when BARRIER
                    exists, so every process begins at the same moment
    MODE            which request cycle to run (default "budget"; see CYCLES)
    ANSWER_TOKENS   the "understand" cycle: each question's max_answer_tokens (default 4000), all used
    OUTPUT_USD_PER_TOKEN  the "understand" cycle: the answerer's price per output token

Output: one JSON line on stdout, e.g. ``{"pid": 1234, "admitted": 17, "refused": 50, "unavailable": 0,
"max_seen_usd": "15.00", "spent_usd": "5.10", "max_cost_usd": "0.30"}`` (the last two: what the admitted
requests cost, in all and at most); logs go to stderr.

Cycles (MODE):

- ``budget``: RedisBudgets alone, with the provider call replaced by a short random wait.
- ``understand``: the process is a whole gateway replica. It serves Understand over gRPC with a fake cloud
  transcriber and a fake cloud text model that answers at the full length it is allowed, and sends its
  share of questions to itself.

To drive requests another way, add a cycle to CYCLES: an async context manager, from the config, that
yields an async callable making one request and returning its outcome.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import grpc
import redis.asyncio

from gateway.api.v1 import audio_gateway_pb2 as pb
from gateway.api.v1 import audio_gateway_pb2_grpc as pb_grpc
from gateway.api.v1 import common_pb2 as common
from gateway.core.provider_types import Locality
from gateway.grpc.server import GatewayServer
from gateway.money.budget import BudgetExceeded, BudgetUnavailable, RedisBudgets
from gateway.money.pricing import UnitPrices
from gateway.settings import LogSettings
from gateway.telemetry import logs
from policies.loader import hash_key
from providers.testing import FakeAnswerer, FakeTranscriber
from tests.audio_files import encode, tone
from tests.conftest import local_settings

ADMITTED, REFUSED, UNAVAILABLE = "admitted", "refused", "unavailable"


@dataclass(frozen=True)
class Config:
    redis_url: str
    prefix: str
    tenant: str
    limit_usd: Decimal
    cost_usd: Decimal
    actual_usd: Decimal
    n_requests: int
    concurrency: int
    max_inflight_s: float
    timeout_s: float
    barrier: Path
    mode: str
    answer_tokens: int = 4000
    output_usd_per_token: Decimal = Decimal(0)

    @classmethod
    def from_env(cls) -> Config:
        env = os.environ
        cost = Decimal(env["COST_USD"])
        return cls(
            redis_url=env["REDIS_URL"],
            prefix=env["PREFIX"],
            tenant=env["TENANT"],
            limit_usd=Decimal(env["LIMIT_USD"]),
            cost_usd=cost,
            actual_usd=Decimal(env.get("ACTUAL_USD", str(cost))),
            n_requests=int(env["N_REQUESTS"]),
            concurrency=int(env["CONCURRENCY"]),
            max_inflight_s=float(env.get("MAX_INFLIGHT_S", "0.02")),
            timeout_s=float(env.get("TIMEOUT_S", "2.0")),
            barrier=Path(env["BARRIER"]),
            mode=env.get("MODE", "budget"),
            answer_tokens=int(env.get("ANSWER_TOKENS", "4000")),
            output_usd_per_token=Decimal(env.get("OUTPUT_USD_PER_TOKEN", "0")),
        )


class Stats:
    def __init__(self) -> None:
        self.outcomes: Counter[str] = Counter()
        self.max_seen_usd = Decimal(0)
        self.costs: list[Decimal] = []  # of the admitted requests, as their replies state them


# One request: returns ADMITTED, REFUSED or UNAVAILABLE.
Request = Callable[[], Awaitable[str]]
CycleFactory = Callable[[Config, redis.asyncio.Redis, Stats], AbstractAsyncContextManager[Request]]


@asynccontextmanager
async def budget_cycle(config: Config, client: redis.asyncio.Redis, stats: Stats) -> AsyncIterator[Request]:
    """What the router does around a provider call, with the call replaced by a short random wait."""
    budgets = RedisBudgets(client, config.prefix, config.timeout_s)

    async def request() -> str:
        try:
            reservation = await budgets.reserve(config.tenant, config.limit_usd, config.cost_usd)
        except BudgetExceeded:
            return REFUSED
        except BudgetUnavailable:
            return UNAVAILABLE
        # Sampled while this reservation is held, from every process: the peak the fleet test bounds.
        stats.max_seen_usd = max(stats.max_seen_usd, await budgets.spent(config.tenant))
        await asyncio.sleep(random.uniform(0, config.max_inflight_s))
        await budgets.settle(reservation, config.actual_usd)
        stats.costs.append(config.actual_usd)
        return ADMITTED

    yield request


_API_KEY = "fleet-budget-key"


@asynccontextmanager
async def understand_cycle(
    config: Config, client: redis.asyncio.Redis, stats: Stats
) -> AsyncIterator[Request]:
    """This process as a gateway replica, asked questions whose answers use their whole allowance."""
    state = Path(tempfile.mkdtemp(prefix="budget-replica-"))
    policies = state / "policies.yaml"
    policies.write_text(
        "policies:\n  - {name: default}\n"
        f"tenants:\n  - {{name: {config.tenant}, key_sha256: {hash_key(_API_KEY)}, default_policy: default, "
        f'monthly_budget_usd: "{config.limit_usd}"}}\n'
    )
    settings = local_settings()
    settings.redis.url = config.redis_url
    settings.redis.key_prefix = config.prefix
    settings.redis.timeout_s = config.timeout_s
    settings.policies_file = policies
    # Refusals are logged; nothing reads this process's stderr until it exits, so keep it within the pipe.
    settings.log.level = "error"
    logs.configure(settings.log)
    # The budget, not the admission caps, must be what refuses the burst.
    settings.admission.transcribe = settings.admission.understand = 0
    stt = FakeTranscriber(name="cloud-stt", locality=Locality.CLOUD, delay_s=config.max_inflight_s)
    llm = FakeAnswerer(
        name="cloud-llm",
        locality=Locality.CLOUD,
        answer="word " * (config.answer_tokens + 100),
        delay_s=config.max_inflight_s,
    )
    prices = {
        ("cloud-stt", stt.model): UnitPrices(per_audio_second=Decimal("0.0001")),
        ("cloud-llm", llm.model): UnitPrices(
            per_input_token=Decimal("0.000001"), per_output_token=config.output_usd_per_token
        ),
    }
    server = GatewayServer(settings, providers=[stt, llm], prices=prices)
    port = await server.start()
    budgets = RedisBudgets(client, config.prefix, config.timeout_s)
    try:
        await server.wait_ready(30)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.AudioGatewayStub(channel)
            question = pb.UnderstandRequest(
                audio=common.Audio(content=encode(tone(1.0), 16_000, "wav")),
                question="What is said?",
                max_answer_tokens=config.answer_tokens,
                routing=common.RoutingOptions(cache=common.CACHE_MODE_BYPASS),
            )

            async def request() -> str:
                try:
                    reply = await stub.Understand(
                        question, metadata=(("authorization", f"Bearer {_API_KEY}"),), timeout=60
                    )
                except grpc.aio.AioRpcError as exc:
                    if exc.code() is grpc.StatusCode.RESOURCE_EXHAUSTED:
                        return REFUSED
                    if exc.code() is grpc.StatusCode.UNAVAILABLE:
                        return UNAVAILABLE
                    raise
                stats.costs.append(Decimal(reply.route.cost_usd))
                stats.max_seen_usd = max(stats.max_seen_usd, await budgets.spent(config.tenant))
                return ADMITTED

            yield request
    finally:
        await server.stop(5)


CYCLES: dict[str, CycleFactory] = {"budget": budget_cycle, "understand": understand_cycle}


async def run(config: Config) -> Stats:
    pool = redis.asyncio.BlockingConnectionPool.from_url(config.redis_url, max_connections=config.concurrency)
    client = redis.asyncio.Redis(connection_pool=pool)
    stats = Stats()
    try:
        await client.ping()
        async with CYCLES[config.mode](config, client, stats) as request:
            _wait_at_barrier(config.barrier)
            slots = asyncio.Semaphore(config.concurrency)

            async def one() -> None:
                async with slots:
                    stats.outcomes[await request()] += 1

            await asyncio.gather(*(one() for _ in range(config.n_requests)))
    finally:
        await client.aclose()
    return stats


def _wait_at_barrier(barrier: Path) -> None:
    # Blocks the event loop on purpose: nothing else runs before the start, and a tight poll lines the
    # processes up more closely than a loop wake-up would.
    barrier.with_name(f"{barrier.name}.ready.{os.getpid()}").touch()
    deadline = time.monotonic() + 60
    while not barrier.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{barrier} never appeared")
        time.sleep(0.001)


def main() -> None:
    logs.configure(LogSettings())
    stats = asyncio.run(run(Config.from_env()))
    report = {
        "pid": os.getpid(),
        **{outcome: stats.outcomes[outcome] for outcome in (ADMITTED, REFUSED, UNAVAILABLE)},
        "max_seen_usd": str(stats.max_seen_usd),
        "spent_usd": str(sum(stats.costs, Decimal(0))),
        "max_cost_usd": str(max(stats.costs, default=Decimal(0))),
    }
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
