"""The ledger cannot be fooled, through the gRPC API: real server, real Redis, fakes with known prices.

- Record ids are the gateway's: a caller that reuses an ``x-request-id`` (a retry, a careless client, another
  tenant) never makes one of its records, or anyone else's, disappear as a duplicate.
- A provider call that was cancelled or timed out leaves an attempt record with ``billing_unknown`` and its
  estimated cost, reported as possibly billed and kept out of the cost.
- Numbers out of range in ExplainRoute and GetCostReport are INVALID_ARGUMENT, never INTERNAL.
"""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal

import grpc
import pytest

from gateway.api.v1 import audio_gateway_pb2 as pb
from gateway.api.v1 import audio_gateway_pb2_grpc as pb_grpc
from gateway.api.v1 import common_pb2 as common
from gateway.api.v1 import cost_reports_pb2 as reports_pb
from gateway.api.v1 import cost_reports_pb2_grpc as reports_grpc
from gateway.client import AsyncGatewayClient
from gateway.core.errors import ProviderTimeout, ProviderUnavailable
from gateway.core.provider_types import Locality
from gateway.grpc.server import GatewayServer
from gateway.money.pricing import UnitPrices
from policies.loader import hash_key
from providers.testing import FakeTranscriber
from tests.audio_files import encode, tone
from tests.conftest import local_settings

PRIMARY_PER_S = Decimal("0.0001")
FALLBACK_PER_S = Decimal("0.0003")
ACME, GLOBEX, ADMIN = "acme-key", "globex-key", "admin-key"
BYPASS = common.RoutingOptions(cache=common.CACHE_MODE_BYPASS)
# Where each test's server listens, for the tests that use the Python client instead of a stub.
channel_target: dict[grpc.aio.Channel, str] = {}


@pytest.fixture
async def gateway(tmp_path, redis_url):
    policies = tmp_path / "policies.yaml"
    policies.write_text(
        "policies:\n  - name: default\n"
        "tenants:\n"
        f"  - {{name: acme, key_sha256: {hash_key(ACME)}, default_policy: default}}\n"
        f"  - {{name: globex, key_sha256: {hash_key(GLOBEX)}, default_policy: default}}\n"
        f"  - {{name: ops, key_sha256: {hash_key(ADMIN)}, default_policy: default, admin: true}}\n"
    )
    settings = local_settings(max_audio_s=600.0)
    settings.redis.url = redis_url
    settings.redis.key_prefix = f"test:{uuid.uuid4().hex}:"
    settings.policies_file = policies
    settings.ledger.flush_interval_s = 0.05
    primary = FakeTranscriber(name="cloud-cheap", locality=Locality.CLOUD)
    fallback = FakeTranscriber(name="cloud-dear", locality=Locality.CLOUD)
    prices = {
        ("cloud-cheap", primary.model): UnitPrices(per_audio_second=PRIMARY_PER_S),
        ("cloud-dear", fallback.model): UnitPrices(per_audio_second=FALLBACK_PER_S),
    }
    server = GatewayServer(settings, providers=[primary, fallback], prices=prices)
    port = await server.start()
    await server.wait_ready(10)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        channel_target[channel] = f"127.0.0.1:{port}"
        yield channel, primary, fallback
        del channel_target[channel]
    await server.stop(5)


def meta(api_key: str, request_id: str | None = None) -> tuple[tuple[str, str], ...]:
    auth = (("authorization", f"Bearer {api_key}"),)
    return auth if request_id is None else (*auth, ("x-request-id", request_id))


def clip(seconds: float, hz: float) -> common.Audio:
    return common.Audio(content=encode(tone(seconds, hz=hz), 16_000, "wav"))


async def report(channel: grpc.aio.Channel, api_key: str, **request: object) -> reports_pb.CostReport:
    return await reports_grpc.CostReportsStub(channel).GetCostReport(
        reports_pb.GetCostReportRequest(**request), metadata=meta(api_key)
    )


async def settled(channel: grpc.aio.Channel, requests: int, attempts: int) -> reports_pb.CostReport:
    """The admin's report once the ledger holds this many records (it writes off the request path)."""
    total = reports_pb.CostReportRow()
    for _ in range(100):
        total = (await report(channel, ADMIN)).total
        if (total.requests, total.attempts) == (requests, attempts):
            # A little longer: a record the ledger dropped as a duplicate would never arrive, so make sure
            # nothing more is on its way either.
            await asyncio.sleep(0.3)
            return await report(channel, ADMIN)
        await asyncio.sleep(0.05)
    raise AssertionError(f"the ledger holds {total.requests} requests and {total.attempts} attempts")


async def find(channel: grpc.aio.Channel, api_key: str, request_id: str, tenant: str = "") -> list:
    reply = await reports_grpc.CostReportsStub(channel).FindRecords(
        reports_pb.FindRecordsRequest(request_id=request_id, tenant=tenant), metadata=meta(api_key)
    )
    return list(reply.records)


