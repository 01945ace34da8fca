"""The result cache: identical requests are answered from Redis instead of being paid for twice.

A request's life against the cache (the router decides whether to call it at all: a bypass, a tenant whose
policy switches caching off, or a ``local_only`` result its policy does not let us keep, never reach it)::

    key = cache.key(tenant, operation, digest_bytes(audio), options)
    entry, hit = await cache.single_flight(key, compute, mode, accept)   # compute() -> CachedEntry

**Keys** are a SHA-256 over a canonical JSON of the operation, a BLAKE3 digest of the input and every option
that changes the output, namespaced by tenant. A filename is never part of one: the same bytes under two names
are one entry, and two recordings under one name are two. Who produced a result is not part of the key but of
the entry (its producers and their least private locality): the caller's ``accept`` decides whether this
request's policy may be served that producer's result. A refused entry is a miss, and the fresh result
overwrites it.

**Single-flight.** Identical requests in flight reach ``compute`` once and all get its result. Within a
process, later callers join the first caller's flight. Across gateway instances, the instance that takes
the lock ``<key>:lock`` (``SET NX PX``) computes, renewing the lock while it works; the others poll until
the value appears or the lock goes, then take the lock themselves. A crashed holder stops renewing, so its
lock lapses after ``lock_ttl_s`` and a waiter takes over. ``hit`` is False for exactly the call whose own
``compute`` ran: every other caller was served without paying, so the router reports it as a cache hit
(``cost_usd=0``, ``saved_usd=entry.cost_usd``) and the ledger counts the provider call once.

**Hot entries in memory.** Every entry this process reads from Redis or writes there is also kept in its
memory (``cache/local.py``: bounded by bytes and by ``local_ttl_s``, never past the Redis TTL), so a repeated
hit costs no Redis round trip. The copy only mirrors Redis: what Redis did not take is not kept, and a
process with no Redis keeps nothing. Another replica's refresh reaches this one once its copy lapses.

**Degrades, never fails.** Every Redis call is bounded by ``timeout_s``; a failure, or a timeout while
Redis answers no call, makes the cache skip Redis for ``down_backoff_s``, so an outage costs one timeout per
window rather than one per request. A call that timed out while others were answered only waited on a busy
event loop: it alone degrades. Without Redis a request is simply computed (in-process single-flight still
holds). Only ``compute``'s own errors reach callers.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import hashlib
import json
import math
import secrets
import struct
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Literal, TypeVar

import orjson
import redis
import structlog
from blake3 import blake3
from redis.asyncio import Redis

from gateway.cache.local import LocalEntries
from gateway.core.domain import CacheMode
from gateway.core.errors import WaitTimedOut
from gateway.settings import CacheSettings

log = structlog.get_logger(__name__)

__all__ = [
    "CachedEntry",
    "ResultCache",
    "cache_key",
    "digest_bytes",
    "digest_text",
    "lock_key",
]

# Bumped when the key document or the stored encoding changes, so old entries are simply never found.
# 2: the producing model left the key; each entry names its producers and the caller checks them.
KEY_VERSION = 2
_MAGIC = b"GWC1"
_HEADER_LEN = struct.Struct(">I")

T = TypeVar("T")
FlightMode = CacheMode | Literal["default", "refresh"]


@dataclass(frozen=True)
class CachedEntry:
    """A stored result: the router's serialized payload and what the original call cost."""

    payload: bytes
    cost_usd: Decimal
    provider: str
    model: str
    created_at: float  # time.time() when computed
    # The audio duration the original call was billed for, so a hit reports the same units.
    audio_s: float = 0.0
    # The least private step's locality (Understand may transcribe in one place and answer in another),
    # and every provider whose output went into the result: a hit must satisfy the asking policy for all.
    locality: str = ""
    producers: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.cost_usd, Decimal):
            raise TypeError(f"cost_usd must be Decimal, not {type(self.cost_usd).__name__}")
        if not isinstance(self.payload, bytes):
            raise TypeError(f"payload must be bytes, not {type(self.payload).__name__}")


# -- keys ----------------------------------------------------------------------------------------------


