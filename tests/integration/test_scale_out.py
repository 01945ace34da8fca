"""Several gateway processes sharing one Redis behave as one system: cache, ledger, and a replica's death."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import grpc
import pytest
from redis.asyncio import Redis

from gateway.api.v1 import audio_gateway_pb2 as pb
from gateway.api.v1 import audio_gateway_pb2_grpc as pb_grpc
from gateway.api.v1 import common_pb2 as common
from gateway.ledger.store import Ledger
from gateway.settings import LedgerSettings
from tests.audio_files import encode, tone

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def fleet(tmp_path, redis_url):
    prefix = f"test:{uuid.uuid4().hex}:"
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "PREFIX": prefix,
        "PRICE_PER_S": "0.001",
        "DELAY_S": "0.3",
        "PYTHONPATH": str(ROOT),
    }
    procs = []
    for index in range(3):
        replica_env = {**env, "SPOOL_DIR": str(tmp_path / f"spool-{index}")}
        procs.append(
            subprocess.Popen(
                [sys.executable, str(ROOT / "tests" / "integration" / "fleet_gateway.py")],
                env=replica_env,
                stdout=subprocess.PIPE,
                text=True,
            )
        )
    try:
        ports = [json.loads(proc.stdout.readline())["port"] for proc in procs]
        yield prefix, procs, ports
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)


def clip(n: int) -> common.Audio:
    return common.Audio(content=encode(tone(0.5, hz=300.0 + n), 16_000, "wav"))


async def test_replicas_share_the_cache_and_the_ledger_and_lose_nothing_acknowledged(
    fleet, redis_url, tmp_path
):
    prefix, procs, ports = fleet
    channels = [grpc.aio.insecure_channel(f"127.0.0.1:{port}") for port in ports]
    stubs = [pb_grpc.AudioGatewayStub(c) for c in channels]
    acknowledged: list[str] = []

    # A result computed by one replica is a hit on another.
    first = await stubs[0].Transcribe(pb.TranscribeRequest(audio=clip(0)))
    again = await stubs[1].Transcribe(pb.TranscribeRequest(audio=clip(0)))
    assert not first.route.cache_hit and again.route.cache_hit
    assert again.route.saved_usd == first.route.cost_usd != "0"
    acknowledged += [first.route.request_id, again.route.request_id]

    # Requests spread over the fleet.
    replies = await asyncio.gather(
        *(stubs[n % 3].Transcribe(pb.TranscribeRequest(audio=clip(n))) for n in range(1, 31))
    )
    acknowledged += [r.route.request_id for r in replies]

    # Kill a replica with requests in flight: what it answered before dying is in the ledger.
    async def to_victim(n: int) -> str | None:
        try:
            return (
                await stubs[2].Transcribe(pb.TranscribeRequest(audio=clip(n)), timeout=20)
            ).route.request_id
        except grpc.aio.AioRpcError:
            return None

    in_flight = []
    for n in range(100, 140):  # a steady stream, so some are answered and some cut off
        in_flight.append(asyncio.create_task(to_victim(n)))
        await asyncio.sleep(0.03)
        if n == 120:
            procs[2].send_signal(signal.SIGKILL)
    outcomes = await asyncio.gather(*in_flight)
    victim_answers = [rid for rid in outcomes if rid]
    assert victim_answers and None in outcomes, "the kill should land mid-stream"
    acknowledged += victim_answers
    for channel in channels:
        await channel.close()

    redis = Redis.from_url(redis_url)
    ledger = Ledger(redis, prefix, tmp_path / "reader-spool", LedgerSettings())
    deadline = time.monotonic() + 20
    while True:
        stored = [r.request_id for r in await ledger.request_records(0, time.time() + 60)]
        if set(acknowledged) <= set(stored) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    await redis.aclose()
    assert len(stored) == len(set(stored)), "a request was recorded twice"
    missing = set(acknowledged) - set(stored)
    assert not missing, f"{len(missing)} acknowledged requests have no ledger record"
