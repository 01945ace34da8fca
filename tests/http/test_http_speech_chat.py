"""/v1/audio/speech and /v1/chat/completions driven by the official ``openai`` Python SDK, against the gateway
with its real local engines (piper speaks, whisper listens, llama.cpp answers)."""

from __future__ import annotations

import base64
import json

import openai
import pytest

from gateway.api.v1 import audio_gateway_pb2 as pb
from gateway.grpc.server import GatewayServer
from gateway.http.server import HttpDoor
from tests import speech
from tests.encoded_audio import decode_ffmpeg, decode_pyav, slack_s, wav_seconds

pytestmark = pytest.mark.engines

TEXT = "Please bring the budget report. The meeting moved to Thursday! Is the room booked?"
SENTENCES = 3
# OpenAI's response_format → (the gateway's proto format for the decoders, content type, rate or 0: native).
SPEECH_FORMATS = {
    "mp3": (pb.AUDIO_FORMAT_MP3, "audio/mpeg", 0),
    "opus": (pb.AUDIO_FORMAT_OGG_OPUS, "audio/ogg", 0),
    "aac": (pb.AUDIO_FORMAT_AAC, "audio/aac", 0),
    "flac": (pb.AUDIO_FORMAT_FLAC, "audio/flac", 0),
    "wav": (pb.AUDIO_FORMAT_WAV, "audio/wav", 0),
    "pcm": (pb.AUDIO_FORMAT_PCM16, "audio/L16", 24_000),
}


@pytest.fixture(scope="module")
def base_url(engine_server: GatewayServer) -> str:
    door = engine_server.doors[0]
    assert isinstance(door, HttpDoor)
    return f"http://127.0.0.1:{door.port}/v1"


@pytest.fixture
async def client(base_url: str):
    # The engine server has no tenants: any key is anonymous. No SDK retries: one call, one request.
    async with openai.AsyncOpenAI(base_url=base_url, api_key="sk-any", max_retries=0, timeout=120) as sdk:
        yield sdk


async def _transcribe_http(client: openai.AsyncOpenAI, wav: bytes) -> str:
    result = await client.audio.transcriptions.create(
        file=("speech.wav", wav, "audio/wav"), model="whisper-1", language="en"
    )
    return result.text


# -- speech ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SPEECH_FORMATS)
async def test_speech_streams_every_format_as_one_playable_file(client, name):
    fmt, content_type, fixed_rate = SPEECH_FORMATS[name]
    pieces: list[bytes] = []
    async with client.audio.speech.with_streaming_response.create(
        model="tts-1", voice="alloy", input=TEXT, response_format=name
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith(content_type)
        # Chunked transfer as the audio is produced: no length is known when the headers leave.
        assert response.headers.get("transfer-encoding") == "chunked"
        assert "content-length" not in response.headers
        async for piece in response.iter_bytes():
            pieces.append(piece)
    audio = b"".join(pieces)
    rate = fixed_rate or 22050
    if fmt == pb.AUDIO_FORMAT_OGG_OPUS:
        rate = 24000  # piper's 22.05 kHz is not an Opus rate: the next one up
    samples, decoded_rate, _ = decode_pyav(audio, fmt, rate)
    seconds = samples.size / decoded_rate
    assert 3.0 < seconds < 12.0
    wav = decode_ffmpeg(audio, fmt, rate)
    assert wav_seconds(wav) == pytest.approx(seconds, abs=slack_s(fmt, rate))
    # Piper samples noise, so what tiny.en hears varies from run to run; a lost or repeated sentence costs
    # at least four of the fourteen words ("Is the room booked?"), mishearing fewer.
    assert speech.wer([TEXT], [await _transcribe_http(client, wav)]) < 4 / 14


async def test_speech_as_server_sent_events(client):
    events = []
    async with client.audio.speech.with_streaming_response.create(
        model="tts-1", voice="nova", input=TEXT, response_format="wav", stream_format="sse"
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        async for line in response.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line.removeprefix("data: ")))
    deltas = [e for e in events if e["type"] == "speech.audio.delta"]
    assert events[-1]["type"] == "speech.audio.done" and events[:-1] == deltas
    assert len(deltas) >= SENTENCES  # piper speaks sentence by sentence, each leaves as it is ready
    audio = b"".join(base64.b64decode(e["audio"]) for e in deltas)
    samples, rate, container = decode_pyav(audio, pb.AUDIO_FORMAT_WAV, 22050)
    assert container == "wav" and 3.0 < samples.size / rate < 12.0


