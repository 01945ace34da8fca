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

Output: one JSON line on stdout, e.g. ``{"pid": 1234, "admitted": 17, "refused": 50, "unavailable": 0,
"max_seen_usd": "15.00"}``; logs go to stderr.

To drive requests another way (say, through the gRPC API once the router reserves budgets), add a cycle to
CYCLES: a function from the config to an async callable making one request and returning its outcome.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import redis.asyncio

from gateway.money.budget import BudgetExceeded, BudgetUnavailable, RedisBudgets
from gateway.settings import LogSettings
from gateway.telemetry import logs

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
        )


class Stats:
    def __init__(self) -> None:
        self.outcomes: Counter[str] = Counter()
        self.max_seen_usd = Decimal(0)


# One request: returns ADMITTED, REFUSED or UNAVAILABLE.
Request = Callable[[], Awaitable[str]]
CycleFactory = Callable[[Config, redis.asyncio.Redis, Stats], Request]


def budget_cycle(config: Config, client: redis.asyncio.Redis, stats: Stats) -> Request:
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
        return ADMITTED

    return request


CYCLES: dict[str, CycleFactory] = {"budget": budget_cycle}


async def run(config: Config) -> Stats:
    pool = redis.asyncio.BlockingConnectionPool.from_url(config.redis_url, max_connections=config.concurrency)
    client = redis.asyncio.Redis(connection_pool=pool)
    stats = Stats()
    try:
        request = CYCLES[config.mode](config, client, stats)
        await client.ping()
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
    }
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
