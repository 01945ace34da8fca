"""SIGHUP re-reads the policy file; a bad file is refused and the old policies stay in force."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import grpc
import pytest

from gateway.api.v1 import audio_gateway_pb2 as pb
from gateway.api.v1 import audio_gateway_pb2_grpc as pb_grpc
from gateway.api.v1 import common_pb2 as common
from tests.redis_servers import free_port


def explain(stub: pb_grpc.AudioGatewayStub, policy: str) -> pb.ExplainRouteResponse:
    request = pb.ExplainRouteRequest(
        operation=pb.OPERATION_TRANSCRIBE, audio_duration_s=1.0, routing=common.RoutingOptions(policy=policy)
    )
    return stub.ExplainRoute(request, timeout=5)


def eventually(check, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if check():
                return
        except grpc.RpcError:
            pass
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.1)


def test_sighup_reloads_valid_policies_and_keeps_them_over_a_bad_file(tmp_path):
    policies = tmp_path / "policies.yaml"
    policies.write_text("policies:\n  - name: default\n")
    port = free_port()
    env = {
        **os.environ,
        "GATEWAY_SERVER__HOST": "127.0.0.1",
        "GATEWAY_SERVER__PORT": str(port),
        "GATEWAY_METRICS__ENABLED": "false",
        "GATEWAY_HTTP__ENABLED": "false",
        "GATEWAY_POLICIES_FILE": str(policies),
        # Only the signal may trigger a reload in this test.
        "GATEWAY_POLICIES_RELOAD_INTERVAL_S": "3600",
        "GATEWAY_WHISPER__ENABLED": "false",
        "GATEWAY_PIPER__ENABLED": "false",
        "GATEWAY_LLAMA__ENABLED": "false",
        "GATEWAY_LEDGER__SPOOL_DIR": str(tmp_path / "spool"),
        "GATEWAY_REDIS__URL": "none",  # not the embedded store in the home directory
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli.main", "serve"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        stub = pb_grpc.AudioGatewayStub(grpc.insecure_channel(f"127.0.0.1:{port}"))
        eventually(lambda: explain(stub, "default").policy == "default", timeout_s=60)
        with pytest.raises(grpc.RpcError) as caught:
            explain(stub, "later")
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT

        policies.write_text("policies:\n  - name: default\n  - name: later\n    objective: latency\n")
        proc.send_signal(signal.SIGHUP)
        eventually(lambda: explain(stub, "later").objective == common.OBJECTIVE_LATENCY)

        policies.write_text("policies:\n  - name: default\n    privacy: everywhere\n")
        proc.send_signal(signal.SIGHUP)
        time.sleep(0.5)
        assert explain(stub, "later").objective == common.OBJECTIVE_LATENCY
        assert proc.poll() is None
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0
