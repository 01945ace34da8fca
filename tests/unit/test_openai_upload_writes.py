"""The OpenAI adapter hands its transport an upload as one piece, which then leaves in one write."""

from __future__ import annotations

import httpx2

from gateway.core.provider_types import TranscribeOptions
from providers.config import ProviderConfig
from providers.openai import OpenAIProvider
from tests.audio_files import MIME, encode, recording, tone


class _RecordingTransport(httpx2.AsyncBaseTransport):
    """Reads each request body chunk by chunk, as the network transport writes it to the socket."""

    def __init__(self) -> None:
        self.bodies: list[list[bytes]] = []

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        assert isinstance(request.stream, httpx2.AsyncByteStream)
        self.bodies.append([chunk async for chunk in request.stream])
        body = {"text": "hi", "language": "english", "duration": 1.0, "segments": []}
        return httpx2.Response(200, json=body)


async def test_a_transcription_upload_reaches_the_transport_as_one_chunk():
    config = ProviderConfig.model_validate(
        {
            "name": "openai-transcribe",
            "kind": "openai",
            "operation": "transcribe",
            "model": "whisper-1",
            "base_url": "http://127.0.0.1:9/v1",
            "api_key": "sk-test",
        }
    )
    provider = OpenAIProvider(config)
    vendor = _RecordingTransport()
    # The SDK's own client, with only its network transport swapped for one that records the body.
    provider._client._client._transport = vendor
    audio = recording(encode(tone(1.0), 16_000, "wav"), MIME["wav"])
    transcript = await provider.transcribe(audio, TranscribeOptions(language="en"), 10.0)

    assert transcript.text == "hi"
    [chunks] = vendor.bodies
    # A multipart stream would yield each boundary, header block and field on its own (one socket write
    # each); joined, the server reads the upload in one go.
    assert len(chunks) == 1
    assert audio.original in chunks[0]
    await provider.close()
