"""Policy files: validation with file:line errors, tenants, authentication, and safe reloads."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway.api.v1 import audio_gateway_pb2 as pb
from gateway.api.v1 import audio_gateway_pb2_grpc as pb_grpc
from gateway.api.v1 import common_pb2 as common
from gateway.core.errors import Unauthenticated
from gateway.grpc.server import GatewayServer
from gateway.routing.auth import authenticate
from gateway.routing.policy_store import PRESETS, PolicyStore
from policies.loader import PolicyFileError, hash_key, load_policy_file
from providers.testing import FakeSynthesizer
from tests.conftest import local_settings

ACME_KEY = "acme-secret-key"
FILE = f"""\
policies:
  - name: default
    objective: cost
  - name: private
    privacy: local_only
  - name: premium
    objective: quality
tenants:
  - name: acme
    key_sha256: {hash_key(ACME_KEY)}
    default_policy: default
    policies: [private]
    monthly_budget_usd: "50"
"""


def write(tmp_path, text, name="policies.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_presets_load_and_leave_auth_off():
    book = load_policy_file(PRESETS)
    assert {"default", "private", "on-prem", "fastest", "accurate", "no-retention"} <= set(book.policies)
    assert not book.auth_required
    anonymous = authenticate(book, ())
    assert anonymous.name == "anonymous" and anonymous.default_policy == "default"
    assert all(anonymous.may_use(name) for name in book.policies)


def test_the_attempt_share_is_read_from_the_file_and_defaults_to_half(tmp_path):
    book = load_policy_file(write(tmp_path, "policies:\n  - name: a\n    attempt_share: 0.8\n  - name: b\n"))
    assert book.policies["a"].attempt_share == 0.8
    assert book.policies["b"].attempt_share == 0.5
    assert load_policy_file(PRESETS).policies["default"].attempt_share == 0.5


def test_tenants_are_found_by_key_hash_only(tmp_path):
    book = load_policy_file(write(tmp_path, FILE))
    acme = book.tenant_for_key(ACME_KEY)
    assert (
        acme is not None and acme.name == "acme" and acme.may_use("private") and not acme.may_use("premium")
    )
    assert ACME_KEY not in repr(book)
    assert book.tenant_for_key("acme-secret-kez") is None


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ((), "missing API key"),
        ((("authorization", "Basic abc"),), "expected 'Bearer <key>'"),
        ((("authorization", "Bearer nope"),), "unknown API key"),
    ],
)
def test_authentication_failures(tmp_path, metadata, message):
    book = load_policy_file(write(tmp_path, FILE))
    with pytest.raises(Unauthenticated, match=message):
        authenticate(book, metadata)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("policies: []\n", "non-empty top-level 'policies:' list"),
        ("policies:\n  - name: a\n  - name: b\n    privacy: secret\n", "policies.yaml:3: privacy:"),
        ("policies:\n  - name: a\n  - name: a\n", "policies.yaml:3: policy 'a' is declared twice"),
        ("policies:\n  - name: a\n    max_attempts: 0\n", "policies.yaml:2: max_attempts:"),
        ("policies:\n  - name: a\n    attempt_share: 0\n", "policies.yaml:2: attempt_share:"),
        ("policies:\n  - name: a\n    attempt_share: 1.5\n", "policies.yaml:2: attempt_share:"),
        (
            "policies:\n  - name: a\ntenants:\n  - name: t\n    key_sha256: "
            + "a" * 64
            + "\n    default_policy: b\n",
            "policies.yaml:4: tenant 't' names unknown policies b",
        ),
        (
            "policies:\n  - name: a\ntenants:\n  - name: t\n    key_sha256: xyz\n    default_policy: a\n",
            "key_sha256",
        ),
        ("policies:\n  - name: a\nbudgets: {}\n", "unknown top-level key(s) budgets"),
    ],
)
def test_bad_files_name_the_line_and_the_problem(tmp_path, text, message):
    with pytest.raises(PolicyFileError) as caught:
        load_policy_file(write(tmp_path, text))
    assert message in str(caught.value)


def test_a_bad_reload_keeps_the_old_book(tmp_path):
    path = write(tmp_path, FILE)
    store = PolicyStore(path)
    path.write_text("policies:\n  - name: default\n    privacy: everywhere\n")
    assert store.reload() is False
    assert "private" in store.book.policies and store.book.auth_required
    path.write_text("policies:\n  - name: default\n  - name: brand-new\n")
    assert store.reload() is True
    assert set(store.book.policies) == {"default", "brand-new"} and not store.book.auth_required


async def test_the_watcher_picks_up_a_changed_file(tmp_path):
    path = write(tmp_path, FILE)
    store = PolicyStore(path)
    stop = asyncio.Event()
    watcher = asyncio.create_task(store.watch(0.05, stop))
    await asyncio.sleep(0.1)
    path.write_text("policies:\n  - name: default\n  - name: later\n")
    for _ in range(100):
        if "later" in store.book.policies:
            break
        await asyncio.sleep(0.05)
    stop.set()
    await watcher
    assert "later" in store.book.policies


async def test_grpc_auth_and_policy_permissions(tmp_path):
    settings = local_settings()
    settings.policies_file = write(tmp_path, FILE)
    server = GatewayServer(settings, providers=[FakeSynthesizer()])
    port = await server.start()
    await server.wait_ready(5)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.AudioGatewayStub(channel)
            request = pb.SynthesizeRequest(text="Hi.")
            for metadata in [(), (("authorization", "Bearer wrong"),)]:
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await stub.Synthesize(request, metadata=metadata)
                assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
            key = (("authorization", f"Bearer {ACME_KEY}"),)
            reply = await stub.Synthesize(request, metadata=key)
            assert reply.route.policy == "default"
            private = pb.SynthesizeRequest(text="Hi.", routing=common.RoutingOptions(policy="private"))
            assert (await stub.Synthesize(private, metadata=key)).route.policy == "private"
            premium = pb.SynthesizeRequest(text="Hi.", routing=common.RoutingOptions(policy="premium"))
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.Synthesize(premium, metadata=key)
            assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert "may not use policy 'premium'" in caught.value.details()
            # Probes carry no key.
            health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
            assert health.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        await server.stop(1)