# -- scenario 2: caller-chosen ids erase nothing ------------------------------------------------------------


async def test_a_failed_try_and_its_retry_under_one_request_id_leave_two_requests(gateway):
    channel, primary, fallback = gateway
    stub = pb_grpc.AudioGatewayStub(channel)
    audio = clip(2.0, 440.0)
    primary.fail_with = ProviderUnavailable("cloud-cheap", "HTTP 503")
    fallback.fail_with = ProviderUnavailable("cloud-dear", "HTTP 503")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Transcribe(pb.TranscribeRequest(audio=audio), metadata=meta(ACME, "job-42"))
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    primary.fail_with = fallback.fail_with = None
    reply = await stub.Transcribe(pb.TranscribeRequest(audio=audio), metadata=meta(ACME, "job-42"))
    assert reply.route.request_id == "job-42" and not reply.route.cache_hit

    total = (await settled(channel, requests=2, attempts=3)).total
    assert (total.requests, total.attempts, total.failures) == (2, 3, 2)
    assert Decimal(total.cost_usd) == PRIMARY_PER_S * 2

    # Both requests can be found by the id the caller chose; the gateway's keys tell them apart.
    records = await find(channel, ACME, "job-42")
    assert all(r.request_id == "job-42" and r.tenant == "acme" for r in records)
    requests = [r for r in records if r.kind == "request"]
    assert [r.outcome for r in requests] == ["all_attempts_failed", "ok"]
    assert len({r.request_key for r in records}) == 2
    assert len({r.record_id for r in records}) == len(records) == 5


async def test_tenants_reusing_each_others_request_ids_lose_no_records(gateway):
    channel, primary, _ = gateway
    stub = pb_grpc.AudioGatewayStub(channel)
    ids = ["shared-1", "shared-2", "shared-3"]
    for n, request_id in enumerate(ids):
        await stub.Transcribe(
            pb.TranscribeRequest(audio=clip(1.0, 300.0 + n), routing=BYPASS), metadata=meta(ACME, request_id)
        )
        await stub.Transcribe(
            pb.TranscribeRequest(audio=clip(3.0, 500.0 + n), routing=BYPASS),
            metadata=meta(GLOBEX, request_id),
        )
    # And one careless client: six calls under a single id, six vendor calls.
    for n in range(6):
        await stub.Transcribe(
            pb.TranscribeRequest(audio=clip(1.0, 700.0 + n), routing=BYPASS), metadata=meta(ACME, "same")
        )
    assert primary.calls == 12
    await settled(channel, requests=12, attempts=12)

    acme, globex = (await report(channel, ACME)).total, (await report(channel, GLOBEX)).total
    assert (acme.requests, globex.requests) == (9, 3)
    assert Decimal(acme.cost_usd) == PRIMARY_PER_S * 9
    assert Decimal(globex.cost_usd) == PRIMARY_PER_S * 9
    # Each tenant finds only its own records under a shared id; an admin names the tenant.
    assert {r.tenant for r in await find(channel, GLOBEX, "shared-1")} == {"globex"}
    assert len([r for r in await find(channel, ACME, "same") if r.kind == "request"]) == 6
    async with AsyncGatewayClient(channel_target[channel], api_key=GLOBEX) as client:
        found = await client.find_records("shared-3")
    assert [(r.kind, r.tenant, r.provider) for r in found] == [
        ("attempt", "globex", "cloud-cheap"),
        ("request", "globex", "cloud-cheap"),
    ]
    assert Decimal(found[1].cost_usd) == PRIMARY_PER_S * 3
    assert [r.tenant for r in await find(channel, ADMIN, "shared-2", tenant="acme")] == ["acme", "acme"]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await find(channel, GLOBEX, "shared-1", tenant="acme")
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await find(channel, ACME, "not a request id!")
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


# -- scenario 8: spend that may have happened is on the books ------------------------------------------------


