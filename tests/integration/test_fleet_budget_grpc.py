"""Three gateway processes sharing one Redis hold a tenant to its monthly budget, end to end over gRPC."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import grpc
import pytest

from gateway.api.v1 import audio_gateway_pb2 as pb
from gateway.api.v1 import audio_gateway_pb2_grpc as pb_grpc
from gateway.api.v1 import common_pb2 as common
from policies.loader import hash_key
from tests.audio_files import encode, tone

ROOT = Path(__file__).resolve().parents[2]
KEY = "fleet-tenant-key"


@pytest.fixture
def fleet(tmp_path, redis_url):
    policies = tmp_path / "policies.yaml"
    policies.write_text(
        "policies:\n  - name: default\n"
        f"tenants:\n  - name: fleet\n    key_sha256: {hash_key(KEY)}\n    default_policy: default\n"
        '    monthly_budget_usd: "0.50"\n'
    )
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "PREFIX": f"test:{uuid.uuid4().hex}:",
        "POLICIES_FILE": str(policies),
        "PRICE_PER_S": "0.01",
        "DELAY_S": "0.05",
        "PYTHONPATH": str(ROOT),
    }
    procs = [
        subprocess.Popen(
            [sys.executable, str(ROOT / "tests" / "integration" / "fleet_gateway.py")],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    try:
        ports = [json.loads(proc.stdout.readline())["port"] for proc in procs]
        yield ports
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)


async def test_two_hundred_requests_over_three_replicas_admit_fifty(fleet):
    clip = common.Audio(content=encode(tone(1.0), 16_000, "wav"))  # 1 s at $0.01/s: $0.50 buys 50
    channels = [grpc.aio.insecure_channel(f"127.0.0.1:{port}") for port in fleet]
    stubs = [pb_grpc.AudioGatewayStub(channel) for channel in channels]
    metadata = (("authorization", f"Bearer {KEY}"),)

    async def one(index: int) -> grpc.StatusCode:
        try:
            # Identical requests would be cache hits, which cost nothing: bypass the cache.
            request = pb.TranscribeRequest(
                audio=clip, routing=common.RoutingOptions(cache=common.CACHE_MODE_BYPASS)
            )
            await stubs[index % 3].Transcribe(request, metadata=metadata, timeout=60)
        except grpc.aio.AioRpcError as exc:
            return exc.code()
        return grpc.StatusCode.OK

    try:
        codes = await asyncio.gather(*(one(i) for i in range(200)))
        explained = await stubs[0].ExplainRoute(
            pb.ExplainRouteRequest(operation=pb.OPERATION_TRANSCRIBE, audio_duration_s=1.0), metadata=metadata
        )
    finally:
        for channel in channels:
            await channel.close()
    admitted = codes.count(grpc.StatusCode.OK)
    assert admitted in (50, 51), admitted
    assert set(codes) == {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}
    assert explained.remaining_budget_usd in ("0", "0.01")
    assert "budget" in next(c.rejected_reason for c in explained.candidates)
