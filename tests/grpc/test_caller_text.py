"""One caller's bad text is that caller's error: it never reaches the engine, nor trips the shared breaker."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest

from gateway.api.v1 import audio_gateway_pb2 as pb
from gateway.api.v1 import audio_gateway_pb2_grpc
from gateway.api.v1 import common_pb2 as common
from gateway.core.errors import ProviderInputError
from gateway.core.provider_types import SynthesizeOptions
from gateway.grpc.server import GatewayServer
from gateway.settings import Settings
from policies.loader import hash_key
from providers.piper import PiperSynthesizer
from tests.audio_files import encode, tone
from tests.conftest import local_settings

pytestmark = pytest.mark.engines

MALLORY, ALICE = "mallory-key", "alice-key"


def key(api_key: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {api_key}"),)


@pytest.fixture(scope="module")
async def gateway(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[tuple[GatewayServer, audio_gateway_pb2_grpc.AudioGatewayStub]]:
    policies = tmp_path_factory.mktemp("caller-text") / "policies.yaml"
    policies.write_text(
        "policies:\n  - name: default\n"
        "tenants:\n"
        f"  - {{name: mallory, key_sha256: {hash_key(MALLORY)}, default_policy: default}}\n"
        f"  - {{name: alice, key_sha256: {hash_key(ALICE)}, default_policy: default}}\n"
    )
    settings = local_settings()
    settings.whisper.enabled = settings.llama.enabled = False
    settings.policies_file = policies
    settings.breaker.failure_threshold = 5
    server = GatewayServer(settings)
    await server.start()
    await server.wait_ready(timeout_s=120)
    assert not server.app.catalogue.failures, server.app.catalogue.failures
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield server, audio_gateway_pb2_grpc.AudioGatewayStub(channel)
    await server.stop(grace_s=1)


async def test_five_texts_with_a_nul_are_invalid_and_the_tts_breaker_stays_closed(gateway):
    server, stub = gateway
    for n in range(5):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Synthesize(pb.SynthesizeRequest(text=f"Hello\x00 number {n}."), metadata=key(MALLORY))
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "text contains the control character U+0000 at position 5" in caught.value.details()
    health = server.app.health.snapshot().get("piper")
    assert health is None or (health.state.value == "closed" and health.failures == 0)
    # Another tenant is still served by the engine the first one tried to break.
    reply = await stub.Synthesize(pb.SynthesizeRequest(text="Good morning."), metadata=key(ALICE))
    assert reply.route.provider == "piper" and reply.duration_s > 0.3


@pytest.mark.parametrize(
    ("call", "message"),
    [
        ("synthesize-escape", "text contains the control character U+001B at position 3"),
        ("synthesize-c1", "text contains the control character U+0085 at position 1"),
        ("understand-nul", "question contains the control character U+0000 at position 3"),
        ("transcribe-prompt", "prompt contains the control character U+0007 at position 0"),
    ],
)
async def test_control_characters_are_refused_with_where_they_are(gateway, call, message):
    _, stub = gateway
    audio = common.Audio(content=encode(tone(1.0), 16_000, "wav"))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        if call == "synthesize-escape":
            await stub.Synthesize(pb.SynthesizeRequest(text="Hi \x1b[31mred"), metadata=key(ALICE))
        elif call == "synthesize-c1":
            await stub.Synthesize(pb.SynthesizeRequest(text="a\x85b"), metadata=key(ALICE))
        elif call == "understand-nul":
            await stub.Understand(
                pb.UnderstandRequest(audio=audio, question="Who\x00 spoke?"), metadata=key(ALICE)
            )
        else:
            await stub.Transcribe(pb.TranscribeRequest(audio=audio, prompt="\x07ding"), metadata=key(ALICE))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in caught.value.details()


async def test_ordinary_whitespace_is_spoken(gateway):
    _, stub = gateway
    reply = await stub.Synthesize(
        pb.SynthesizeRequest(text="First line.\n\tSecond line.\r\nThird."), metadata=key(ALICE)
    )
    assert reply.route.provider == "piper" and reply.duration_s > 1.0


async def test_the_engine_refusing_text_is_the_callers_error_not_the_engines():
    # Past the gateway's own check (another door, or a future one), piper's refusal is still input.
    piper = PiperSynthesizer(Settings().piper)
    await piper.start()
    try:
        with pytest.raises(ProviderInputError, match="cannot take"):
            await piper.synthesize("Hello\x00world", SynthesizeOptions(), timeout_s=30)
    finally:
        await piper.close()
