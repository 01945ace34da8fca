"""The cost ledger: exact records, exactly-once storage, rollups, the spool, against a real Redis."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from uuid import RFC_4122, UUID

import pytest
import redis.asyncio
import structlog

from gateway.core.provider_types import Locality, Operation, Usage
from gateway.ledger.rollups import LedgerStore, StoreEntry
from gateway.ledger.spool import Spool
from gateway.ledger.store import (
    Ledger,
    LedgerRecord,
    LedgerUnavailable,
    PricesUsed,
    RollupRow,
    attempt_record_id,
    new_request_key,
    request_record_id,
)
from gateway.money.pricing import PriceBook, UnitPrices
from gateway.settings import LedgerSettings
from tests.conftest import throwaway_redis

D = Decimal
DAY1 = date(2026, 3, 1)
DAY2 = date(2026, 3, 2)
LATE_DAY1 = datetime(2026, 3, 1, 23, 59, 59, 500_000, tzinfo=UTC).timestamp()
EARLY_DAY2 = datetime(2026, 3, 2, 0, 0, 0, 500_000, tzinfo=UTC).timestamp()
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC).timestamp()
FORTY_DAYS = 40 * 24 * 3600


def request(
    rid: str,
    *,
    tenant: str = "acme",
    operation: str = "transcribe",
    provider: str = "openai",
    model: str = "whisper-1",
    locality: str = "cloud",
    outcome: str = "ok",
    cost: str = "0",
    saved: str = "0",
    cache_hit: bool = False,
    units: Usage | None = None,
    ts: float = T0,
    cloud: str | None = None,
    local: str | None = None,
) -> LedgerRecord:
    return LedgerRecord(
        kind="request",
        record_id=request_record_id(rid),
        request_id=rid,
        tenant=tenant,
        operation=operation,
        policy="default",
        provider=provider,
        model=model,
        locality=locality,
        outcome=outcome,
        error_kind="" if outcome == "ok" else outcome,
        units=units or Usage(),
        unit_prices=PricesUsed(per_audio_second=D("0.0001")),
        price_book_version="2026-03",
        cost_usd=D(cost),
        saved_usd=D(saved),
        cache_hit=cache_hit,
        latency_ms=123.4,
        timestamp=ts,
        counterfactual_cloud_usd=None if cloud is None else D(cloud),
        counterfactual_local_usd=None if local is None else D(local),
    )


def attempt(
    rid: str,
    n: int,
    *,
    tenant: str = "acme",
    operation: str = "transcribe",
    provider: str = "openai",
    outcome: str = "ok",
    cost: str = "0",
    units: Usage | None = None,
    ts: float = T0,
) -> LedgerRecord:
    return LedgerRecord(
        kind="attempt",
        record_id=attempt_record_id(rid, n),
        request_id=rid,
        tenant=tenant,
        operation=operation,
        policy="default",
        provider=provider,
        model="m",
        locality="cloud",
        outcome=outcome,
        error_kind="" if outcome == "ok" else outcome,
        units=units or Usage(),
        unit_prices=PricesUsed(),
        price_book_version="2026-03",
        cost_usd=D(cost),
        saved_usd=D(0),
        cache_hit=False,
        latency_ms=50.0,
        timestamp=ts,
    )


@pytest.fixture
def client(redis_client: redis.asyncio.Redis) -> redis.asyncio.Redis:
    return redis_client


@pytest.fixture
def prefix(redis_prefix: str) -> str:
    return redis_prefix


def fast_settings(spool_dir: Path, **overrides: object) -> LedgerSettings:
    values: dict[str, object] = {
        "spool_dir": spool_dir,
        "flush_interval_s": 0.02,
        "replay_interval_s": 0.1,
        "timeout_s": 1.0,
        "shutdown_replay_s": 2.0,
        **overrides,
    }
    return LedgerSettings.model_validate(values)


def make_ledger(
    client: redis.asyncio.Redis | None, prefix: str, spool_dir: Path, **overrides: object
) -> Ledger:
    return Ledger(client, prefix, spool_dir, fast_settings(spool_dir, **overrides))


@contextlib.asynccontextmanager
async def running(ledger: Ledger) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(ledger.run(stop))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def eventually(check: Callable[[], bool | Awaitable[bool]], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


async def stream_ids(client: redis.asyncio.Redis, prefix: str) -> list[str]:
    entries = await client.xrange(f"{prefix}ledger")
    return [json.loads(fields[b"record"])["record_id"] for _, fields in entries]


def spooled_ids(spool_dir: Path) -> list[str]:
    ids = []
    for path in sorted(spool_dir.glob("*.jsonl")):
        if path.name != "rejected.jsonl":
            ids += [LedgerRecord.from_json(line).record_id for line in path.read_text().splitlines()]
    return ids


def settled(ledger: Ledger) -> Callable[[], bool]:
    return lambda: ledger.queue_depth() == 0 and ledger.spool_depth() == 0


# -- the record -------------------------------------------------------------------------------------------


def cache_hit_record() -> LedgerRecord:
    return request(
        "req-7",
        cost="0",
        saved="0.006000000",
        cache_hit=True,
        units=Usage(audio_seconds=60.000001, compute_seconds=0.1),
        cloud="0.004300000",
        local="0.000166667",
    )


@pytest.mark.parametrize(
    "record",
    [
        cache_hit_record(),
        attempt("req-7", 3, outcome="provider_timeout", units=Usage(characters=12, output_tokens=7)),
        request("req-8", cost="12345678.123456789", saved="1E-9", cloud="0E-9", local=None),
    ],
    ids=["cache-hit", "failed-attempt", "odd-decimals"],
)
def test_json_round_trip_is_exact(record: LedgerRecord):
    text = record.to_json()
    back = LedgerRecord.from_json(text)
    assert back == record
    assert back.to_json() == text
    # Exponents survive too (0E-9 stays 0E-9, 1E-9 stays 1E-9), not just the numeric value.
    for name in ("cost_usd", "saved_usd", "counterfactual_cloud_usd", "counterfactual_local_usd"):
        assert repr(getattr(back, name)) == repr(getattr(record, name))
    raw = json.loads(text)
    assert isinstance(raw["cost_usd"], str) and isinstance(raw["saved_usd"], str)
    assert all(isinstance(v, str) for v in raw["unit_prices"].values())


def test_enums_are_stored_as_their_values():
    record = LedgerRecord(
        kind="request",
        record_id="r:req",
        request_id="r",
        tenant="acme",
        operation=Operation.SYNTHESIZE,
        policy="default",
        provider="piper",
        model="joe",
        locality=Locality.LOCAL,
        outcome="ok",
        error_kind="",
        units=Usage(characters=10),
        unit_prices=PricesUsed(per_compute_hour=D("0.10")),
        price_book_version="v",
        cost_usd=D("0.000000028"),
        saved_usd=D(0),
        cache_hit=False,
        latency_ms=1.0,
        timestamp=T0,
    )
    assert type(record.operation) is str and record.operation == "synthesize"
    assert type(record.locality) is str and record.locality == "local"
    assert LedgerRecord.from_json(record.to_json()) == record


def test_unit_prices_come_from_the_price_book():
    book = PriceBook(
        local_usd_per_hour=D("0.10"),
        vendor_prices={("openai", "whisper-1"): UnitPrices(per_audio_second=D("0.0001"))},
    )
    assert PricesUsed.from_book(book, "openai", "whisper-1", Locality.CLOUD) == PricesUsed(
        per_audio_second=D("0.0001")
    )
    assert PricesUsed.from_book(book, "whisper", "tiny.en", Locality.LOCAL) == PricesUsed(
        per_compute_hour=D("0.10")
    )


def test_records_refuse_bad_money_and_ids():
    good = request("r1", cost="0.5")
    with pytest.raises(TypeError, match="Decimal"):
        LedgerRecord(**{**good.__dict__, "cost_usd": 0.5})
    with pytest.raises(ValueError, match="nano-dollars"):
        request("r1", cost="0.0000000001")
    with pytest.raises(ValueError, match="at least zero"):
        request("r1", saved="-1")
    with pytest.raises(ValueError, match="does not match"):
        LedgerRecord(**{**good.__dict__, "record_id": "r2:req"})
    with pytest.raises(ValueError, match="does not match"):
        LedgerRecord(**{**attempt("r1", 2).__dict__, "record_id": "r1:att:02"})
    with pytest.raises(ValueError, match="request records only"):
        LedgerRecord(**{**attempt("r1", 1).__dict__, "counterfactual_cloud_usd": D("0.1")})
    with pytest.raises(ValueError, match="numbered from 1"):
        attempt_record_id("r1", 0)
    with pytest.raises(ValueError, match="not a ledger record"):
        LedgerRecord.from_json(good.to_json().replace('"cost_usd":"0.5"', '"cost_usd":0.5'))
    with pytest.raises(ValueError, match="not a ledger record"):
        LedgerRecord.from_json('{"v": 2}')


# -- storing ------------------------------------------------------------------------------------------------


async def test_records_reach_the_stream_and_rollups_exactly_once(
    client: redis.asyncio.Redis, prefix: str, tmp_path: Path
):
    ledger = make_ledger(client, prefix, tmp_path / "spool")
    made = [
        attempt("r1", 1, provider="deepgram", outcome="provider_unavailable"),
        attempt("r1", 2, cost="0.006000000", units=Usage(audio_seconds=60.0)),
        request("r1", cost="0.006000000", units=Usage(audio_seconds=60.0), cloud="0.004300000"),
    ]
    async with running(ledger):
        for record in made:
            ledger.record(record)
        # The same records again (a router retrying its ledger call) are stored once.
        for record in made:
            ledger.record(record)
        await eventually(settled(ledger))
    assert sorted(await stream_ids(client, prefix)) == ["r1:att:1", "r1:att:2", "r1:req"]
    assert FORTY_DAYS - 60 < await client.ttl(f"{prefix}ledger:seen:acme:r1:req") <= FORTY_DAYS
    rows = {row.provider: row for row in await ledger.rollups(DAY1, DAY1)}
    assert rows["deepgram"].attempts == 1 and rows["deepgram"].failures == 1
    assert rows["deepgram"].requests == 0 and rows["deepgram"].cost_usd == 0
    assert (rows["openai"].requests, rows["openai"].attempts, rows["openai"].failures) == (1, 1, 0)
    assert rows["openai"].cost_usd == D("0.006")  # from the request record only, not doubled by its attempt
    assert rows["openai"].audio_ms == 60_000
    assert list((tmp_path / "spool").glob("*.jsonl")) == []


async def test_rollups_equal_a_hand_calculation(client: redis.asyncio.Redis, prefix: str, tmp_path: Path):
    ledger = make_ledger(client, prefix, tmp_path / "spool")
    records = [
        # acme, day 1: a fallback from deepgram to openai, then the same request served from the cache.
        attempt("a1", 1, provider="deepgram", outcome="provider_timeout", ts=LATE_DAY1),
        attempt("a1", 2, cost="0.006000000", units=Usage(audio_seconds=60.0), ts=LATE_DAY1),
        request(
            "a1",
            cost="0.006000000",
            units=Usage(audio_seconds=60.0),
            ts=LATE_DAY1,
            cloud="0.004300000",
            local="0.000166667",
        ),
        request(
            "a2",
            saved="0.006000000",
            cache_hit=True,
            units=Usage(audio_seconds=60.0),
            ts=LATE_DAY1,
            cloud="0.004300000",
            local="0.000166667",
        ),
        # acme, day 2 (half a second after midnight UTC): a local synthesis with no cloud counterfactual.
        attempt(
            "a3",
            1,
            operation="synthesize",
            provider="piper",
            cost="0.000002778",
            units=Usage(characters=120, compute_seconds=0.1),
            ts=EARLY_DAY2,
        ),
        request(
            "a3",
            operation="synthesize",
            provider="piper",
            model="joe",
            locality="local",
            cost="0.000002778",
            units=Usage(characters=120, compute_seconds=0.1),
            ts=EARLY_DAY2,
            local="0.000002778",
        ),
        # globex, day 1: every attempt failed.
        attempt("g1", 1, tenant="globex", outcome="provider_unavailable", ts=LATE_DAY1),
        request("g1", tenant="globex", outcome="all_attempts_failed", ts=LATE_DAY1, cloud="0.001000000"),
    ]
    async with running(ledger):
        for record in records:
            ledger.record(record)
        await eventually(settled(ledger))

    zero = D(0)

    def row(day: date, tenant: str, operation: str, provider: str, **values: object) -> RollupRow:
        base: dict[str, object] = {
            "requests": 0,
            "failed_requests": 0,
            "attempts": 0,
            "failures": 0,
            "cache_hits": 0,
            "cost_usd": zero,
            "saved_usd": zero,
            "counterfactual_cloud_usd": zero,
            "counterfactual_cloud_requests": 0,
            "counterfactual_local_usd": zero,
            "counterfactual_local_requests": 0,
            "audio_ms": 0,
            "characters": 0,
            "input_tokens": 0,
            "audio_input_tokens": 0,
            "output_tokens": 0,
            "compute_ms": 0,
        }
        return RollupRow(day, tenant, operation, provider, **{**base, **values})  # type: ignore[arg-type]

    expected = [
        row(DAY1, "acme", "transcribe", "deepgram", attempts=1, failures=1),
        row(
            DAY1,
            "acme",
            "transcribe",
            "openai",
            requests=2,
            attempts=1,
            cache_hits=1,
            cost_usd=D("0.006"),
            saved_usd=D("0.006"),
            counterfactual_cloud_usd=D("0.0086"),
            counterfactual_cloud_requests=2,
            counterfactual_local_usd=D("0.000333334"),
            counterfactual_local_requests=2,
            audio_ms=120_000,
        ),
        row(
            DAY1,
            "globex",
            "transcribe",
            "openai",
            requests=1,
            failed_requests=1,
            attempts=1,
            failures=1,
            counterfactual_cloud_usd=D("0.001"),
            counterfactual_cloud_requests=1,
        ),
        row(
            DAY2,
            "acme",
            "synthesize",
            "piper",
            requests=1,
            attempts=1,
            cost_usd=D("0.000002778"),
            counterfactual_local_usd=D("0.000002778"),
            counterfactual_local_requests=1,
            characters=120,
            compute_ms=100,
        ),
    ]
    assert await ledger.rollups(DAY1, DAY2) == expected
    assert await ledger.rollups(DAY1, DAY1, tenant="acme") == expected[:2]
    assert await ledger.rollups(DAY2, DAY2, tenant="globex") == []
    acme = await ledger.rollups(DAY1, DAY2, tenant="acme")
    assert sum((r.cost_usd for r in acme), D(0)) == D("0.006002778")
    assert sum((r.saved_usd for r in acme), D(0)) == D("0.006")


async def test_a_batchs_sums_stay_exact_past_what_a_lua_number_holds(
    client: redis.asyncio.Redis, prefix: str, tmp_path: Path
):
    # The script sums a batch's counters per rollup hash in Lua, whose numbers are doubles: exact only
    # below 2^53 nano-dollars (about $9M). Past that, the digits must still add up to the nano-dollar.
    ledger = make_ledger(client, prefix, tmp_path / "spool")
    costs = ["9000000.000000001", "9000000.000000003", "0.000000007"]
    async with running(ledger):
        for n, cost in enumerate(costs):
            ledger.record(request(f"big{n}", cost=cost))
        await eventually(settled(ledger))
    (rollup,) = await ledger.rollups(DAY1, DAY1)
    assert rollup.requests == 3
    assert rollup.cost_usd == D("18000000.000000011")


async def test_request_records_are_read_back_by_time(
    client: redis.asyncio.Redis, prefix: str, tmp_path: Path
):
    ledger = make_ledger(client, prefix, tmp_path / "spool")
    async with running(ledger):
        for i, offset in enumerate((0.0, 10.0, 20.0)):
            ledger.record(attempt(f"t{i}", 1, ts=T0 + offset))
            ledger.record(request(f"t{i}", cost="0.000000001", ts=T0 + offset))
        await eventually(settled(ledger))
    found = await ledger.request_records(T0, T0 + 20.0)
    assert [r.record_id for r in found] == ["t0:req", "t1:req"]
    assert found[0] == request("t0", cost="0.000000001", ts=T0)
    assert len(await ledger.records(T0, T0 + 30.0)) == 6
    assert [r.record_id for r in await ledger.records(T0 + 5, T0 + 30.0, kind="attempt")] == [
        "t1:att:1",
        "t2:att:1",
    ]


class WriteLog:
    """Wraps the store's real write: which task made each one, and which records it carried."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.writers: list[asyncio.Task[object] | None] = []
        self.batches: list[list[str]] = []
        write = LedgerStore.write

        async def logged(store: LedgerStore, entries: Sequence[StoreEntry]) -> int:
            self.writers.append(asyncio.current_task())
            self.batches.append([e.record_id for e in entries])
            return await write(store, entries)

        monkeypatch.setattr(LedgerStore, "write", logged)


