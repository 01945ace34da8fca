"""The ledger's Redis layout: the record stream and the daily rollups, written together.

Every key starts with the configured prefix::

    {prefix}ledger                                        STREAM, one entry per record (field "record": JSON)
    {prefix}ledger:seen:{tenant}:{record_id}              STRING, the idempotency mark (expires: dedup_ttl_s)
    {prefix}ledger:by-request:{tenant}:{request_id}       SET of the stream ids of the records that carry this
                                                          caller request id (expires: dedup_ttl_s)
    {prefix}rollup:{day}:{tenant}:{operation}:{provider}  HASH of integer counters (see ROLLUP_COUNTERS),
                                                          plus day, tenant, operation and provider as text
    {prefix}rollup:days:{day}                             SET of that day's rollup hash keys

``day`` is the UTC date of the record's own timestamp (YYYY-MM-DD), so a record replayed after midnight still
lands on the day it happened. Money is kept in integer nano-dollars and durations in integer milliseconds, so
HINCRBY sums them exactly. Rollup hashes never expire: they are the reports' source of truth, while the stream
is trimmed (approximately) to ``stream_maxlen`` entries.

One Lua script applies a batch: for each record it sets the seen mark and, only if the mark was new, appends
the record to the stream, indexes it by the caller's request id and adds its counters (summed per rollup
hash within the batch, then added once per hash and counter). A batch sent twice (a
reply lost to a timeout, a crash between sending a spooled batch and deleting it) therefore changes nothing
the second time. Record ids are minted by the server, never taken from the caller, and the marks are kept per
tenant, so no caller can make one of its records, or another tenant's, look already seen. Records written
before that (keyed by the caller's id) are also checked against the old, tenant-less mark
``{prefix}ledger:seen:{record_id}``, so replaying an old spool segment still changes nothing twice.

Tenant names cannot contain ``:`` (the policy file refuses them), so ``{tenant}:{…}`` is unambiguous.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import redis
import redis.asyncio
from redis.asyncio.connection import AbstractConnection

from gateway.core.errors import DependencyUnavailable

__all__ = [
    "ROLLUP_COUNTERS",
    "LedgerStore",
    "LedgerUnavailable",
    "RollupRow",
    "StoreEntry",
    "from_nano",
    "to_nano",
]

NANO_PER_USD = 10**9
# The record fields, in the order the reports read them. Units are per request record (what the request used);
# attempts, failures and the possibly billed counters come from attempt records (so they land on the provider
# that was called), every other counter from request records.
ROLLUP_COUNTERS = (
    "requests",
    "failed_requests",
    "attempts",
    "failures",
    "cache_hits",
    "cost_nano",
    "saved_nano",
    # Estimated cost of attempts that were cancelled or timed out: the vendor may bill them, or not.
    "possibly_billed_nano",
    "billing_unknown_attempts",
    "counterfactual_cloud_nano",
    "counterfactual_cloud_requests",
    "counterfactual_local_nano",
    "counterfactual_local_requests",
    "audio_ms",
    "characters",
    "input_tokens",
    "audio_input_tokens",
    "output_tokens",
    "compute_ms",
)
_DIMENSIONS = ("day", "tenant", "operation", "provider")
_PAGE = 1000


class LedgerUnavailable(DependencyUnavailable):
    """The ledger's Redis is not configured or not answering. The cause is chained, not in the message."""

    kind = "ledger_unavailable"


@dataclass(frozen=True)
class StoreEntry:
    """One record as the store writes it: its JSON, where it is rolled up, and what it adds."""

    record_id: str
    request_id: str
    # Keyed by the caller's request id (written before the server minted keys): check the old mark too.
    legacy_id: bool
    payload: str
    day: str
    tenant: str
    operation: str
    provider: str
    increments: Mapping[str, int]


@dataclass(frozen=True)
class RollupRow:
    """Totals for one (day, tenant, operation, provider)."""

    day: date
    tenant: str
    operation: str
    provider: str
    requests: int
    failed_requests: int
    attempts: int
    failures: int
    cache_hits: int
    cost_usd: Decimal
    saved_usd: Decimal
    # Summed over the requests that had one (counterfactual_*_requests of them).
    counterfactual_cloud_usd: Decimal
    counterfactual_cloud_requests: int
    counterfactual_local_usd: Decimal
    counterfactual_local_requests: int
    audio_ms: int
    characters: int
    input_tokens: int
    audio_input_tokens: int
    output_tokens: int
    compute_ms: int
    # Estimated cost of cancelled or timed-out attempts (not in cost_usd), and how many there were.
    possibly_billed_usd: Decimal = Decimal(0)
    billing_unknown_attempts: int = 0

    @property
    def audio_seconds(self) -> Decimal:
        return Decimal(self.audio_ms).scaleb(-3)

    @property
    def compute_seconds(self) -> Decimal:
        return Decimal(self.compute_ms).scaleb(-3)


