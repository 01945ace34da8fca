"""Tenant budgets: reservation, settlement, months and store failures, against a real Redis."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
import redis.asyncio

from gateway.core.errors import GatewayError, LimitExceeded
from gateway.money.budget import (
    KEY_TTL_S,
    BudgetExceeded,
    Budgets,
    BudgetUnavailable,
    LocalBudgets,
    RedisBudgets,
    Reservation,
)
from tests.conftest import throwaway_redis

D = Decimal
NOVEMBER = datetime(2026, 11, 30, 23, 59, 59, tzinfo=UTC)
DECEMBER = datetime(2026, 12, 1, 0, 0, 0, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime = NOVEMBER) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[redis.asyncio.Redis]:
    # A pool smaller than the concurrency below, which waits for a free connection: redis-py's default
    # pool raises at once past its size, and that would read as an unreachable budget store.
    pool = redis.asyncio.BlockingConnectionPool.from_url(redis_url, max_connections=20)
    client = redis.asyncio.Redis(connection_pool=pool)
    yield client
    await client.aclose()


@pytest.fixture
def prefix(redis_prefix: str) -> str:
    return redis_prefix


MakeBudgets = Callable[..., Budgets]


@pytest.fixture(params=["redis", "local"])
def make_budgets(
    request: pytest.FixtureRequest, redis_client: redis.asyncio.Redis, prefix: str
) -> MakeBudgets:
    """Builds either implementation; every semantic test runs against both."""

    def make(now: Callable[[], datetime] | None = None) -> Budgets:
        now = now or Clock()
        if request.param == "redis":
            return RedisBudgets(redis_client, prefix, timeout_s=2.0, now=now)
        return LocalBudgets(now=now)

    return make


# -- semantics (both implementations) ---------------------------------------------------------------


async def test_admits_up_to_the_limit_and_refuses_beyond_it(make_budgets: MakeBudgets):
    budgets = make_budgets()
    for _ in range(3):
        await budgets.reserve("acme", D("1.00"), D("0.30"))
    await budgets.reserve("acme", D("1.00"), D("0.10"))  # exactly at the limit: admitted
    with pytest.raises(BudgetExceeded) as caught:
        await budgets.reserve("acme", D("1.00"), D("0.000000001"))
    assert isinstance(caught.value, LimitExceeded)
    assert str(caught.value) == (
        "tenant 'acme' has used $1.00 of its $1.00 monthly budget (2026-11); "
        "this request may cost up to $0.000000001"
    )
    assert (caught.value.tenant, caught.value.month) == ("acme", "2026-11")
    assert await budgets.spent("acme") == D("1.00")
    assert await budgets.remaining("acme", D("1.00")) == 0


async def test_the_refusal_names_what_is_used_and_what_is_needed(make_budgets: MakeBudgets):
    budgets = make_budgets()
    await budgets.reserve("acme", D("50"), D("49.80"))
    with pytest.raises(
        BudgetExceeded,
        match=r"^tenant 'acme' has used \$49\.80 of its \$50\.00 monthly budget"
        r" \(2026-11\); this request may cost up to \$0\.30$",
    ):
        await budgets.reserve("acme", D("50"), D("0.30"))
    # A refusal changes nothing, and the next request that fits is still admitted.
    assert await budgets.spent("acme") == D("49.80")
    await budgets.reserve("acme", D("50"), D("0.20"))


async def test_tenants_have_separate_budgets(make_budgets: MakeBudgets):
    budgets = make_budgets()
    await budgets.reserve("acme", D("1"), D("1"))
    await budgets.reserve("globex", D("1"), D("1"))
    with pytest.raises(BudgetExceeded, match="'globex'"):
        await budgets.reserve("globex", D("1"), D("0.01"))


async def test_settling_below_the_estimate_frees_budget(make_budgets: MakeBudgets):
    budgets = make_budgets()
    held = await budgets.reserve("acme", D("1.00"), D("0.80"))
    with pytest.raises(BudgetExceeded):
        await budgets.reserve("acme", D("1.00"), D("0.50"))
    await budgets.settle(held, D("0.25"))
    assert await budgets.spent("acme") == D("0.25")
    await budgets.reserve("acme", D("1.00"), D("0.50"))
    assert await budgets.remaining("acme", D("1.00")) == D("0.25")


async def test_settling_above_the_estimate_consumes_more(make_budgets: MakeBudgets):
    budgets = make_budgets()
    held = await budgets.reserve("acme", D("1.00"), D("0.40"))
    await budgets.settle(held, D("0.90"))
    assert await budgets.spent("acme") == D("0.90")
    with pytest.raises(BudgetExceeded):
        await budgets.reserve("acme", D("1.00"), D("0.20"))
    # An overrun past the limit is recorded as spent, and remaining() stops at zero.
    second = await budgets.reserve("acme", D("1.00"), D("0.10"))
    await budgets.settle(second, D("0.30"))
    assert await budgets.spent("acme") == D("1.20")
    assert await budgets.remaining("acme", D("1.00")) == 0


async def test_release_returns_the_reservation(make_budgets: MakeBudgets):
    budgets = make_budgets()
    held = await budgets.reserve("acme", D("1.00"), D("0.70"))
    await budgets.release(held)
    assert await budgets.spent("acme") == 0
    await budgets.reserve("acme", D("1.00"), D("1.00"))


async def test_a_new_month_starts_from_zero_on_its_own_key(make_budgets: MakeBudgets):
    clock = Clock(NOVEMBER)
    budgets = make_budgets(clock)
    november = await budgets.reserve("acme", D("1"), D("1"))
    with pytest.raises(BudgetExceeded, match=r"\(2026-11\)"):
        await budgets.reserve("acme", D("1"), D("0.01"))

    clock.now = DECEMBER
    december = await budgets.reserve("acme", D("1"), D("0.60"))
    assert (november.month, december.month) == ("2026-11", "2026-12")
    assert november.key != december.key
    assert december.key.endswith("budget:acme:2026-12")
    # A request admitted in November is charged to November even when it finishes in December.
    await budgets.settle(november, D("0.90"))
    assert await budgets.spent("acme", "2026-11") == D("0.90")
    assert await budgets.spent("acme") == D("0.60")


async def test_months_follow_utc(make_budgets: MakeBudgets):
    # 23:30 on 30 November in UTC-5 is already December in UTC.
    budgets = make_budgets(Clock(datetime(2026, 11, 30, 23, 30, tzinfo=timezone(timedelta(hours=-5)))))
    assert (await budgets.reserve("acme", D("1"), D("0.1"))).month == "2026-12"


async def test_rounding_never_lets_a_tenant_overspend(make_budgets: MakeBudgets):
    budgets = make_budgets()
    # The limit rounds down to 1 nano-dollar and each estimate rounds up to 1: one fits, not two.
    limit = D("0.0000000019")
    held = await budgets.reserve("acme", limit, D("0.0000000001"))
    assert held.amount_nano == 1
    with pytest.raises(BudgetExceeded):
        await budgets.reserve("acme", limit, D("0.0000000001"))
    await budgets.settle(held, D("0.00000000101"))  # 1.01 nano is charged as 2
    assert await budgets.spent("acme") == D("0.000000002")


async def test_exactly_fifty_of_two_hundred_concurrent_reservations_fit(make_budgets: MakeBudgets):
    budgets = make_budgets()
    cost, limit = D("0.30"), D("15.00")  # room for exactly 50

    async def one() -> bool:
        try:
            await budgets.reserve("acme", limit, cost)
        except BudgetExceeded:
            return False
        return True

    admitted = await asyncio.gather(*(one() for _ in range(200)))
    assert sum(admitted) == 50
    assert await budgets.spent("acme") == limit


async def test_money_must_be_decimal_and_not_negative(make_budgets: MakeBudgets):
    budgets = make_budgets()
    with pytest.raises(TypeError, match="Decimal"):
        await budgets.reserve("acme", D("1"), 0.1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least zero"):
        await budgets.reserve("acme", D("1"), D("-0.1"))
    with pytest.raises(ValueError, match="finite"):
        await budgets.reserve("acme", D("NaN"), D("0.1"))


# -- Redis specifics -----------------------------------------------------------------------------------


async def test_redis_keys_are_per_tenant_and_month_and_expire(redis_client: redis.asyncio.Redis, prefix: str):
    budgets = RedisBudgets(redis_client, prefix, timeout_s=2.0, now=Clock())
    held = await budgets.reserve("acme", D("50"), D("0.30"))
    assert held == Reservation("acme", "2026-11", 300_000_000, f"{prefix}budget:acme:2026-11")
    assert int(await redis_client.get(held.key)) == 300_000_000
    assert KEY_TTL_S - 60 < await redis_client.ttl(held.key) <= KEY_TTL_S
    assert 35 * 86400 <= KEY_TTL_S <= 45 * 86400


async def test_instances_sharing_redis_share_the_budget(
    redis_url: str, redis_client: redis.asyncio.Redis, prefix: str
):
    other_client = redis.asyncio.Redis.from_url(redis_url)
    try:
        first = RedisBudgets(redis_client, prefix, timeout_s=2.0)
        second = RedisBudgets(other_client, prefix, timeout_s=2.0)
        held = await first.reserve("acme", D("1"), D("0.70"))
        with pytest.raises(BudgetExceeded, match=r"has used \$0\.70"):
            await second.reserve("acme", D("1"), D("0.70"))
        await second.release(held)  # any instance may settle or release another's reservation
        await second.reserve("acme", D("1"), D("0.70"))
    finally:
        await other_client.aclose()


# -- store failures -------------------------------------------------------------------------------------


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers: a Redis that hangs."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(64)
        yield server.getsockname()[1]


async def test_unreachable_redis_fails_closed_by_default():
    with throwaway_redis() as url:
        client = redis.asyncio.Redis.from_url(url)
        budgets = RedisBudgets(client, "test:", timeout_s=0.5)
        await budgets.reserve("acme", D("1"), D("0.10"))
    # The server is stopped now.
    try:
        with pytest.raises(BudgetUnavailable) as caught:
            await budgets.reserve("acme", D("1"), D("0.10"))
        assert isinstance(caught.value, GatewayError)
        assert not isinstance(caught.value, LimitExceeded)
        assert "127.0.0.1" not in str(caught.value)  # callers are not told where the store lives
        with pytest.raises(BudgetUnavailable):
            await budgets.remaining("acme", D("1"))
        with pytest.raises(BudgetUnavailable):
            await budgets.spent("acme")
    finally:
        await client.aclose()


async def test_unreachable_redis_admits_when_fail_open():
    with throwaway_redis() as url:
        client = redis.asyncio.Redis.from_url(url)
        budgets = RedisBudgets(client, "test:", timeout_s=0.5, fail_open=True)
    try:
        held = await budgets.reserve("acme", D("1"), D("5.00"))  # even beyond the limit: nothing is checked
        assert held.amount_nano == 0
        assert await budgets.remaining("acme", D("1")) == D("1")
        # Settling and releasing a request that already ran never fails it.
        await budgets.settle(held, D("0.10"))
        await budgets.release(await budgets.reserve("acme", D("1"), D("0.10")))
    finally:
        await client.aclose()


async def test_settle_and_release_swallow_store_failures_when_failing_closed():
    with throwaway_redis() as url:
        client = redis.asyncio.Redis.from_url(url)
        budgets = RedisBudgets(client, "test:", timeout_s=0.5)
        held = await budgets.reserve("acme", D("1"), D("0.10"))
    try:
        await budgets.settle(held, D("0.20"))
        await budgets.release(held)
    finally:
        await client.aclose()


@pytest.mark.parametrize("fail_open", [False, True])
async def test_a_hanging_redis_costs_at_most_the_timeout(silent_port: int, fail_open: bool):
    client = redis.asyncio.Redis(host="127.0.0.1", port=silent_port)
    budgets = RedisBudgets(client, "test:", timeout_s=0.3, fail_open=fail_open)
    try:
        started = time.monotonic()
        if fail_open:
            assert (await budgets.reserve("acme", D("1"), D("0.1"))).amount_nano == 0
        else:
            with pytest.raises(BudgetUnavailable):
                await budgets.reserve("acme", D("1"), D("0.1"))
        assert time.monotonic() - started < 1.5
    finally:
        await client.aclose()


async def test_a_fail_open_reservation_is_charged_in_full_once_redis_is_back(
    silent_port: int, redis_client: redis.asyncio.Redis, prefix: str
):
    hanging = redis.asyncio.Redis(host="127.0.0.1", port=silent_port)
    try:
        during_outage = RedisBudgets(hanging, prefix, timeout_s=0.3, fail_open=True)
        held = await during_outage.reserve("acme", D("1"), D("0.40"))
    finally:
        await hanging.aclose()
    after_outage = RedisBudgets(redis_client, prefix, timeout_s=2.0)
    await after_outage.settle(held, D("0.35"))
    assert await after_outage.spent("acme") == D("0.35")
