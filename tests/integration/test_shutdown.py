"""SIGTERM drains: in-flight calls finish, new calls are refused, the process exits cleanly."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway.api.v1 import audio_gateway_pb2 as pb
from gateway.api.v1 import audio_gateway_pb2_grpc as pb_grpc
from gateway.api.v1 import common_pb2 as common
from tests import speech

pytestmark = pytest.mark.engines


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _transcriptions_in_flight(metrics_port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=2) as reply:
        for line in reply.read().decode().splitlines():
            if line.startswith('audio_gateway_in_flight{operation="transcribe"}'):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_sigterm_lets_an_inflight_transcription_finish(tmp_path):
    port = _free_port()
    while (metrics_port := _free_port()) == port:
        pass
    env = {
        **os.environ,
        "GATEWAY_SERVER__HOST": "127.0.0.1",
        "GATEWAY_SERVER__PORT": str(port),
        "GATEWAY_SERVER__SHUTDOWN_GRACE_S": "60",
        "GATEWAY_LOG__FORMAT": "json",
        "GATEWAY_METRICS__HOST": "127.0.0.1",
        "GATEWAY_METRICS__PORT": str(metrics_port),
        "GATEWAY_HTTP__HOST": "127.0.0.1",
        "GATEWAY_HTTP__PORT": "0",
        "GATEWAY_LEDGER__SPOOL_DIR": str(tmp_path / "spool"),
        "GATEWAY_REDIS__URL": "none",  # not the embedded store in the home directory
    }
    log_path = tmp_path / "server.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli.main", "serve"], env=env, stdout=log, stderr=log
        )
    try:
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        health = health_pb2_grpc.HealthStub(channel)
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, log_path.read_text()
            try:
                if health.Check(health_pb2.HealthCheckRequest(), timeout=2).status == 1:
                    break
            except grpc.RpcError:
                pass
            assert time.monotonic() < deadline, "server never became SERVING"
            time.sleep(0.5)

        # A long recording (several seconds of work even on a fast node). SIGTERM goes out as soon
        # as the gateway has admitted the call, so the test does not depend on this node's speed.
        clip = speech.piper_wav(" ".join(speech.SENTENCES * 6))
        stub = pb_grpc.AudioGatewayStub(channel)
        future = stub.Transcribe.future(pb.TranscribeRequest(audio=common.Audio(content=clip)), timeout=120)
        while _transcriptions_in_flight(metrics_port) < 1:
            assert not future.done(), future
            time.sleep(0.02)
        assert not future.done(), "the transcription finished before SIGTERM; use a longer clip"
        proc.send_signal(signal.SIGTERM)
        reply = future.result()
        assert "fox" in reply.text.lower()
        assert proc.wait(timeout=60) == 0
        assert b"server.draining" in log_path.read_bytes()
        # Once serving, the process took its start-up objects out of the collector's reach.
        assert b"runtime.gc_frozen" in log_path.read_bytes()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