def to_nano(usd: Decimal) -> int:
    """Exact: amounts finer than a nano-dollar are refused rather than rounded away."""
    nano = usd.scaleb(9)
    if nano != nano.to_integral_value():
        raise ValueError(f"{usd} USD is not a whole number of nano-dollars")
    return int(nano)


def from_nano(nano: int) -> Decimal:
    return Decimal(nano).scaleb(-9)


# KEYS: the stream, then (seen mark, old seen mark or the seen mark again, rollup hash, day index,
#       request-id index) per record.
# ARGV: seen TTL, stream MAXLEN, then per record: payload, day, tenant, operation, provider, and its
#       counters as one string of space-separated "field delta" pairs (one argument, not two per counter:
#       redis-py packs every argument in Python, on the event loop).
# A new record is appended and indexed at once; its counters are summed per rollup hash and applied once
# per hash at the end, so a batch of many records costs one HINCRBY per counter and hash, not per record.
# Sums stay below 2^53, where Lua's numbers are exact; a larger delta goes to HINCRBY as its own digits.
_WRITE_BATCH = """
local added = 0
local sums, order, dims = {}, {}, {}
local a = 3
for k = 2, #KEYS, 5 do
  if redis.call('EXISTS', KEYS[k + 1]) == 0 and redis.call('SET', KEYS[k], '1', 'NX', 'EX', ARGV[1]) then
    local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', 'record', ARGV[a])
    redis.call('SADD', KEYS[k + 4], id)
    redis.call('EXPIRE', KEYS[k + 4], ARGV[1])
    local rollup = KEYS[k + 2]
    local sum = sums[rollup]
    if sum == nil then
      sum = {}
      sums[rollup] = sum
      order[#order + 1] = rollup
      dims[rollup] = {KEYS[k + 3], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4]}
    end
    for field, delta in string.gmatch(ARGV[a + 5], '(%S+) (%S+)') do
      local total = (sum[field] or 0) + tonumber(delta)
      if #delta <= 15 and total < 9007199254740992 then
        sum[field] = total
      else
        -- Past what a Lua number holds exactly: Redis adds the digits as given.
        redis.call('HINCRBY', rollup, field, delta)
      end
    end
    added = added + 1
  end
  a = a + 6
end
for _, rollup in ipairs(order) do
  local d = dims[rollup]
  redis.call('HSET', rollup, 'day', d[2], 'tenant', d[3], 'operation', d[4], 'provider', d[5])
  for field, delta in pairs(sums[rollup]) do
    redis.call('HINCRBY', rollup, field, string.format('%d', delta))
  end
  redis.call('SADD', d[1], rollup)
end
return added
"""


