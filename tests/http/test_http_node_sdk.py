"""The HTTP API from Node: the official ``openai`` npm package, run with node, with only its base URL changed.

The gateway runs in process with fake engines of known output (a transcript, a tone per sentence) and a
tenant key; ``tests/node/openai_sdk.mjs`` transcribes (json and srt), speaks (mp3) and tries a wrong key,
and prints what it got. The assertions are on that output and on the audio file it wrote.
"""

from __future__ import annotations

import itertools
import tempfile
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import srt

from gateway.api.v1 import audio_gateway_pb2 as pb
from gateway.grpc.server import GatewayServer
from gateway.http.server import HttpDoor, http_doors
from policies.loader import hash_key
from providers.testing import FakeSynthesizer, FakeTranscriber
from tests.audio_files import encode, tone
from tests.conftest import local_settings
from tests.encoded_audio import decode_pyav
from tests.node_runner import node_binary, run_node

KEY = "node-openai-key"
TRANSCRIPT = (
    "The quick brown fox jumps over the lazy dog while the farmer watches from the porch. "
    "Meanwhile the soup simmers slowly on the stove, and nobody knows when dinner will be ready."
)
SPOKEN = "Node speaks. Through the gateway."
CLIP_S = 8.0


@pytest.fixture(scope="module")
async def base_url() -> AsyncIterator[str]:
    policies = Path(tempfile.mkdtemp(prefix="gw-node-openai-")) / "policies.yaml"
    policies.write_text(
        "policies:\n  - name: default\n"
        f"tenants:\n  - {{name: acme, key_sha256: {hash_key(KEY)}, default_policy: default}}\n"
    )
    settings = local_settings()
    settings.policies_file = policies
    settings.http.host, settings.http.port = "127.0.0.1", 0
    providers = [FakeTranscriber(text=TRANSCRIPT), FakeSynthesizer()]
    server = GatewayServer(settings, providers=providers, doors=http_doors(settings))
    await server.start()
    await server.wait_ready(10)
    door = server.doors[0]
    assert isinstance(door, HttpDoor)
    yield f"http://127.0.0.1:{door.port}/v1"
    await server.stop(5)


async def test_node_openai_package_transcribes_and_speaks(base_url, tmp_path):
    node = node_binary()
    wav = tmp_path / "speech.wav"
    wav.write_bytes(encode(tone(CLIP_S, hz=440.0), 16_000, "wav"))
    mp3 = tmp_path / "speech.mp3"
    out = await run_node(node, "openai_sdk.mjs", base_url, KEY, str(wav), str(mp3), SPOKEN)

    assert out["transcription"]["text"] == TRANSCRIPT

    cues = list(srt.parse(out["srt"], ignore_errors=False))
    assert len(cues) >= 3  # 175 characters do not fit two 42-column lines
    assert " ".join(c.content.replace("\n", " ") for c in cues).split() == TRANSCRIPT.split()
    assert cues[0].start == timedelta(0) and cues[-1].end == timedelta(seconds=CLIP_S)
    assert all(a.end <= b.start for a, b in itertools.pairwise(cues))

    speech = out["speech"]
    assert speech["contentType"] == "audio/mpeg" and speech["transferEncoding"] == "chunked"
    assert speech["requestId"]
    assert speech["bytes"] == mp3.stat().st_size > 0
    samples, rate, container = decode_pyav(mp3.read_bytes(), pb.AUDIO_FORMAT_MP3, 16_000)
    assert container == "mp3"
    # The fake speaks each of the two sentences as a 0.5 s tone; MP3 adds its encoder delay and padding.
    assert samples.size / rate == pytest.approx(1.0, abs=0.1)
    assert np.abs(samples.astype(np.int32)).max() > 3000

    refused = out["refused"]
    assert (refused["name"], refused["status"]) == ("AuthenticationError", 401)
    assert "API key" in refused["message"]