def digest_bytes(data: bytes) -> str:
    """The input digest of audio: a hash of the bytes themselves, never of where they came from.

    BLAKE3 (256 bits, as collision-resistant as SHA-256): a cache hit hashes the whole upload on the event
    loop, and BLAKE3 does it about four times faster (23 against 91 µs for a 186 KB WAV with SHA
    extensions, more without them)."""
    return blake3(data).hexdigest()


def digest_text(text: str) -> str:
    return digest_bytes(text.encode("utf-8"))


def cache_key(
    tenant: str,
    operation: str,
    input_digest: str,
    options: Mapping[str, object],
    *,
    prefix: str = "",
) -> str:
    """``{prefix}cache:{tenant}:{sha256}`` over everything that determines the result.

    ``options`` holds every option that changes the output; values may be None, bool, int, float, str,
    Decimal, enums, and lists or string-keyed mappings of these. Pass each option with one type (a speed
    of ``1`` and of ``1.0`` are different keys). Anything else is refused rather than stringified, so no
    object's repr can make a key differ between two identical requests.
    """
    for name, value in (("tenant", tenant), ("input_digest", input_digest)):
        if not value:
            raise ValueError(f"{name} must not be empty")
    document = {
        "v": KEY_VERSION,
        "tenant": tenant,
        "operation": _canonical(operation, "operation"),
        "input": input_digest,
        "options": _canonical(dict(options), "options"),
    }
    canonical = json.dumps(
        document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    return f"{prefix}cache:{tenant}:{hashlib.sha256(canonical.encode('utf-8')).hexdigest()}"


def lock_key(key: str) -> str:
    return f"{key}:lock"


def _canonical(value: object, path: str) -> object:
    if isinstance(value, enum.Enum):
        return _canonical(value.value, path)
    if value is None or isinstance(value, bool | str | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{path} is {value}: only finite numbers have a stable key")
        return value
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"{path} is {value}: only finite numbers have a stable key")
        return f"{value.normalize():f}"
    if isinstance(value, Mapping):
        out: dict[str, object] = {}
        for name, item in value.items():
            if not isinstance(name, str):
                raise TypeError(f"{path} has a key of type {type(name).__name__}; keys must be str")
            out[name] = _canonical(item, f"{path}.{name}")
        return out
    if isinstance(value, list | tuple):
        return [_canonical(item, f"{path}[{i}]") for i, item in enumerate(value)]
    raise TypeError(f"{path} is a {type(value).__name__}, which has no stable form for a cache key")


# -- stored values -------------------------------------------------------------------------------------
# MAGIC, a 4-byte header length, a small JSON header, then the payload as is: no base64 inflation of
# audio, and the header stays readable with redis-cli.


def _encode(entry: CachedEntry, writer: str) -> bytes:
    header = orjson.dumps(
        {
            "cost_usd": str(entry.cost_usd),
            "provider": entry.provider,
            "model": entry.model,
            "created_at": entry.created_at,
            "audio_s": entry.audio_s,
            "locality": entry.locality,
            "producers": list(entry.producers),
            # Which lock holder wrote it: lets a refresh waiter tell a fresh value from the one it replaces.
            "writer": writer,
        },
    )
    return b"".join((_MAGIC, _HEADER_LEN.pack(len(header)), header, entry.payload))


def _decode(raw: bytes) -> tuple[CachedEntry, str]:
    if not raw.startswith(_MAGIC) or len(raw) < len(_MAGIC) + _HEADER_LEN.size:
        raise ValueError("not a cache entry")
    start = len(_MAGIC) + _HEADER_LEN.size
    (header_len,) = _HEADER_LEN.unpack_from(raw, len(_MAGIC))
    if start + header_len > len(raw):
        raise ValueError("truncated cache entry")
    header = orjson.loads(raw[start : start + header_len])
    entry = CachedEntry(
        payload=raw[start + header_len :],
        cost_usd=Decimal(header["cost_usd"]),
        provider=str(header["provider"]),
        model=str(header["model"]),
        created_at=float(header["created_at"]),
        audio_s=float(header.get("audio_s", 0.0)),
        locality=str(header.get("locality", "")),
        producers=tuple(str(p) for p in header.get("producers", ())),
    )
    return entry, str(header.get("writer", ""))


# -- the cache -----------------------------------------------------------------------------------------

# Compare-and-delete / compare-and-extend: a holder whose lock lapsed must not touch its successor's.
_RELEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""

_RENEW_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""


_WAIT_TIMED_OUT = "the deadline passed while waiting for an identical request already being computed"


def _anything(entry: CachedEntry) -> bool:
    return True


async def _waited(flight: Awaitable[T], deadline: float | None) -> T:
    if deadline is None:
        return await flight
    try:
        # The loop's clock is time.monotonic(), the clock deadlines are kept in.
        async with asyncio.timeout_at(deadline):
            return await flight
    except TimeoutError as exc:
        raise WaitTimedOut(_WAIT_TIMED_OUT) from exc


class _Unavailable(Exception):
    """Redis is absent, down or too slow: the caller degrades."""


class _LeaderGone(Exception):
    """The caller running an in-process flight was cancelled: its followers start a new flight."""


class ResultCache:
    """Results shared by every gateway instance using the same Redis (and by concurrent callers in-process).

    ``redis`` must return bytes (``decode_responses`` off); None runs the in-process single-flight only.
    """

    def __init__(self, redis: Redis | None, prefix: str, settings: CacheSettings) -> None:
        if redis is not None and redis.connection_pool.connection_kwargs.get("decode_responses"):
            raise ValueError(
                "the result cache stores binary payloads: give it a client without decode_responses"
            )
        self._redis = redis
        self._prefix = prefix
        self._settings = settings
        # In front of Redis only: with no shared store, results are not kept (in-process single-flight only).
        self._local = LocalEntries(settings, enabled=redis is not None)
        self._flights: dict[tuple[CacheMode, str], asyncio.Future[CachedEntry]] = {}
        self._down_until = 0.0
        # When a Redis call last completed: tells a Redis that stopped answering from a busy loop.
        self._answered_at = 0.0
        self._release = redis.register_script(_RELEASE_LUA) if redis is not None else None
        self._renew = redis.register_script(_RENEW_LUA) if redis is not None else None

    @property
    def settings(self) -> CacheSettings:
        return self._settings

    def key(self, tenant: str, operation: str, input_digest: str, options: Mapping[str, object]) -> str:
        return cache_key(tenant, operation, input_digest, options, prefix=self._prefix)

    async def get(self, key: str) -> CachedEntry | None:
        """The stored entry, or None on a miss and whenever Redis cannot answer in time."""
        try:
            found = await self._read_near(key)
        except _Unavailable:
            return None
        return found[0] if found else None

    async def put(self, key: str, entry: CachedEntry) -> None:
        """Store ``entry`` for ``ttl_s``; a too-large entry or a Redis failure is logged, never raised."""
        await self._store(key, entry, writer="")

    async def single_flight(
        self,
        key: str,
        compute: Callable[[], Awaitable[CachedEntry]],
        mode: FlightMode = CacheMode.DEFAULT,
        accept: Callable[[CachedEntry], bool] = _anything,
        deadline: float | None = None,
        read_first: bool = True,
    ) -> tuple[CachedEntry, bool]:
        """(entry, hit): the cached entry, or ``compute``'s, computed once for all identical callers.

        ``mode="refresh"`` skips the read and overwrites the entry (identical refreshes still share one
        computation). ``read_first=False`` is for a caller that has just read the entry itself: it goes
        straight to the lock (which still re-reads, for an entry written meanwhile). An entry ``accept``
        refuses is a miss: this caller computes, and its result replaces the entry. ``compute``'s error
        reaches every caller of this process that shared its flight.

        ``deadline`` (``time.monotonic()``) bounds only the waiting for another caller's computation, which
        then raises :class:`~gateway.core.errors.WaitTimedOut`; this caller's own ``compute`` is never
        cancelled by it, so an attempt's outcome is always its own.
        """
        flight_mode = CacheMode(mode)
        if flight_mode is CacheMode.BYPASS:
            raise ValueError("a bypass does not go through the cache: call compute directly")
        if not self._settings.enabled:
            return await compute(), False
        slot = (flight_mode, key)
        while (joined := self._flights.get(slot)) is not None:
            try:
                # Shielded: a follower's cancellation must not cancel the flight others are waiting on.
                shared = await _waited(asyncio.shield(joined), deadline)
            except _LeaderGone:
                continue
            if accept(shared):
                return shared, True
            # The flight's producer is one this caller's policy refuses: it computes its own.
        flight: asyncio.Future[CachedEntry] = asyncio.get_running_loop().create_future()
        self._flights[slot] = flight
        try:
            entry, hit = await self._lead(key, compute, flight_mode, accept, deadline, read_first)
        except Exception as exc:
            flight.set_exception(exc)
            flight.exception()  # marks it retrieved: a flight without followers must not warn at exit
            raise
        except BaseException:
            flight.set_exception(_LeaderGone())
            flight.exception()
            raise
        else:
            flight.set_result(entry)
            return entry, hit
        finally:
            self._flights.pop(slot, None)

    # -- one flight ----------------------------------------------------------------------------------

    async def _lead(
        self,
        key: str,
        compute: Callable[[], Awaitable[CachedEntry]],
        mode: CacheMode,
        accept: Callable[[CachedEntry], bool],
        deadline: float | None,
        read_first: bool,
    ) -> tuple[CachedEntry, bool]:
        lock = lock_key(key)
        token = secrets.token_hex(16)
        try:
            if (
                mode is CacheMode.DEFAULT
                and read_first
                and (found := await self._read_near(key))
                and accept(found[0])
            ):
                return found[0], True
            while True:
                if await self._call("lock", lambda: self._set_lock(lock, token)):
                    break
                if (fresh := await self._wait_for_holder(key, lock, mode, accept, deadline)) is not None:
                    return fresh, True
        except _Unavailable:
            # No shared store to coordinate through: serve the request; the write is a best effort.
            entry = await compute()
            await self._store(key, entry, writer="")
            return entry, False
        return await self._compute_locked(key, lock, token, compute, mode, accept)

    async def _compute_locked(
        self,
        key: str,
        lock: str,
        token: str,
        compute: Callable[[], Awaitable[CachedEntry]],
        mode: CacheMode,
        accept: Callable[[CachedEntry], bool],
    ) -> tuple[CachedEntry, bool]:
        keeper = asyncio.create_task(self._keep_lock(lock, token))
        try:
            # A holder that released just before we took the lock may have written the value.
            if mode is CacheMode.DEFAULT:
                try:
                    found = await self._read(key)
                except _Unavailable:
                    found = None
                if found and accept(found[0]):
                    return found[0], True
            entry = await compute()
            await self._store(key, entry, writer=token)
            return entry, False
        finally:
            keeper.cancel()
            # Shielded: a cancelled holder still frees its waiters now rather than after lock_ttl_s.
            await asyncio.shield(self._unlock(lock, token))

    async def _wait_for_holder(
        self,
        key: str,
        lock: str,
        mode: CacheMode,
        accept: Callable[[CachedEntry], bool],
        deadline: float | None,
    ) -> CachedEntry | None:
        """Wait while another instance holds the lock: its entry if it wrote one, None to retry the lock."""
        holders: set[str] = set()
        while True:
            if mode is CacheMode.DEFAULT:
                raw, holder = await self._call("wait", lambda: self._peek(key, lock))
                if (found := self._decoded(key, raw)) is not None and accept(found[0]):
                    self._local.put(key, found)
                    return found[0]
            else:
                holder = await self._call("wait", lambda: self._redis_client().get(lock))
            if holder is None:
                if mode is CacheMode.REFRESH and holders:
                    # The old value was there all along: only an entry written by a holder we waited on
                    # is the fresh one.
                    found = await self._read(key)
                    if found and found[1] in holders and accept(found[0]):
                        return found[0]
                return None
            holders.add(holder.decode() if isinstance(holder, bytes) else str(holder))
            if deadline is not None and time.monotonic() + self._settings.wait_poll_s > deadline:
                raise WaitTimedOut(_WAIT_TIMED_OUT)
            await asyncio.sleep(self._settings.wait_poll_s)

    async def _keep_lock(self, lock: str, token: str) -> None:
        assert self._renew is not None
        renew = self._renew
        while True:
            await asyncio.sleep(self._settings.lock_ttl_s / 3)
            try:
                kept = await self._call("renew", lambda: renew(keys=[lock], args=[token, self._lock_ttl_ms]))
            except _Unavailable:
                continue  # the lock may lapse; waiters then compute themselves, which is safe
            if not kept:
                log.warning("cache.lock_lost", lock=lock)
                return

    async def _unlock(self, lock: str, token: str) -> None:
        assert self._release is not None
        release = self._release
        # On failure the lock lapses after lock_ttl_s.
        with contextlib.suppress(_Unavailable):
            await self._call("unlock", lambda: release(keys=[lock], args=[token]))

    # -- Redis I/O -----------------------------------------------------------------------------------

    @property
    def _lock_ttl_ms(self) -> int:
        return max(1, round(self._settings.lock_ttl_s * 1000))

    def _redis_client(self) -> Redis:
        assert self._redis is not None
        return self._redis

    async def _set_lock(self, lock: str, token: str) -> bool:
        return bool(await self._redis_client().set(lock, token, nx=True, px=self._lock_ttl_ms))

    async def _peek(self, key: str, lock: str) -> tuple[bytes | None, bytes | None]:
        pipe = self._redis_client().pipeline(transaction=False)
        pipe.get(key)
        pipe.get(lock)
        raw, holder = await pipe.execute()
        return raw, holder

    async def _read_near(self, key: str) -> tuple[CachedEntry, str] | None:
        """The entry from this process's memory when it holds it, else from Redis."""
        return self._local.get(key) or await self._read(key)

    async def _read(self, key: str) -> tuple[CachedEntry, str] | None:
        """The entry as Redis holds it now (which also refreshes the local copy)."""
        raw = await self._call("get", lambda: self._redis_client().get(key))
        found = self._decoded(key, raw)
        if found is not None:
            self._local.put(key, found)
        return found

    def _decoded(self, key: str, raw: bytes | None) -> tuple[CachedEntry, str] | None:
        if raw is None:
            return None
        try:
            return _decode(raw)
        except (ValueError, KeyError, TypeError, InvalidOperation) as exc:
            # Unreadable (a foreign or older writer): a miss, and the next computation overwrites it.
            log.warning("cache.entry_unreadable", key=key, error=type(exc).__name__)
            return None

    async def _store(self, key: str, entry: CachedEntry, writer: str) -> None:
        limit = self._settings.max_entry_bytes
        if len(entry.payload) > limit:
            log.info(
                "cache.entry_too_large", key=key, payload_bytes=len(entry.payload), max_entry_bytes=limit
            )
            return
        value = _encode(entry, writer)
        try:
            await self._call("put", lambda: self._redis_client().set(key, value, ex=self._settings.ttl_s))
        except _Unavailable:
            # Memory mirrors what Redis holds: what it did not take is not served from here either.
            self._local.drop(key)
            return
        self._local.put(key, (entry, writer))

    async def _call(self, op: str, make: Callable[[], Awaitable[T]]) -> T:
        """Run one Redis call within ``timeout_s``; raise :class:`_Unavailable` instead of failing."""
        if self._redis is None or not self._settings.enabled:
            raise _Unavailable
        started = time.monotonic()
        if started < self._down_until:
            raise _Unavailable
        try:
            async with asyncio.timeout(self._settings.timeout_s):
                result = await make()
        except (redis.RedisError, OSError, TimeoutError) as exc:
            if not isinstance(exc, redis.ResponseError) and not (
                # Redis answered another call after this one was sent: it is up, and this call waited on
                # a saturated event loop (or for a pooled connection). Skipping Redis for the backoff
                # would turn every hit of that window into a paid provider call, which loads the loop
                # further; this call alone degrades.
                isinstance(exc, TimeoutError) and self._answered_at > started
            ):
                self._down_until = time.monotonic() + self._settings.down_backoff_s
            log.warning("cache.store_failed", op=op, error=repr(exc), timeout_s=self._settings.timeout_s)
            raise _Unavailable from exc
        self._answered_at = time.monotonic()
        return result