async def test_speech_speed_changes_the_length(client):
    async def seconds(speed: float) -> float:
        response = await client.audio.speech.create(
            model="tts-1",
            voice="alloy",
            input="Hello there, nice to meet you.",
            response_format="pcm",
            speed=speed,
        )
        return len(response.content) / 2 / 24_000

    assert await seconds(0.5) > await seconds(1.0) * 1.5


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"response_format": "ogg"}, "response_format"),
        ({"speed": 5.0}, "speed"),
        ({"input": ""}, None),
        ({"voice": "no-such-voice"}, None),
        ({"extra_body": {"sample_rate": 8000}}, "sample_rate"),
    ],
)
async def test_speech_refusals_are_openai_errors(client, fields, param):
    request = {"model": "tts-1", "voice": "alloy", "input": "Hello.", **fields}
    with pytest.raises(openai.BadRequestError) as caught:
        await client.audio.speech.create(**request)
    error = caught.value.body
    assert isinstance(error, dict) and error["type"] == "invalid_request_error" and error["message"]
    if param is not None:
        assert error["param"] == param
    if fields.get("voice") == "no-such-voice":
        assert "no-such-voice" in error["message"]


# -- chat completions --------------------------------------------------------------------------------------

QUESTION = "On which day is the meeting?"


@pytest.fixture(scope="module")
def recording() -> str:
    clip = speech.piper_wav("The meeting moved to Thursday afternoon. Please bring the budget report.")
    return base64.b64encode(clip).decode()


def _messages(recording: str, question: str = QUESTION) -> list[dict]:
    return [
        {"role": "system", "content": "Answer briefly."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": question},
                {"type": "input_audio", "input_audio": {"data": recording, "format": "wav"}},
            ],
        },
    ]


async def test_chat_completion_answers_about_the_recording(client, recording):
    raw = await client.chat.completions.with_raw_response.create(
        model="gpt-4o-audio-preview", messages=_messages(recording), max_completion_tokens=40
    )
    completion = raw.parse()
    assert completion.object == "chat.completion"
    [choice] = completion.choices
    assert choice.message.role == "assistant" and choice.message.content.strip()
    assert choice.finish_reason == "stop"
    assert completion.usage is not None
    assert 0 < completion.usage.completion_tokens <= 40
    assert (
        completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens
    )
    assert raw.headers["x-gateway-provider"] == "llama-cpp"
    assert raw.headers["x-gateway-attempts"] == "2"  # the transcription, then the answer
    assert completion.id == f"chatcmpl-{raw.headers['x-request-id']}"


async def test_chat_completion_streams_chunks_ending_with_done(client, recording, base_url):
    stream = await client.chat.completions.create(
        model="gpt-4o-audio-preview",
        messages=_messages(recording),
        max_completion_tokens=40,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert len({c.id for c in chunks}) == 1
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert content.strip()
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert (
        chunks[-1].choices == [] and chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    )
    # The wire ends with OpenAI's terminator, which the SDK consumed.
    import httpx

    body = {"model": "m", "messages": _messages(recording), "stream": True, "max_tokens": 8}
    async with (
        httpx.AsyncClient(timeout=120) as http,
        http.stream("POST", f"{base_url}/chat/completions", json=body) as response,
    ):
        lines = [line async for line in response.aiter_lines() if line]
    assert lines[-1] == "data: [DONE]"


async def test_chat_without_audio_is_refused_clearly(client):
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(
            model="gpt-4o-audio-preview", messages=[{"role": "user", "content": "Hello?"}]
        )
    assert "input_audio" in caught.value.body["message"]


@pytest.mark.parametrize(
    ("mutate", "param"),
    [
        (lambda m: m[1]["content"].append(dict(m[1]["content"][1])), "messages[1].content[2].input_audio"),
        (
            lambda m: m[1]["content"][1]["input_audio"].update(data="***"),
            "messages[1].content[1].input_audio.data",
        ),
        (
            lambda m: m[1]["content"][1]["input_audio"].update(format="mid"),
            "messages[1].content[1].input_audio.format",
        ),
        (lambda m: m[1]["content"].pop(0), "messages[1].content"),
        (
            lambda m: m[1]["content"].append({"type": "image_url", "image_url": {"url": "x"}}),
            "messages[1].content[2].type",
        ),
    ],
)
async def test_chat_refusals_name_the_field(client, recording, mutate, param):
    messages = _messages(recording)
    mutate(messages)
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(model="gpt-4o-audio-preview", messages=messages)
    assert caught.value.body["param"] == param
