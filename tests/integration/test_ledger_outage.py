"""The ledger through a Redis outage: spooled to disk while Redis is down, replayed exactly once after.

Each test runs its own redis-server with an append-only file, so what was stored before the outage is
still there after the restart on the same port (the shared Redis is never stopped).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from datetime import date
from decimal import Decimal
from pathlib import Path

import redis
import redis.asyncio

from gateway.core.provider_types import Usage
from gateway.ledger.store import Ledger, LedgerRecord, PricesUsed, attempt_record_id, request_record_id
from gateway.settings import LedgerSettings
from tests.redis_servers import free_port, redis_server, stop_server

COST = Decimal("0.000123456")


def settings(spool_dir: Path) -> LedgerSettings:
    return LedgerSettings(
        spool_dir=spool_dir,
        flush_interval_s=0.05,
        replay_interval_s=0.25,
        timeout_s=0.5,
        spool_segment_records=200,
        shutdown_replay_s=1.0,
    )


def client(port: int) -> redis.asyncio.Redis:
    return redis.asyncio.Redis(host="127.0.0.1", port=port, socket_timeout=0.5, socket_connect_timeout=0.5)


def served(rid: str) -> tuple[LedgerRecord, LedgerRecord]:
    """The two records of a request served by its first attempt."""
    fields = {
        "request_id": rid,
        "tenant": "acme",
        "operation": "transcribe",
        "policy": "default",
        "provider": "openai",
        "model": "whisper-1",
        "locality": "cloud",
        "outcome": "ok",
        "error_kind": "",
        "units": Usage(audio_seconds=1.23456),
        "unit_prices": PricesUsed(per_audio_second=Decimal("0.0001")),
        "price_book_version": "test",
        "cost_usd": COST,
        "saved_usd": Decimal(0),
        "cache_hit": False,
        "latency_ms": 20.0,
        "timestamp": time.time(),
    }
    return (
        LedgerRecord(kind="attempt", record_id=attempt_record_id(rid, 1), **fields),
        LedgerRecord(kind="request", record_id=request_record_id(rid), **fields),
    )


def spooled(spool_dir: Path) -> list[str]:
    """Record ids in the spool files, read from disk."""
    ids = []
    for path in sorted(spool_dir.glob("*.jsonl")):
        ids += [LedgerRecord.from_json(line).record_id for line in path.read_text().splitlines()]
    return ids


async def stored(port: int) -> list[str]:
    reader = client(port)
    try:
        entries = await reader.xrange("gw:ledger")
    finally:
        await reader.aclose()
    return [json.loads(fields[b"record"])["record_id"] for _, fields in entries]


async def eventually(check: Callable[[], bool], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def test_redis_stopped_mid_load_loses_and_duplicates_nothing(tmp_path: Path):
    port, data_dir, spool_dir = free_port(), tmp_path / "redis", tmp_path / "spool"
    data_dir.mkdir()
    writer_client = client(port)
    ledger = Ledger(writer_client, "gw:", spool_dir, settings(spool_dir))
    made: list[LedgerRecord] = []
    done = asyncio.Event()

    async def load() -> None:
        n = 0
        while not done.is_set():
            for record in served(f"load-{n}"):
                ledger.record(record)
                made.append(record)
            n += 1
            await asyncio.sleep(0.004)

    stop = asyncio.Event()
    writer = asyncio.create_task(ledger.run(stop))
    loader = asyncio.create_task(load())
    try:
        with redis_server(port, data_dir) as first:
            await asyncio.sleep(1.0)
            assert ledger.spool_depth() == 0 and len(await stored(port)) > 100
            await asyncio.to_thread(stop_server, first)  # mid-load: the loader keeps going
        after_stop = len(made)

        # The outage: records pile up in fsync'd spool files, not in memory.
        await eventually(lambda: ledger.spool_depth() > 0)
        await asyncio.sleep(1.0)
        during = len(made)
        await asyncio.sleep(0.3)
        on_disk = spooled(spool_dir)
        assert len(on_disk) == len(set(on_disk)) == ledger.spool_depth()
        assert {r.record_id for r in made[after_stop:during]} <= set(on_disk)
        assert ledger.queue_depth() < 100
        assert len(list(spool_dir.glob("*.jsonl"))) >= 2  # segments roll over during a long outage

        with redis_server(port, data_dir):
            await asyncio.sleep(1.5)  # traffic goes on while the spool is replayed
            done.set()
            await loader
            await eventually(lambda: ledger.spool_depth() == 0 and ledger.queue_depth() == 0)
            stop.set()
            await asyncio.wait_for(writer, 30)

            ids = await stored(port)
            assert len(ids) == len(made)  # no duplicates, nothing missing
            assert set(ids) == {r.record_id for r in made}
            requests = sum(1 for r in made if r.kind == "request")
            assert after_stop < during < len(made)  # the load ran through the outage and after it
            days = sorted({date.fromisoformat(r.day) for r in made})
            rows = await ledger.rollups(days[0], days[-1])
            assert sum(row.requests for row in rows) == requests
            assert sum(row.attempts for row in rows) == requests
            assert sum((row.cost_usd for row in rows), Decimal(0)) == COST * requests
        assert spooled(spool_dir) == []
    finally:
        done.set()
        stop.set()
        await asyncio.gather(loader, writer, return_exceptions=True)
        await writer_client.aclose()


async def test_records_accepted_before_a_shutdown_with_redis_down_are_on_disk(tmp_path: Path):
    port, data_dir, spool_dir = free_port(), tmp_path / "redis", tmp_path / "spool"
    data_dir.mkdir()
    writer_client = client(port)
    ledger = Ledger(writer_client, "gw:", spool_dir, settings(spool_dir))
    stop = asyncio.Event()
    writer = asyncio.create_task(ledger.run(stop))
    try:
        with redis_server(port, data_dir) as server:
            before = [r for n in range(50) for r in served(f"before-{n}")]
            for record in before:
                ledger.record(record)
            await eventually(lambda: ledger.queue_depth() == 0)
            await asyncio.to_thread(stop_server, server)
        after = [r for n in range(50) for r in served(f"after-{n}")]
        for record in after:
            ledger.record(record)
        # Shut down at once: the writer has not even tried to store these yet.
        stop.set()
        await asyncio.wait_for(writer, 30)
        assert ledger.queue_depth() == 0

        on_disk = spooled(spool_dir)
        assert set(on_disk) >= {r.record_id for r in after}
        with redis_server(port, data_dir):
            in_redis = await stored(port)
        assert set(in_redis) | set(on_disk) == {r.record_id for r in before + after}
        assert len(in_redis) == len(set(in_redis))
    finally:
        stop.set()
        await asyncio.gather(writer, return_exceptions=True)
        await writer_client.aclose()
