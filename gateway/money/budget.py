"""Tenant monthly budgets, enforced by reserving a request's estimated cost before it runs.

A request's life against its tenant's budget::

    reservation = await budgets.reserve(tenant, monthly_limit_usd, estimate_usd)  # or BudgetExceeded
    try:
        ...serve the request...
    except BaseException:
        await budgets.release(reservation)           # nothing was charged
        raise
    await budgets.settle(reservation, actual_usd)    # the estimate becomes the actual cost

Each reservation is settled or released exactly once: a second call would adjust the total again.

**The guarantee.** A reservation is admitted only if everything already spent or reserved this month plus
its estimate fits the limit, checked and added in one atomic step. With :class:`RedisBudgets`, that step is a
Lua script in the shared Redis, so any number of gateway instances sharing one Redis admit together exactly
what one instance would: the estimates admitted never sum past the limit. Spending can pass the limit only
through settlement, when a request costs more than its estimate; estimates that are upper bounds keep it
within the limit, and an admitted request overruns by at most the difference between its actual and
estimated cost. Once the total reaches the limit, every further reservation is refused. That is why the
router reserves each request's worst case (:meth:`gateway.money.pricing.PriceBook.worst_case`), not its
expected cost.

Amounts are integer nano-dollars: reservations and charges round up and limits round down, so rounding never
lets a tenant spend more. Totals are kept per tenant and calendar month (UTC); a request is charged to the
month in which it was admitted, even if it finishes in the next one.

**When the shared store fails** (unreachable, or slower than ``timeout_s``), :class:`RedisBudgets` refuses
the request with :class:`BudgetUnavailable` by default (fail closed): a budget is a promise about money, and
an outage must not become an unmetered window. With ``fail_open=True`` it admits instead, logging
``budget.unenforced``, and settlement still records the actual cost if the store is back by then. Either way
``settle`` and ``release`` never fail a request that has already run: if they cannot reach the store, the
reserved estimate stays charged (the conservative error) and a warning is logged. A reservation whose reply
was lost to a timeout may have been applied; it, too, stays charged until the month's key expires.

:class:`LocalBudgets` keeps the same semantics in process memory. It is what runs without Redis, and each
gateway instance then enforces the limit on its own: N instances may together spend up to N times it.
"""

from __future__ import annotations

import asyncio
import threading
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any

import redis
import redis.asyncio
import structlog

from gateway.core.errors import BudgetExhausted, DependencyUnavailable

log = structlog.get_logger(__name__)

__all__ = [
    "BudgetExceeded",
    "BudgetUnavailable",
    "Budgets",
    "LocalBudgets",
    "RedisBudgets",
    "Reservation",
]

NANO_PER_USD = 10**9
# A month's key outlives the month, so late settlements and end-of-month reports still find it.
KEY_TTL_S = 40 * 24 * 3600

Clock = Callable[[], datetime]