async def test_a_waiting_reply_writes_its_own_records_when_no_write_is_in_flight(
    client: redis.asyncio.Redis, prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    # Handing the records to the writer task and waiting to be woken costs a reply two event-loop turns.
    writes = WriteLog(monkeypatch)
    ledger = make_ledger(client, prefix, tmp_path / "spool", flush_interval_s=60)
    async with running(ledger):
        await eventually(lambda: ledger.running)
        for n in range(3):
            ledger.record(attempt(f"own{n}", 1))
            ledger.record(request(f"own{n}"))
            assert await ledger.stored(5)
            assert writes.writers[-1] is asyncio.current_task()
            assert writes.batches[-1] == [f"own{n}:att:1", f"own{n}:req"]
    assert sorted(await stream_ids(client, prefix)) == sorted(
        f"own{n}:{kind}" for n in range(3) for kind in ("att:1", "req")
    )


async def test_concurrent_replies_each_wait_for_their_records_and_none_is_written_twice(
    client: redis.asyncio.Redis, prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    writes = WriteLog(monkeypatch)
    ledger = make_ledger(client, prefix, tmp_path / "spool", batch_size=7)

    async def reply(n: int) -> bool:
        await asyncio.sleep(n % 5 / 1000)
        ledger.record(attempt(f"c{n}", 1))
        ledger.record(request(f"c{n}"))
        if not await ledger.stored(5):
            return False
        # Once the wait is over, this reply's records are in Redis.
        return {f"c{n}:att:1", f"c{n}:req"} <= set(await stream_ids(client, prefix))

    async with running(ledger):
        assert all(await asyncio.gather(*(reply(n) for n in range(150))))
    written = [record_id for batch in writes.batches for record_id in batch]
    assert len(written) == len(set(written)) == 300  # one write at a time: no record sent twice
    assert max(len(batch) for batch in writes.batches) <= 7
    assert len(await stream_ids(client, prefix)) == 300


# -- identity: the server's keys, the caller's id ------------------------------------------------------------


def keyed(record: LedgerRecord, key: str) -> LedgerRecord:
    """The record as the gateway makes it now: keyed by a server key, the caller's id kept alongside."""
    if record.kind == "request":
        record_id = request_record_id(key)
    else:
        record_id = attempt_record_id(key, int(record.record_id.rpartition(":")[2]))
    return LedgerRecord(**{**record.__dict__, "request_key": key, "record_id": record_id})


def test_request_keys_are_unique_time_ordered_uuid7s():
    keys = [new_request_key() for _ in range(2000)]
    assert len(set(keys)) == len(keys)
    parsed = [UUID(k) for k in keys]
    assert {u.version for u in parsed} == {7} and {u.variant for u in parsed} == {RFC_4122}
    millis = [u.int >> 80 for u in parsed]
    assert millis == sorted(millis) and abs(millis[0] - time.time() * 1000) < 5000


def test_version_1_records_still_load_keyed_by_the_callers_id():
    new = request("old-1", cost="0.5")
    raw = json.loads(new.to_json())
    for name in ("request_key", "billing_unknown", "possibly_billed_usd"):
        del raw[name]
    raw["v"] = 1
    old = LedgerRecord.from_json(json.dumps(raw))
    assert (old.request_key, old.request_id, old.record_id) == ("old-1", "old-1", "old-1:req")
    assert old.legacy_id and not old.billing_unknown and old.possibly_billed_usd == 0
    assert old == new


def test_possibly_billed_needs_billing_unknown_and_round_trips():
    unknown = LedgerRecord(
        **{
            **attempt("r1", 1, outcome="timeout").__dict__,
            "billing_unknown": True,
            "possibly_billed_usd": D("0.000200000"),
        }
    )
    assert LedgerRecord.from_json(unknown.to_json()) == unknown
    with pytest.raises(ValueError, match="billing_unknown"):
        LedgerRecord(**{**unknown.__dict__, "billing_unknown": False})


async def test_a_reused_request_id_stores_every_request_and_is_found_per_tenant(
    client: redis.asyncio.Redis, prefix: str, tmp_path: Path
):
    ledger = make_ledger(client, prefix, tmp_path / "spool")
    # A failed try and its retry under one caller id, and another tenant that chose the same id.
    failed_key, retry_key, other_key = new_request_key(), new_request_key(), new_request_key()
    made = [
        keyed(attempt("job", 1, outcome="unavailable"), failed_key),
        keyed(request("job", outcome="all_attempts_failed"), failed_key),
        keyed(attempt("job", 1, cost="0.006000000", ts=T0 + 1), retry_key),
        keyed(request("job", cost="0.006000000", ts=T0 + 1), retry_key),
        keyed(attempt("job", 1, tenant="globex", cost="0.001000000"), other_key),
        keyed(request("job", tenant="globex", cost="0.001000000"), other_key),
    ]
    async with running(ledger):
        for record in made + made:  # sent twice: still stored once each
            ledger.record(record)
        await eventually(settled(ledger))
    assert sorted(await stream_ids(client, prefix)) == sorted(r.record_id for r in made)
    rows = {row.tenant: row for row in await ledger.rollups(DAY1, DAY1)}
    assert (rows["acme"].requests, rows["acme"].failed_requests, rows["acme"].attempts) == (2, 1, 2)
    assert (rows["globex"].requests, rows["globex"].cost_usd) == (1, D("0.001"))
    acme = await ledger.find("acme", "job")
    assert acme == made[:4]
    assert await ledger.find("globex", "job") == made[4:]
    assert await ledger.find("initech", "job") == []


async def test_two_tenants_records_with_one_id_are_not_each_others_duplicates(
    client: redis.asyncio.Redis, prefix: str, tmp_path: Path
):
    # The seen marks are per tenant: even a record id both share cannot make one tenant's record vanish.
    ledger = make_ledger(client, prefix, tmp_path / "spool")
    key = new_request_key()
    made = [keyed(request("x", tenant="acme"), key), keyed(request("x", tenant="globex"), key)]
    async with running(ledger):
        for record in made:
            ledger.record(record)
        await eventually(settled(ledger))
    assert {row.tenant: row.requests for row in await ledger.rollups(DAY1, DAY1)} == {"acme": 1, "globex": 1}


async def test_old_records_replayed_after_the_upgrade_are_not_counted_twice(
    client: redis.asyncio.Redis, prefix: str, tmp_path: Path
):
    # Stored by the previous version, whose seen mark had no tenant, and still in a spool segment.
    old = request("legacy-1", cost="0.5")
    await client.set(f"{prefix}ledger:seen:{old.record_id}", "1")
    ledger = make_ledger(client, prefix, tmp_path / "spool")
    fresh = request("legacy-2", cost="0.25")
    async with running(ledger):
        ledger.record(old)
        ledger.record(fresh)
        await eventually(settled(ledger))
    assert await stream_ids(client, prefix) == ["legacy-2:req"]
    (row,) = await ledger.rollups(DAY1, DAY1)
    assert (row.requests, row.cost_usd) == (1, D("0.25"))


async def test_rollups_reach_the_last_day_there_is(client: redis.asyncio.Redis, prefix: str, tmp_path: Path):
    ledger = make_ledger(client, prefix, tmp_path / "spool")
    assert await ledger.rollups(date.max - timedelta(days=3), date.max) == []


async def test_writes_go_on_after_redis_forgets_the_script(tmp_path: Path):
    # SCRIPT FLUSH (or a restarted Redis) leaves the store's cached script id unknown: EVAL stores the batch
    # and caches the script again. On a private server: flushing the shared one's scripts touches others.
    with throwaway_redis() as url:
        # A pool of one: the writer keeps that connection while it runs, and must give it back.
        client = redis.asyncio.Redis(
            connection_pool=redis.asyncio.BlockingConnectionPool.from_url(url, max_connections=1, timeout=2)
        )
        admin = redis.asyncio.Redis.from_url(url)
        ledger = make_ledger(client, "t:", tmp_path / "spool")
        try:
            async with running(ledger):
                for rid, cost in (("before", "0.000001"), ("after", "0.000002"), ("again", "0.000004")):
                    ledger.record(request(rid, cost=cost))
                    await eventually(settled(ledger))
                    if rid == "before":
                        await admin.script_flush()
            assert sorted(await stream_ids(admin, "t:")) == ["after:req", "again:req", "before:req"]
            assert spooled_ids(tmp_path / "spool") == []
            (row,) = await ledger.rollups(DAY1, DAY1)  # waits for the pool's one connection
            assert (row.requests, row.cost_usd) == (3, D("0.000007"))
        finally:
            await client.aclose()
            await admin.aclose()


# -- outages ------------------------------------------------------------------------------------------------


@pytest.fixture
def silent_port() -> Iterator[int]:
    """Accepts connections and never answers: a Redis that hangs."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(64)
        yield server.getsockname()[1]


@pytest.fixture
async def hanging_ledger(silent_port: int, tmp_path: Path) -> AsyncIterator[Ledger]:
    """A ledger whose Redis accepts connections and never answers (each call times out after 1.5 s)."""
    hanging = redis.asyncio.Redis(host="127.0.0.1", port=silent_port)
    spool_dir = tmp_path / "spool"
    yield Ledger(hanging, "test:", spool_dir, fast_settings(spool_dir, timeout_s=1.5))
    await hanging.aclose()


async def test_record_returns_at_once_while_redis_hangs(hanging_ledger: Ledger, tmp_path: Path):
    ledger = hanging_ledger
    async with running(ledger):
        ledger.record(request("first"))
        await asyncio.sleep(0.2)  # the writer is now waiting on the silent server
        started = time.perf_counter()
        for i in range(300):
            ledger.record(request(f"r{i}"))
        assert time.perf_counter() - started < 0.5  # far below one Redis timeout
        assert ledger.queue_depth() >= 300
        # After one timeout the writer gives up on Redis and spools, fsync'd.
        await eventually(lambda: ledger.spool_depth() == 301, timeout_s=5)
        assert ledger.queue_depth() == 0
    assert sorted(spooled_ids(tmp_path / "spool")) == sorted(
        ["first:req", *(f"r{i}:req" for i in range(300))]
    )


async def test_a_reply_waits_no_longer_than_its_timeout_while_redis_hangs(
    hanging_ledger: Ledger, tmp_path: Path
):
    ledger = hanging_ledger
    async with running(ledger):
        await eventually(lambda: ledger.running)
        ledger.record(request("late"))
        started = time.perf_counter()
        assert not await ledger.stored(0.2)  # the reply's own write to Redis was cut short
        assert time.perf_counter() - started < 1.0
        # The record stayed queued, and the writer spools it once Redis times out.
        await eventually(lambda: ledger.spool_depth() == 1, timeout_s=5)
        assert await ledger.stored(0.2)
    assert spooled_ids(tmp_path / "spool") == ["late:req"]


class ReplyDroppingProxy:
    """A TCP proxy to Redis. While ``dropping``, replies are thrown away: Redis applies, nobody hears."""

    def __init__(self, url: str) -> None:
        parsed = redis.asyncio.Redis.from_url(url).connection_pool.connection_kwargs
        self._target = (parsed.get("host", "127.0.0.1"), parsed.get("port", 6379))
        self.dropping = False
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self._target)

        async def pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter, replies: bool) -> None:
            while data := await source.read(65536):
                if not (replies and self.dropping):
                    sink.write(data)
                    await sink.drain()

        tasks = [
            asyncio.create_task(pump(reader, up_writer, replies=False)),
            asyncio.create_task(pump(up_reader, writer, replies=True)),
        ]
        with contextlib.suppress(ConnectionError):
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            task.cancel()
        for w in (writer, up_writer):
            w.close()


async def test_a_batch_whose_reply_was_lost_is_not_stored_twice(
    redis_url: str, client: redis.asyncio.Redis, prefix: str, tmp_path: Path
):
    proxy = ReplyDroppingProxy(redis_url)
    port = await proxy.start()
    via_proxy = redis.asyncio.Redis(host="127.0.0.1", port=port)
    ledger = make_ledger(via_proxy, prefix, tmp_path / "spool", timeout_s=0.3)
    made = [request(f"lost{i}", cost="0.000001000") for i in range(20)]
    try:
        await via_proxy.ping()
        proxy.dropping = True
        async with running(ledger):
            for record in made:
                ledger.record(record)
            # The writer timed out and spooled the batch; Redis had applied it all the same.
            await eventually(lambda: ledger.spool_depth() == 20, timeout_s=5)
            assert len(await stream_ids(client, prefix)) == 20
            proxy.dropping = False
            await eventually(settled(ledger), timeout_s=10)
        ids = await stream_ids(client, prefix)
        assert sorted(ids) == sorted(r.record_id for r in made)
        (rollup,) = await ledger.rollups(DAY1, DAY1)
        assert rollup.requests == 20
        assert rollup.cost_usd == D("0.00002")
        assert spooled_ids(tmp_path / "spool") == []
    finally:
        await via_proxy.aclose()
        await proxy.close()


async def test_replaying_records_already_sent_adds_nothing(
    client: redis.asyncio.Redis, prefix: str, tmp_path: Path, silent_port: int
):
    spool_dir = tmp_path / "spool"
    made = [
        *(attempt(f"c{i}", 1, cost="0.000100000") for i in range(5)),
        *(request(f"c{i}", cost="0.000100000") for i in range(5)),
    ]
    # One gateway spools the records (Redis unreachable) and stops.
    unreachable = redis.asyncio.Redis(host="127.0.0.1", port=silent_port)
    first = Ledger(
        unreachable, prefix, spool_dir, fast_settings(spool_dir, timeout_s=0.3, shutdown_replay_s=0)
    )
    async with running(first):
        for record in made:
            first.record(record)
    await unreachable.aclose()
    assert sorted(spooled_ids(spool_dir)) == sorted(r.record_id for r in made)
    # A replay reached Redis, then the process died before deleting the spool files.
    sender = make_ledger(client, prefix, tmp_path / "elsewhere")
    async with running(sender):
        for record in made:
            sender.record(record)
        await eventually(settled(sender))
    before = await ledger_state(client, prefix)
    # The next gateway on that spool directory adopts the files and replays them: nothing changes.
    second = make_ledger(client, prefix, spool_dir)
    async with running(second):
        await eventually(lambda: spooled_ids(spool_dir) == [] and second.spool_depth() == 0)
    assert await ledger_state(client, prefix) == before
    assert len(before[0]) == 10
    assert [p for p in spool_dir.iterdir() if p.name.endswith((".jsonl", ".lock"))] == []


async def ledger_state(
    client: redis.asyncio.Redis, prefix: str
) -> tuple[list[str], list[dict[bytes, bytes]]]:
    rollups = [
        await client.hgetall(key) for key in sorted(await client.smembers(f"{prefix}rollup:days:{DAY1}"))
    ]
    return sorted(await stream_ids(client, prefix)), rollups


async def test_a_live_ledgers_spool_is_left_alone_until_it_stops(
    client: redis.asyncio.Redis, prefix: str, tmp_path: Path, silent_port: int
):
    spool_dir = tmp_path / "shared"
    unreachable = redis.asyncio.Redis(host="127.0.0.1", port=silent_port)
    cut_off = Ledger(
        unreachable, prefix, spool_dir, fast_settings(spool_dir, timeout_s=0.3, shutdown_replay_s=0)
    )
    healthy = make_ledger(client, prefix, spool_dir)
    try:
        async with running(healthy):
            async with running(cut_off):
                for i in range(7):
                    cut_off.record(request(f"live{i}"))
                await eventually(lambda: cut_off.spool_depth() == 7, timeout_s=5)
                await asyncio.sleep(0.5)  # several of the healthy ledger's replay rounds
                assert len(spooled_ids(spool_dir)) == 7
                assert healthy.spool_depth() == 0
                assert await stream_ids(client, prefix) == []
            # Stopped: its lock is free, so the healthy ledger adopts and replays its segment.
            await eventually(lambda: spooled_ids(spool_dir) == [] and healthy.spool_depth() == 0)
        assert sorted(await stream_ids(client, prefix)) == sorted(f"live{i}:req" for i in range(7))
    finally:
        await unreachable.aclose()


async def test_corrupt_and_torn_spool_lines_do_not_block_replay(
    client: redis.asyncio.Redis, prefix: str, tmp_path: Path
):
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    good = [request("s1"), request("s2")]
    (spool_dir / "deadbeef-1-00.00000000.jsonl").write_text(
        f"{good[0].to_json()}\nnot a record\n{good[1].to_json()}\n" + good[1].to_json()[:20]
    )
    ledger = make_ledger(client, prefix, spool_dir)
    with structlog.testing.capture_logs() as logs:
        async with running(ledger):
            await eventually(lambda: not list(spool_dir.glob("deadbeef*")) and ledger.spool_depth() == 0)
    assert sorted(await stream_ids(client, prefix)) == ["s1:req", "s2:req"]
    assert (spool_dir / "rejected.jsonl").read_text() == "not a record\n"
    events = {e["event"] for e in logs}
    assert {"ledger.spool_rejected", "ledger.spool_torn_tail", "ledger.replayed"} <= events


async def test_without_redis_records_are_logged_and_spooled(tmp_path: Path):
    spool_dir = tmp_path / "spool"
    ledger = make_ledger(None, "test:", spool_dir)
    record = request("solo", cost="0.000250000", units=Usage(audio_seconds=2.5))
    with structlog.testing.capture_logs() as logs:
        async with running(ledger):
            ledger.record(record)
            await eventually(lambda: ledger.spool_depth() == 1)
    (event,) = [e for e in logs if e["event"] == "ledger.record"]
    assert event["record_id"] == "solo:req"
    assert event["cost_usd"] == "0.000250000"
    assert event["record_ts"] == T0
    assert event["units"]["audio_seconds"] == 2.5
    assert [
        LedgerRecord.from_json(line) for line in next(spool_dir.glob("*.jsonl")).read_text().splitlines()
    ] == [record]
    with pytest.raises(LedgerUnavailable):
        await ledger.rollups(DAY1, DAY1)


def test_spool_segments_roll_over_and_count(tmp_path: Path):
    spool = Spool(tmp_path, segment_records=3)
    for i in range(4):
        spool.append([f"line{2 * i}", f"line{2 * i + 1}"])
    assert spool.depth == 8
    spool.seal()
    segments = []
    while (segment := spool.next_segment()) is not None:
        segments.append(spool.read(segment).lines)
        spool.remove(segment)
    assert segments == [["line0", "line1", "line2", "line3"], ["line4", "line5", "line6", "line7"]]
    assert spool.depth == 0
    spool.close()
    assert list(tmp_path.iterdir()) == []