async def test_a_timed_out_vendor_call_is_recorded_as_possibly_billed(gateway):
    channel, primary, _ = gateway
    stub = pb_grpc.AudioGatewayStub(channel)
    primary.fail_with = ProviderTimeout("cloud-cheap", "no response within 30 s")
    reply = await stub.Transcribe(
        pb.TranscribeRequest(audio=clip(2.0, 620.0)), metadata=meta(ACME, "slow-vendor")
    )
    timed_out, served = reply.route.attempts
    assert (timed_out.provider, timed_out.outcome, timed_out.cost_usd) == ("cloud-cheap", "timeout", "0")
    assert timed_out.billing_unknown and Decimal(timed_out.possibly_billed_usd) == PRIMARY_PER_S * 2
    assert served.outcome == "ok" and not served.billing_unknown and served.possibly_billed_usd == "0"
    assert Decimal(reply.route.cost_usd) == FALLBACK_PER_S * 2

    total = (await settled(channel, requests=1, attempts=2)).total
    assert Decimal(total.cost_usd) == FALLBACK_PER_S * 2
    assert Decimal(total.possibly_billed_usd) == PRIMARY_PER_S * 2
    assert total.billing_unknown_attempts == 1
    by_provider = {
        r.provider: r for r in (await report(channel, ACME, group_by=[reports_pb.GROUP_BY_PROVIDER])).rows
    }
    # Possibly billed by the vendor that was called, not the one that answered.
    assert Decimal(by_provider["cloud-cheap"].possibly_billed_usd) == PRIMARY_PER_S * 2
    assert by_provider["cloud-cheap"].billing_unknown_attempts == 1
    assert by_provider["cloud-dear"].possibly_billed_usd == "0"
    assert Decimal(by_provider["cloud-dear"].cost_usd) == FALLBACK_PER_S * 2


async def test_a_call_cancelled_mid_flight_leaves_a_possibly_billed_attempt(gateway):
    channel, primary, _ = gateway
    stub = pb_grpc.AudioGatewayStub(channel)
    primary.delay_s = 5.0
    call = stub.Transcribe(
        pb.TranscribeRequest(audio=clip(4.0, 640.0), routing=BYPASS), metadata=meta(ACME, "hung-up")
    )
    for _ in range(100):
        if primary.calls:
            break
        await asyncio.sleep(0.02)
    assert primary.calls == 1
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call

    total = (await settled(channel, requests=1, attempts=1)).total
    assert (total.failures, total.billing_unknown_attempts, total.cost_usd) == (1, 1, "0")
    assert Decimal(total.possibly_billed_usd) == PRIMARY_PER_S * 4
    (attempt,) = [r for r in await find(channel, ACME, "hung-up") if r.kind == "attempt"]
    assert (attempt.provider, attempt.outcome, attempt.billing_unknown) == ("cloud-cheap", "cancelled", True)
    assert Decimal(attempt.possibly_billed_usd) == PRIMARY_PER_S * 4 and attempt.cost_usd == "0"


# -- scenario 10: numbers out of range are the caller's error ---------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "hint"),
    [
        ("audio_duration_s", 1e308, "GATEWAY_LIMITS__MAX_AUDIO_S"),
        ("audio_duration_s", 601.0, "GATEWAY_LIMITS__MAX_AUDIO_S"),
        ("characters", 4_294_967_295, "GATEWAY_LIMITS__MAX_TEXT_CHARS"),
    ],
)
async def test_explain_refuses_sizes_no_request_could_have(gateway, field, value, hint):
    channel, _, _ = gateway
    operation = pb.OPERATION_SYNTHESIZE if field == "characters" else pb.OPERATION_TRANSCRIBE
    request = pb.ExplainRouteRequest(operation=operation, **{field: value})
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await pb_grpc.AudioGatewayStub(channel).ExplainRoute(request, metadata=meta(ACME))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert hint in caught.value.details()


async def test_explain_still_prices_the_longest_accepted_recording(gateway):
    channel, _, _ = gateway
    stub = pb_grpc.AudioGatewayStub(channel)
    reply = await stub.ExplainRoute(
        pb.ExplainRouteRequest(operation=pb.OPERATION_TRANSCRIBE, audio_duration_s=600.0), metadata=meta(ACME)
    )
    costs = {c.provider: Decimal(c.estimated_cost_usd) for c in reply.candidates}
    assert costs == {"cloud-cheap": PRIMARY_PER_S * 600, "cloud-dear": FALLBACK_PER_S * 600}
    # No answerer is configured: an empty plan, not an error.
    understand = await stub.ExplainRoute(
        pb.ExplainRouteRequest(operation=pb.OPERATION_UNDERSTAND, audio_duration_s=600.0), metadata=meta(ACME)
    )
    assert not any(c.eligible for c in understand.candidates)


@pytest.mark.parametrize(
    "request_fields",
    [
        {"until": "0001-01-01"},
        {"since": "0001-01-01", "until": "0001-01-05"},
        {"since": "1969-12-31", "until": "1970-01-02"},
    ],
)
async def test_reports_before_the_epoch_are_refused(gateway, request_fields):
    channel, _, _ = gateway
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await report(channel, ADMIN, **request_fields)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "1970-01-01" in caught.value.details()


async def test_a_report_may_end_on_the_last_day_there_is(gateway):
    channel, _, _ = gateway
    last = await report(channel, ADMIN, until="9999-12-31")
    assert (last.since, last.until, last.total.requests) == ("9999-12-01", "9999-12-31", 0)
    first = await report(channel, ADMIN, until="1970-01-10")
    assert (first.since, first.until) == ("1970-01-01", "1970-01-10")