class BudgetExceeded(BudgetExhausted):
    """The tenant's monthly budget cannot cover this request's estimated cost."""

    def __init__(
        self,
        tenant: str,
        month: str,
        used_usd: Decimal,
        limit_usd: Decimal,
        estimate_usd: Decimal,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(
            f"tenant {tenant!r} has used {_usd(used_usd)} of its {_usd(limit_usd)} monthly budget ({month}); "
            f"this request may cost up to {_usd(estimate_usd)}",
            retry_after_s,
        )
        self.tenant = tenant
        self.month = month
        self.used_usd = used_usd
        self.limit_usd = limit_usd
        self.estimate_usd = estimate_usd


class BudgetUnavailable(DependencyUnavailable):
    """The shared budget store could not be consulted, so a budgeted request is refused (fail closed)."""

    kind = "budget_unavailable"


@dataclass(frozen=True)
class Reservation:
    """An admitted estimate, held against ``key`` until it is settled or released."""

    tenant: str
    month: str  # YYYY-MM (UTC) in which the request was admitted
    amount_nano: int
    key: str


def _utc_now() -> datetime:
    return datetime.now(UTC)


class Budgets(ABC):
    """Reserve, settle and release against per-tenant monthly totals.

    Subclasses supply three primitives on integer nano-dollar totals; the rules (rounding, months, messages,
    what a store failure means) live here, once.
    """

    def __init__(self, *, prefix: str = "", fail_open: bool = False, now: Clock = _utc_now) -> None:
        self._prefix = prefix
        self._fail_open = fail_open
        self._now = now

    async def reserve(self, tenant: str, monthly_limit_usd: Decimal, estimate_usd: Decimal) -> Reservation:
        """Hold ``estimate_usd`` against this month's budget, or raise :class:`BudgetExceeded`."""
        amount = _to_nano(estimate_usd, ROUND_CEILING)
        limit = _to_nano(monthly_limit_usd, ROUND_FLOOR)
        month = self.month()
        key = self.key(tenant, month)
        try:
            admitted, total = await self._reserve(key, amount, limit)
        except BudgetUnavailable:
            if not self._fail_open:
                raise
            log.warning("budget.unenforced", tenant=tenant, month=month, estimate_usd=str(estimate_usd))
            # Nothing was held, so settlement charges the whole actual cost if the store is back by then.
            return Reservation(tenant, month, 0, key)
        if not admitted:
            raise BudgetExceeded(
                tenant, month, _from_nano(total), monthly_limit_usd, estimate_usd, self.renews_in_s()
            )
        return Reservation(tenant, month, amount, key)

    async def settle(self, reservation: Reservation, actual_usd: Decimal) -> None:
        """Replace the reserved estimate by the actual cost (either may be the larger)."""
        delta = _to_nano(actual_usd, ROUND_CEILING) - reservation.amount_nano
        await self._adjust(reservation, delta, "settle")

    async def release(self, reservation: Reservation) -> None:
        """Give the reserved estimate back: the request failed and nothing was charged."""
        await self._adjust(reservation, -reservation.amount_nano, "release")

    async def spent(self, tenant: str, month: str | None = None) -> Decimal:
        """Spent plus reserved (in flight) in ``month`` (YYYY-MM; default this month).

        Raises :class:`BudgetUnavailable` when the store is unreachable, whatever ``fail_open`` says.
        """
        return _from_nano(await self._total(self.key(tenant, month or self.month())))

    async def remaining(self, tenant: str, monthly_limit_usd: Decimal) -> Decimal:
        """What is left of this month's budget, never below zero.

        When the store is unreachable: :class:`BudgetUnavailable`, or with ``fail_open`` the whole limit,
        matching what :meth:`reserve` would then admit.
        """
        try:
            used = await self.spent(tenant)
        except BudgetUnavailable:
            if not self._fail_open:
                raise
            return monthly_limit_usd
        return max(monthly_limit_usd - used, Decimal(0))

    def month(self) -> str:
        now = self._now()
        if now.tzinfo is None:
            now = now.replace(tzinfo=UTC)
        return now.astimezone(UTC).strftime("%Y-%m")

    def renews_in_s(self) -> float:
        """Seconds until the next calendar month (UTC), when every tenant's budget starts afresh."""
        now = self._now()
        if now.tzinfo is None:
            now = now.replace(tzinfo=UTC)
        now = now.astimezone(UTC)
        year, month = (now.year + 1, 1) if now.month == 12 else (now.year, now.month + 1)
        return max((datetime(year, month, 1, tzinfo=UTC) - now).total_seconds(), 1.0)

    def key(self, tenant: str, month: str) -> str:
        return f"{self._prefix}budget:{tenant}:{month}"

    async def _adjust(self, reservation: Reservation, delta: int, action: str) -> None:
        if delta == 0:
            return
        try:
            await self._add(reservation.key, delta)
        except BudgetUnavailable:
            # The request has already run; failing it now would not get the money back.
            log.warning(
                "budget.adjust_lost",
                action=action,
                tenant=reservation.tenant,
                month=reservation.month,
                delta_usd=str(_from_nano(delta)),
            )

    @abstractmethod
    async def _reserve(self, key: str, amount: int, limit: int) -> tuple[bool, int]:
        """Atomically add ``amount`` if the total stays within ``limit``: (admitted, total after)."""

    @abstractmethod
    async def _add(self, key: str, delta: int) -> None: ...

    @abstractmethod
    async def _total(self, key: str) -> int: ...


# Lua numbers are doubles: totals and limits compare exactly up to 2**53 nano-dollars (about $9 million).
_RESERVE_LUA = """
local total = tonumber(redis.call('GET', KEYS[1]) or '0')
local amount = tonumber(ARGV[1])
if total + amount > tonumber(ARGV[2]) then
    return {0, total}
end
total = redis.call('INCRBY', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return {1, total}
"""

# Settlement can create the key (if it expired mid-request), so it sets the expiry too.
_ADD_LUA = """
local total = redis.call('INCRBY', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
return total
"""


class RedisBudgets(Budgets):
    """Budgets shared by every gateway instance using the same Redis and ``prefix``.

    Give it a client whose pool waits for a free connection (``redis.asyncio.BlockingConnectionPool``):
    redis-py's default pool raises at once beyond ``max_connections``, so a burst of requests would be
    refused as if Redis were down. The wait counts against ``timeout_s`` like any other slowness.
    """

    def __init__(
        self,
        redis: redis.asyncio.Redis,
        prefix: str,
        timeout_s: float,
        *,
        fail_open: bool = False,
        now: Clock = _utc_now,
    ) -> None:
        super().__init__(prefix=prefix, fail_open=fail_open, now=now)
        self._redis = redis
        self._timeout_s = timeout_s
        self._reserve_script = redis.register_script(_RESERVE_LUA)
        self._add_script = redis.register_script(_ADD_LUA)

    async def _reserve(self, key: str, amount: int, limit: int) -> tuple[bool, int]:
        admitted, total = await self._call(self._reserve_script(keys=[key], args=[amount, limit, KEY_TTL_S]))
        return bool(admitted), int(total)

    async def _add(self, key: str, delta: int) -> None:
        await self._call(self._add_script(keys=[key], args=[delta, KEY_TTL_S]))

    async def _total(self, key: str) -> int:
        return int(await self._call(self._redis.get(key)) or 0)

    async def _call(self, pending: Awaitable[Any]) -> Any:
        # The budget sits on every request's path: a slow Redis must cost at most timeout_s.
        try:
            async with asyncio.timeout(self._timeout_s):
                return await pending
        except (redis.RedisError, OSError, TimeoutError) as exc:
            log.warning("budget.store_failed", error=repr(exc), timeout_s=self._timeout_s)
            # The detail (host, port) stays in the log: callers see only what they can act on.
            raise BudgetUnavailable(
                "tenant budgets cannot be checked right now (the budget store is not answering); "
                "retry shortly"
            ) from exc


class LocalBudgets(Budgets):
    """Budgets in this process's memory: the same rules, but each gateway instance counts only its own."""

    def __init__(self, *, now: Clock = _utc_now) -> None:
        super().__init__(now=now)
        self._totals: dict[str, int] = {}
        # The check and the add must be one step. Nothing inside awaits, and a thread lock (unlike an
        # asyncio one) also holds if callers run on several threads or event loops.
        self._lock = threading.Lock()

    async def _reserve(self, key: str, amount: int, limit: int) -> tuple[bool, int]:
        with self._lock:
            total = self._totals.get(key, 0)
            if total + amount > limit:
                return False, total
            self._totals[key] = total + amount
            return True, total + amount

    async def _add(self, key: str, delta: int) -> None:
        with self._lock:
            self._totals[key] = self._totals.get(key, 0) + delta

    async def _total(self, key: str) -> int:
        with self._lock:
            return self._totals.get(key, 0)


def _to_nano(usd: Decimal, rounding: str) -> int:
    if not isinstance(usd, Decimal | int) or isinstance(usd, bool):
        raise TypeError(f"money must be Decimal, not {type(usd).__name__}")
    if not Decimal(usd).is_finite() or usd < 0:
        raise ValueError(f"money must be a finite amount of at least zero, not {usd}")
    return int((Decimal(usd) * NANO_PER_USD).to_integral_value(rounding=rounding))


def _from_nano(nano: int) -> Decimal:
    return Decimal(nano).scaleb(-9)


def _usd(amount: Decimal) -> str:
    """Dollars with cents, and further places where the amount needs them ($0.0004 is not $0.00)."""
    cents = amount.quantize(Decimal("0.01"))
    return f"${cents if cents == amount else amount.normalize():f}"
