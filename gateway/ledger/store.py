"""The cost ledger: one record per attempt and one per request, logged at once and stored durably.

Life of a record::

    router ── ledger.record(rec) ──▶ structlog event "ledger.record"              (at once, on the caller)
                                 └─▶ in-memory queue                              (never awaits Redis)
    Ledger.run(stop), the writer task:
        queue ── every flush_interval_s, batch_size at a time ──▶ Redis: stream + rollups, one Lua script
                 └── Redis unreachable or slower than timeout_s ──▶ spool file (append, one fsync per batch)
        spool ── every replay_interval_s, once Redis answers ──▶ Redis, then the segment file is deleted

Nothing is fire-and-forget. A record leaves the queue only once Redis has it or the spool file holds it,
fsync'd. Redis applies each record at most once: the script keeps a seen mark per tenant and ``record_id``,
so a batch sent again, whether after a reply lost to a timeout or a crash between replaying a spool segment
and deleting it, changes nothing.

Record ids are the server's, never the caller's. Each request gets a fresh ``request_key`` (time-ordered,
random, see :func:`new_request_key`); its records are ``{request_key}:req`` and ``{request_key}:att:{n}``.
The caller's ``x-request-id`` is kept as ``request_id``, a field to search on (:meth:`Ledger.find`), so a
caller that reuses an id, or another tenant that happens to pick the same one, cannot make a record collide
with another and be dropped as a duplicate.
After the first failure the writer stops trying Redis for new batches and spools them. Replay, which first
pings Redis, is what switches it back, so an outage costs at most one timeout rather than one per batch.

When ``stop`` is set, ``run`` flushes everything queued, to Redis if it answers, else to the spool, and
spends up to ``shutdown_replay_s`` replaying the spool. It returns only then, so every record that
:meth:`Ledger.record` accepted before ``stop`` is in Redis or on disk. A hard crash (SIGKILL, power loss)
loses what was still queued: about ``flush_interval_s`` of records (up to ``timeout_s`` while a hung Redis
is being found out), and those are in the logs.
Spooled records left behind are replayed by the next ledger that uses the same spool directory.

Without Redis (``redis=None``) every record is logged and spooled. Nothing is lost, but nothing is replayed
either until a ledger with Redis runs on that spool directory. Rollups and stored records can then not be
read (:class:`LedgerUnavailable`).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import os
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from itertools import islice
from pathlib import Path
from typing import Any, Literal, TypeVar

import orjson
import structlog
from redis.asyncio import Redis

from gateway.core.provider_types import Locality, Usage
from gateway.ledger.rollups import LedgerStore, LedgerUnavailable, RollupRow, StoreEntry, to_nano
from gateway.ledger.spool import Spool
from gateway.money.pricing import PriceBook
from gateway.settings import LedgerSettings

__all__ = [
    "Ledger",
    "LedgerRecord",
    "LedgerUnavailable",
    "PricesUsed",
    "RecordKind",
    "RollupRow",
    "attempt_record_id",
    "new_request_key",
    "request_record_id",
]

log = structlog.get_logger(__name__)

RecordKind = Literal["attempt", "request"]
OK = "ok"
# 2 added request_key, billing_unknown and possibly_billed_usd; version 1 records still load.
_SCHEMA = 2
_READABLE_SCHEMAS = (1, 2)
# Stream ids carry Redis's clock, records their gateway's: reads start this much early to cover skew.
_CLOCK_MARGIN_S = 300.0
T = TypeVar("T")


# -- records ---------------------------------------------------------------------------------------


def new_request_key() -> str:
    """A fresh server id for one request: a UUIDv7 (milliseconds since the epoch, then 74 random bits).

    Ids sort by time, so a stream read or a log search finds neighbours together; the random part makes
    two keys minted in the same millisecond, on any replica, differ.
    """
    millis = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (millis & (2**48 - 1)) << 80 | 0x7 << 76 | (rand >> 68 & 0xFFF) << 64 | 0b10 << 62
    value |= rand & (2**62 - 1)
    return str(uuid.UUID(int=value))


def request_record_id(request_key: str) -> str:
    return f"{request_key}:req"


def attempt_record_id(request_key: str, n: int) -> str:
    """The id of the ``n``-th attempt (1-based, in the order the request made them)."""
    if n < 1:
        raise ValueError(f"attempts are numbered from 1, not {n}")
    return f"{request_key}:att:{n}"


@dataclass(frozen=True)
class PricesUsed:
    """USD per single unit, as charged. Local engines are charged for compute time, per hour."""

    per_audio_second: Decimal = Decimal(0)
    per_character: Decimal = Decimal(0)
    per_input_token: Decimal = Decimal(0)
    per_audio_input_token: Decimal = Decimal(0)
    per_output_token: Decimal = Decimal(0)
    per_compute_hour: Decimal = Decimal(0)

    def __post_init__(self) -> None:
        for f in fields(self):
            _require_money(f.name, getattr(self, f.name))

    @classmethod
    def from_book(cls, book: PriceBook, provider: str, model: str, locality: Locality) -> PricesUsed:
        if locality is Locality.LOCAL:
            return cls(per_compute_hour=book.local_usd_per_hour)
        prices = book.unit_prices(provider, model, locality)
        return cls(
            per_audio_second=prices.per_audio_second,
            per_character=prices.per_character,
            per_input_token=prices.per_input_token,
            per_audio_input_token=prices.per_audio_input_token,
            per_output_token=prices.per_output_token,
        )


_TEXT_FIELDS = (
    "record_id",
    "request_key",
    "request_id",
    "tenant",
    "operation",
    "policy",
    "provider",
    "model",
    "locality",
    "outcome",
    "error_kind",
    "price_book_version",
)
_MONEY_FIELDS = ("cost_usd", "saved_usd", "possibly_billed_usd")
_COUNTERFACTUALS = ("counterfactual_cloud_usd", "counterfactual_local_usd")


@dataclass(frozen=True)
class LedgerRecord:
    """One attempt or one request. Ids, units and money only: never text, audio or keys.

    ``outcome`` is ``"ok"`` or an error kind (``error_kind`` repeats it for failures). Money is exact
    Decimal in whole nano-dollars (the price book quantizes to 1e-9); unit prices may be finer. A request
    record's ``cost_usd`` is the sum of its attempts' and its ``units`` what the request used (the rollups
    count units and money from request records only; attempts, failures and possibly billed money from
    attempt records).
    A cache hit is a request record with ``cache_hit=True``, no attempts, ``cost_usd=0`` and ``saved_usd``
    the original call's cost. The counterfactuals, request records only, are what the request would have
    cost on the cheapest eligible cloud provider and on local engines (None: there was none).
    Enum values (Operation, Locality) are stored as their plain string values.

    ``request_key`` is the server's id for the request (every record of a request shares it, and the
    ``record_id`` derives from it); ``request_id`` is the id the caller saw in ``x-request-id``, which it may
    have chosen and may reuse. Records written before request keys existed used the caller's id as the key;
    an empty ``request_key`` means exactly that.

    An attempt that was cancelled or timed out may still be billed by its vendor: it has
    ``billing_unknown=True``, ``cost_usd=0`` and the estimated cost in ``possibly_billed_usd``. A live
    stream's attempt that failed has ``cost_usd`` for the audio its vendor's results reached and, when
    audio was sent past that, ``billing_unknown=True`` and that audio's price in ``possibly_billed_usd``.
    A request record's ``possibly_billed_usd`` sums its attempts'. It is never added to ``cost_usd``.
    """

    kind: RecordKind
    record_id: str
    request_id: str
    tenant: str
    operation: str
    policy: str
    provider: str
    model: str
    locality: str
    outcome: str
    error_kind: str
    units: Usage
    unit_prices: PricesUsed
    price_book_version: str
    cost_usd: Decimal
    saved_usd: Decimal
    cache_hit: bool
    latency_ms: float
    timestamp: float  # epoch seconds, UTC
    counterfactual_cloud_usd: Decimal | None = None
    counterfactual_local_usd: Decimal | None = None
    request_key: str = ""
    billing_unknown: bool = False
    possibly_billed_usd: Decimal = Decimal(0)

    def __post_init__(self) -> None:
        if self.request_key == "":
            object.__setattr__(self, "request_key", self.request_id)
        for name in _TEXT_FIELDS:
            value = getattr(self, name)
            if isinstance(value, enum.Enum):
                object.__setattr__(self, name, str(value.value))
            elif not isinstance(value, str):
                raise TypeError(f"{name} must be a string, not {type(value).__name__}")
        if self.kind not in ("attempt", "request"):
            raise ValueError(f"kind must be 'attempt' or 'request', not {self.kind!r}")
        if not self.request_id:
            raise ValueError("request_id is empty")
        if self.record_id != self._expected_id():
            raise ValueError(f"record_id {self.record_id!r} does not match this {self.kind} record")
        for name in _MONEY_FIELDS:
            _require_money(name, getattr(self, name), whole_nanos=True)
        for name in _COUNTERFACTUALS:
            value = getattr(self, name)
            if value is not None:
                _require_money(name, value, whole_nanos=True)
                if self.kind != "request":
                    raise ValueError(f"{name} belongs on request records only")
        if not isinstance(self.units, Usage) or not isinstance(self.unit_prices, PricesUsed):
            raise TypeError("units must be a Usage and unit_prices a PricesUsed")
        if not isinstance(self.cache_hit, bool) or not isinstance(self.billing_unknown, bool):
            raise TypeError("cache_hit and billing_unknown must be bools")
        if self.possibly_billed_usd and self.kind == "attempt" and not self.billing_unknown:
            raise ValueError("an attempt with a possibly billed amount must have billing_unknown set")

    def _expected_id(self) -> str:
        if self.kind == "request":
            return request_record_id(self.request_key)
        prefix = f"{self.request_key}:att:"
        number = self.record_id.removeprefix(prefix)
        if self.record_id.startswith(prefix) and number.isdigit() and number == str(int(number)):
            return attempt_record_id(self.request_key, int(number))
        return f"{prefix}<n>"

    @property
    def legacy_id(self) -> bool:
        """Keyed by the caller's request id, as records were before the server chose keys."""
        return self.request_key == self.request_id

    @property
    def day(self) -> str:
        """The UTC day the record belongs to (YYYY-MM-DD)."""
        return datetime.fromtimestamp(self.timestamp, UTC).date().isoformat()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: money as exact decimal strings, never floats."""
        out: dict[str, Any] = {"v": _SCHEMA, "kind": self.kind}
        for name in _TEXT_FIELDS:
            out[name] = getattr(self, name)
        out["units"] = {f.name: getattr(self.units, f.name) for f in fields(Usage)}
        out["unit_prices"] = {f.name: str(getattr(self.unit_prices, f.name)) for f in fields(PricesUsed)}
        for name in _MONEY_FIELDS:
            out[name] = str(getattr(self, name))
        for name in _COUNTERFACTUALS:
            value = getattr(self, name)
            out[name] = None if value is None else str(value)
        out["cache_hit"] = self.cache_hit
        out["billing_unknown"] = self.billing_unknown
        out["latency_ms"] = self.latency_ms
        out["timestamp"] = self.timestamp
        return out

    def to_json(self) -> str:
        return _dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str) -> LedgerRecord:
        """The exact inverse of :meth:`to_json`; ValueError for anything that is not a ledger record."""
        try:
            raw = json.loads(text)
            if not isinstance(raw, dict):
                raise TypeError(f"expected a JSON object, not {type(raw).__name__}")
            version = raw.get("v")
            if version not in _READABLE_SCHEMAS:
                raise ValueError(f"unknown ledger record version {version!r}")
            if version == 1:
                # Keyed by the caller's id, and nothing was ever marked possibly billed.
                raw = {**raw, "request_key": raw["request_id"], "billing_unknown": False}
                raw["possibly_billed_usd"] = "0"
            units = raw["units"]
            return cls(
                kind=raw["kind"],
                **{name: raw[name] for name in _TEXT_FIELDS},
                units=Usage(
                    audio_seconds=float(units["audio_seconds"]),
                    characters=int(units["characters"]),
                    input_tokens=int(units["input_tokens"]),
                    audio_input_tokens=int(units["audio_input_tokens"]),
                    output_tokens=int(units["output_tokens"]),
                    compute_seconds=float(units["compute_seconds"]),
                ),
                unit_prices=PricesUsed(**{k: _parse_money(v) for k, v in raw["unit_prices"].items()}),
                cost_usd=_parse_money(raw["cost_usd"]),
                saved_usd=_parse_money(raw["saved_usd"]),
                possibly_billed_usd=_parse_money(raw["possibly_billed_usd"]),
                billing_unknown=raw["billing_unknown"],
                counterfactual_cloud_usd=_parse_optional_money(raw["counterfactual_cloud_usd"]),
                counterfactual_local_usd=_parse_optional_money(raw["counterfactual_local_usd"]),
                cache_hit=raw["cache_hit"],
                latency_ms=float(raw["latency_ms"]),
                timestamp=float(raw["timestamp"]),
            )
        except (KeyError, TypeError, AttributeError, InvalidOperation, ValueError) as exc:
            raise ValueError(f"not a ledger record: {exc!r}") from exc


def _require_money(name: str, value: object, *, whole_nanos: bool = False) -> None:
    if not isinstance(value, Decimal):
        raise TypeError(f"{name} must be a Decimal, not {type(value).__name__}")
    if not value.is_finite() or value < 0:
        raise ValueError(f"{name} must be a finite amount of at least zero, not {value}")
    if whole_nanos:
        # Checked here, not when storing: a record that cannot be rolled up must never enter the queue.
        to_nano(value)


def _parse_money(value: object) -> Decimal:
    # Strings only: a JSON number would already have passed through a float.
    if not isinstance(value, str):
        raise TypeError(f"money must be a decimal string, not {type(value).__name__}")
    return Decimal(value)


def _parse_optional_money(value: object) -> Decimal | None:
    return None if value is None else _parse_money(value)


# -- what a record adds to the rollups ---------------------------------------------------------------------


def _dumps(record: dict[str, Any]) -> str:
    return orjson.dumps(record, option=orjson.OPT_SORT_KEYS).decode()


def _store_entry(rec: LedgerRecord, payload: str | None = None) -> StoreEntry:
    """What storing ``rec`` writes; ``payload`` is its JSON when the caller has it already."""
    return StoreEntry(
        record_id=rec.record_id,
        request_id=rec.request_id,
        legacy_id=rec.legacy_id,
        payload=rec.to_json() if payload is None else payload,
        day=rec.day,
        tenant=rec.tenant,
        operation=rec.operation,
        provider=rec.provider,
        increments=_increments(rec),
    )


def _increments(rec: LedgerRecord) -> dict[str, int]:
    if rec.kind == "attempt":
        return {
            "attempts": 1,
            "failures": int(rec.outcome != OK),
            "billing_unknown_attempts": int(rec.billing_unknown),
            # From attempts, so it is rolled up under the vendor that may bill it, not the one that answered.
            "possibly_billed_nano": to_nano(rec.possibly_billed_usd),
        }
    cloud, local = rec.counterfactual_cloud_usd, rec.counterfactual_local_usd
    return {
        "requests": 1,
        "failed_requests": int(rec.outcome != OK),
        "cache_hits": int(rec.cache_hit),
        "cost_nano": to_nano(rec.cost_usd),
        "saved_nano": to_nano(rec.saved_usd),
        "counterfactual_cloud_nano": to_nano(cloud or Decimal(0)),
        "counterfactual_cloud_requests": int(cloud is not None),
        "counterfactual_local_nano": to_nano(local or Decimal(0)),
        "counterfactual_local_requests": int(local is not None),
        "audio_ms": _milliseconds(rec.units.audio_seconds),
        "characters": rec.units.characters,
        "input_tokens": rec.units.input_tokens,
        "audio_input_tokens": rec.units.audio_input_tokens,
        "output_tokens": rec.units.output_tokens,
        "compute_ms": _milliseconds(rec.units.compute_seconds),
    }


def _milliseconds(seconds: float) -> int:
    return int((Decimal(repr(seconds)) * 1000).to_integral_value(rounding=ROUND_HALF_EVEN))


# -- the ledger ------------------------------------------------------------------------------------------


class Ledger:
    """Accepts records on the request path and stores them from a background writer (:meth:`run`)."""

    def __init__(self, redis: Redis | None, prefix: str, spool_dir: Path, settings: LedgerSettings) -> None:
        self._settings = settings
        # Queued as what the store writes: built once, on the request path, from the fields it logs.
        self._queue: deque[StoreEntry] = deque()
        self._spool = Spool(
            spool_dir, fsync=settings.fsync_batch, segment_records=settings.spool_segment_records
        )
        self._store = (
            LedgerStore(
                redis,
                prefix,
                dedup_ttl_s=settings.dedup_ttl_s,
                stream_maxlen=settings.stream_maxlen,
                timeout_s=settings.timeout_s,
            )
            if redis is not None
            else None
        )
        self._redis_ok = self._store is not None
        # Sequence numbers: records ever accepted, and ever stored (in Redis or the fsync'd spool).
        self._accepted = 0
        self._stored = 0
        self._wake = asyncio.Event()
        # Requests waiting for their records, as (records accepted when it asked, future), oldest first.
        # _accepted only grows, so the targets are in order and a flush resolves a prefix: no lock, and no
        # waking every waiter to re-check a condition after each batch.
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()
        self._running = False
        # One write at a time, whether the writer task or a waiting request makes it: records leave the
        # queue only once stored, so two writers would store the same records twice.
        self._flushing = asyncio.Lock()

    # -- the request path ----------------------------------------------------------------------------------

    def record(self, rec: LedgerRecord) -> None:
        """Log the record and queue it for storage. Never awaits, never touches Redis or the disk.

        Call it from the event loop's thread, the one :meth:`run` runs on.
        """
        event = rec.to_dict()
        entry = _store_entry(rec, _dumps(event))
        del event["v"]
        # structlog's own "timestamp" is when the line was logged.
        event["record_ts"] = event.pop("timestamp")
        log.info("ledger.record", **event)
        self._queue.append(entry)
        self._accepted += 1

    async def stored(self, timeout_s: float) -> bool:
        """Wait until every record accepted so far is durable (in Redis or the fsync'd spool).

        The router awaits this before answering, so a reply the caller saw always has its
        ledger records on disk somewhere, even if the process is killed right after. False when
        the records were not stored within ``timeout_s`` (they stay queued for the writer).
        """
        target = self._accepted
        if self._stored >= target:
            return True
        if not self._running:
            return False  # no writer (the ledger is used without run()): nothing to wait for
        try:
            async with asyncio.timeout(timeout_s):
                if not self._flushing.locked():
                    # No write in flight: the caller writes its own records. Handing them to the writer
                    # task would cost the reply two event-loop turns, each behind every callback ready
                    # then, which at low load is most of the wait.
                    await self._flush_until(target)
                if self._stored < target:
                    await self._wait_for(target)
        except TimeoutError:
            self._wake.set()  # what a cut-short write left queued is the writer's
            return False
        return True

    async def _wait_for(self, target: int) -> None:
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((target, waiter))
        self._wake.set()
        await waiter

    @property
    def running(self) -> bool:
        return self._running

    def queue_depth(self) -> int:
        """Records accepted and not yet in Redis or the spool."""
        return len(self._queue)

    def spool_depth(self) -> int:
        """Records in spool files waiting for replay (this instance's and any it adopted)."""
        return self._spool.depth

    # -- the writer ------------------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Store queued records and replay the spool until ``stop`` is set; then flush and return."""
        self._running = True
        try:
            # Two loops, so a replay round waiting on a hung Redis never holds up spooling new records.
            await asyncio.gather(self._flush_loop(stop), self._replay_loop(stop))
            await self._flush_until(None)
            deadline = time.monotonic() + self._settings.shutdown_replay_s
            while self._spool.depth and time.monotonic() < deadline:
                if not await self._guarded(self._replay_segment(), "replay"):
                    break
        finally:
            self._running = False
            # Reached with records still queued only if the writer was cancelled or the flush failed.
            self._spool_queue_now()
            self._spool.close()
            if self._store is not None:
                await asyncio.shield(self._store.close())

    async def _flush_loop(self, stop: asyncio.Event) -> None:
        # Each round waits on one event, set by a request waiting for its records, by shutdown, or by a
        # ticker every flush interval. No timer is armed and cancelled per round: at low load a round
        # runs once per reply.
        wakers = [asyncio.create_task(self._wake_on(stop)), asyncio.create_task(self._tick(stop))]
        try:
            while not stop.is_set():
                self._wake.clear()
                await self._flush_until(None)
                await self._wake.wait()
        finally:
            for waker in wakers:
                waker.cancel()

    async def _wake_on(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self._wake.set()

    async def _tick(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await asyncio.sleep(self._settings.flush_interval_s)
            self._wake.set()

    def _release_waiters(self) -> None:
        while self._waiters and self._waiters[0][0] <= self._stored:
            _, waiter = self._waiters.popleft()
            if not waiter.done():  # a waiter that timed out was cancelled
                waiter.set_result(None)

    async def _replay_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            progressed = await self._guarded(self._replay_segment(), "replay")
            if progressed and self._spool.depth:
                continue  # work through a backlog segment after segment
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._settings.replay_interval_s)

    async def _flush_until(self, target: int | None) -> None:
        """Store queued records, all of them or (``target``) until that many were ever stored."""
        async with self._flushing:
            await self._guarded(self._flush(target), "flush")

    async def _flush(self, target: int | None) -> None:
        while self._queue and (target is None or self._stored < target):
            if self._store is not None and self._redis_ok:
                batch = list(islice(self._queue, self._settings.batch_size))
                try:
                    await self._store.write(batch)
                except LedgerUnavailable as exc:
                    self._redis_ok = False
                    log.warning("ledger.store_failed", error=repr(exc.__cause__), queued=len(self._queue))
                    continue
            else:
                batch = list(self._queue)
                try:
                    await asyncio.to_thread(self._spool.append, [e.payload for e in batch])
                except OSError as exc:
                    # Kept queued, so the next flush tries again.
                    log.error("ledger.spool_failed", error=repr(exc), queued=len(self._queue))
                    return
            for _ in batch:
                self._queue.popleft()
            self._stored += len(batch)
            self._release_waiters()

    async def _replay_segment(self) -> bool:
        """Replay the oldest spool segment; True if one was stored and deleted."""
        if self._store is None:
            return False
        adopted = await asyncio.to_thread(self._spool.adopt_orphans)
        if adopted:
            log.info("ledger.spool_adopted", records=adopted)
        if not self._redis_ok:
            if not await self._store.ping():
                return False
            self._redis_ok = True
            log.info("ledger.store_back", spooled=self._spool.depth)
        if not self._spool.depth:
            return False
        await asyncio.to_thread(self._spool.seal)
        segment = self._spool.next_segment()
        if segment is None:
            return False
        contents = await asyncio.to_thread(self._spool.read, segment)
        if contents.torn_tail:
            log.warning("ledger.spool_torn_tail", segment=segment.path.name)
        records, rejected = _parse_lines(contents.lines)
        if rejected:
            await asyncio.to_thread(self._spool.reject, rejected)
            log.error("ledger.spool_rejected", segment=segment.path.name, lines=len(rejected))
        for batch in _chunks(records, self._settings.batch_size):
            try:
                await self._store.write([_store_entry(r) for r in batch])
            except LedgerUnavailable as exc:
                self._redis_ok = False
                log.warning("ledger.replay_failed", error=repr(exc.__cause__), spooled=self._spool.depth)
                return False
        await asyncio.to_thread(self._spool.remove, segment)
        log.info("ledger.replayed", segment=segment.path.name, records=len(records))
        return True

    def _spool_queue_now(self) -> None:
        if not self._queue:
            return
        batch = list(self._queue)
        try:
            self._spool.append([e.payload for e in batch])
        except OSError as exc:
            log.critical("ledger.records_unstored", error=repr(exc), records=len(batch))
            return
        for _ in batch:
            self._queue.popleft()
        self._stored += len(batch)

    @staticmethod
    async def _guarded(step: Awaitable[bool | None], name: str) -> bool:
        try:
            return bool(await step)
        except Exception:
            # A bug must not end the writer: the records stay queued or spooled for the next round.
            log.exception("ledger.writer_error", step=name)
            return False

    # -- reading ---------------------------------------------------------------------------------------------

    async def rollups(self, since: date, until: date, tenant: str | None = None) -> list[RollupRow]:
        """Rollup rows for the UTC days ``since`` to ``until`` inclusive, optionally for one tenant."""
        return await self._require_store().rollups(since, until, tenant)

    async def records(
        self, since_ts: float, until_ts: float, kind: RecordKind | None = None
    ) -> list[LedgerRecord]:
        """Stored records with ``since_ts <= timestamp < until_ts``, as far back as the stream is kept.

        Scans the stream from ``since_ts`` to its end (replayed records are added late), so it is for audits
        and tests; reports read :meth:`rollups`.
        """
        store = self._require_store()
        payloads = await store.payloads_since(int((since_ts - _CLOCK_MARGIN_S) * 1000))
        found = []
        for payload in payloads:
            rec = LedgerRecord.from_json(payload)
            if since_ts <= rec.timestamp < until_ts and (kind is None or rec.kind == kind):
                found.append(rec)
        return found

    async def find(self, tenant: str, request_id: str) -> list[LedgerRecord]:
        """The tenant's stored records that carry the caller's ``x-request-id``, oldest first.

        A caller that sent the same id twice (a retry, say) gets the records of both requests: group them
        by ``request_key``. Records are found for ``dedup_ttl_s`` after they were stored, and only while the
        stream still holds them; records still in the queue or the spool are not found yet.
        """
        payloads = await self._require_store().payloads_for_request(tenant, request_id)
        return [LedgerRecord.from_json(p) for p in payloads]

    async def request_records(self, since_ts: float, until_ts: float) -> list[LedgerRecord]:
        return await self.records(since_ts, until_ts, kind="request")

    def _require_store(self) -> LedgerStore:
        if self._store is None:
            raise LedgerUnavailable("the ledger runs without Redis: its records are only logged and spooled")
        return self._store


def _parse_lines(lines: list[str]) -> tuple[list[LedgerRecord], list[str]]:
    records, rejected = [], []
    for line in lines:
        try:
            records.append(LedgerRecord.from_json(line))
        except ValueError:
            rejected.append(line)
    return records, rejected


def _chunks(items: list[T], size: int) -> Iterator[list[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