class LedgerStore:
    """The ledger's Redis side. Every call is bounded by ``timeout_s`` and raises LedgerUnavailable."""

    def __init__(
        self,
        client: redis.asyncio.Redis,
        prefix: str,
        *,
        dedup_ttl_s: int,
        stream_maxlen: int,
        timeout_s: float,
    ) -> None:
        self._redis = client
        self._prefix = prefix
        self._dedup_ttl_s = dedup_ttl_s
        self._stream_maxlen = stream_maxlen
        self._timeout_s = timeout_s
        self._write_sha = client.register_script(_WRITE_BATCH).sha
        # Writes go one at a time over one connection the store keeps: borrowing one from the pool for each
        # write (its lock, its checks, its bookkeeping) cost the event loop as much as the write itself.
        self._writer: AbstractConnection | None = None
        self._writer_lock = asyncio.Lock()

    @property
    def stream_key(self) -> str:
        return f"{self._prefix}ledger"

    def seen_key(self, tenant: str, record_id: str) -> str:
        return f"{self._prefix}ledger:seen:{tenant}:{record_id}"

    def legacy_seen_key(self, record_id: str) -> str:
        return f"{self._prefix}ledger:seen:{record_id}"

    def request_index_key(self, tenant: str, request_id: str) -> str:
        return f"{self._prefix}ledger:by-request:{tenant}:{request_id}"

    def rollup_key(self, day: str, tenant: str, operation: str, provider: str) -> str:
        return f"{self._prefix}rollup:{day}:{tenant}:{operation}:{provider}"

    def days_key(self, day: str) -> str:
        return f"{self._prefix}rollup:days:{day}"

    async def write(self, entries: Sequence[StoreEntry]) -> int:
        """Apply a batch; returns how many records were new (the rest had been written before)."""
        if not entries:
            return 0
        keys: list[str] = [self.stream_key]
        args: list[str | int] = [self._dedup_ttl_s, self._stream_maxlen]
        for entry in entries:
            rollup = self.rollup_key(entry.day, entry.tenant, entry.operation, entry.provider)
            seen = self.seen_key(entry.tenant, entry.record_id)
            keys += [
                seen,
                self.legacy_seen_key(entry.record_id) if entry.legacy_id else seen,
                rollup,
                self.days_key(entry.day),
                self.request_index_key(entry.tenant, entry.request_id),
            ]
            counters = " ".join(f"{name} {delta}" for name, delta in entry.increments.items() if delta)
            args += [entry.payload, entry.day, entry.tenant, entry.operation, entry.provider, counters]
        return int(await self._call(self._write_batch([*keys, *args], len(keys))))

    async def _write_batch(self, keys_and_args: list[str | int], numkeys: int) -> Any:
        async with self._writer_lock:
            conn = self._writer
            if conn is None:
                conn = self._writer = await self._redis.connection_pool.get_connection()
            try:
                try:
                    await conn.send_command("EVALSHA", self._write_sha, numkeys, *keys_and_args)
                    return await conn.read_response()
                except redis.exceptions.NoScriptError:
                    # Redis restarted or its scripts were flushed: EVAL runs the script and caches it again.
                    await conn.send_command("EVAL", _WRITE_BATCH, numkeys, *keys_and_args)
                    return await conn.read_response()
            except BaseException:
                # A failed or interrupted write may leave a reply unread: this connection is done.
                self._writer = None
                await asyncio.shield(self._give_back(conn))
                raise

    async def _give_back(self, conn: AbstractConnection) -> None:
        await conn.disconnect()
        await self._redis.connection_pool.release(conn)

    async def close(self) -> None:
        """Return the write connection to the pool (the next write takes another)."""
        async with self._writer_lock:
            conn, self._writer = self._writer, None
            if conn is not None:
                await self._redis.connection_pool.release(conn)

    async def ping(self) -> bool:
        try:
            return bool(await self._call(self._redis.ping()))
        except LedgerUnavailable:
            return False

    async def payloads_since(self, since_ms: int) -> list[str]:
        """Every stream entry added at or after ``since_ms`` (Redis time), read in pages."""
        payloads: list[str] = []
        low = f"{max(since_ms, 0)}-0"
        while True:
            page = await self._call(self._redis.xrange(self.stream_key, min=low, max="+", count=_PAGE))
            for _, fields in page:
                # bytes unless the client was built with decode_responses=True
                payloads.append(_text(fields.get(b"record") or fields["record"]))
            if len(page) < _PAGE:
                return payloads
            low = f"({_text(page[-1][0])}"

    async def payloads_for_request(self, tenant: str, request_id: str) -> list[str]:
        """The stored records that carry this caller request id for this tenant, oldest first."""
        ids = await self._call(self._redis.smembers(self.request_index_key(tenant, request_id)))
        if not ids:
            return []
        pipe = self._redis.pipeline(transaction=False)
        ordered = sorted((_text(i) for i in ids), key=_stream_order)
        for stream_id in ordered:
            pipe.xrange(self.stream_key, min=stream_id, max=stream_id, count=1)
        payloads = []
        for page in await self._call(pipe.execute()):
            # Empty once the stream has been trimmed past the entry.
            for _, fields in page:
                payloads.append(_text(fields.get(b"record") or fields["record"]))
        return payloads

    async def rollups(self, since: date, until: date, tenant: str | None) -> list[RollupRow]:
        rows: list[RollupRow] = []
        # Counted, not stepped past ``until``: the day after date.max does not exist.
        for offset in range((until - since).days + 1):
            day = since + timedelta(days=offset)
            keys = sorted(_text(k) for k in await self._call(self._redis.smembers(self.days_key(str(day)))))
            if keys:
                pipe = self._redis.pipeline(transaction=False)
                for key in keys:
                    pipe.hgetall(key)
                for raw in await self._call(pipe.execute()):
                    fields = {_text(k): _text(v) for k, v in raw.items()}
                    if fields and (tenant is None or fields.get("tenant") == tenant):
                        rows.append(_row(fields))
        return sorted(rows, key=lambda r: (r.day, r.tenant, r.operation, r.provider))

    async def _call(self, pending: Awaitable[Any]) -> Any:
        try:
            async with asyncio.timeout(self._timeout_s):
                return await pending
        except (redis.RedisError, OSError, TimeoutError) as exc:
            # Callers may see the message; where the store lives (host, port) stays in the chained cause.
            raise LedgerUnavailable("the ledger store is not answering; retry shortly") from exc


def _row(fields: dict[str, str]) -> RollupRow:
    counts = {name: int(fields.get(name, 0)) for name in ROLLUP_COUNTERS}
    money = {
        name.removesuffix("_nano") + "_usd": from_nano(counts.pop(name))
        for name in (
            "cost_nano",
            "saved_nano",
            "possibly_billed_nano",
            "counterfactual_cloud_nano",
            "counterfactual_local_nano",
        )
    }
    day, tenant, operation, provider = (fields.get(name, "") for name in _DIMENSIONS)
    return RollupRow(
        day=date.fromisoformat(day),
        tenant=tenant,
        operation=operation,
        provider=provider,
        **money,
        **counts,
    )


def _stream_order(stream_id: str) -> tuple[int, int]:
    millis, _, seq = stream_id.partition("-")
    return int(millis), int(seq or 0)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
