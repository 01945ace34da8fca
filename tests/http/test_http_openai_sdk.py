"""The OpenAI-compatible HTTP API, driven by the official ``openai`` Python SDK (base_url + api_key), with
OpenAI's wire fake behind the gateway reached through the same SDK."""

from __future__ import annotations

import asyncio
import calendar
import io
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal

import grpc
import httpx
import openai
import pytest
import srt
import webvtt
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from openapi_spec_validator import validate

from gateway.api.v1 import audio_gateway_pb2 as pb
from gateway.api.v1 import audio_gateway_pb2_grpc as pb_grpc
from gateway.api.v1 import common_pb2 as common
from gateway.api.v1 import cost_reports_pb2 as reports_pb
from gateway.api.v1 import cost_reports_pb2_grpc as reports_grpc
from gateway.money.pricing import PriceList, default_price_list_path
from tests.fakes.openai_server import parse_form
from tests.http.http_gateway import (
    ACME,
    ADMIN,
    AUDIO_LIMIT,
    FRUGAL,
    GLOBEX,
    VENDOR_KEY,
    HttpGateway,
    fresh_clip,
    http_gateway,
)

# The SDK marks audio.translations deprecated; it is what OpenAI-speaking programs still call.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
WHISPER = "whisper-1"


@pytest.fixture(scope="module")
async def gw(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> AsyncIterator[HttpGateway]:
    async with http_gateway(tmp_path_factory.mktemp("http"), redis_url) as gateway:
        yield gateway


@pytest.fixture(autouse=True)
def _clean(gw: HttpGateway) -> None:
    gw.fake.reset()


def upload(data: bytes, name: str = "speech.wav") -> tuple[str, bytes, str]:
    return (name, data, "audio/wav")


def sent_form(gw: HttpGateway, path: str):
    [request] = [r for r in gw.fake.requests if r.path == path]
    assert request.headers["authorization"] == f"Bearer {VENDOR_KEY}"
    return parse_form(request)


# -- transcriptions ----------------------------------------------------------------------------------------


async def test_json_is_the_vendors_text_and_the_route_is_in_headers(gw):
    async with gw.client() as client:
        raw = await client.audio.transcriptions.with_raw_response.create(
            file=upload(fresh_clip(2.0)), model=WHISPER, language="en", prompt="Fox, dog"
        )
    result = raw.parse()
    assert result.text == gw.fake.transcript
    assert result.usage is not None and result.usage.seconds == 2
    form = sent_form(gw, "/v1/audio/transcriptions")
    assert (form.value("language"), form.value("prompt")) == ("en", "Fox, dog")
    headers = raw.headers
    assert headers["x-gateway-provider"] == "openai-whisper" and headers["x-gateway-model"] == "whisper-1"
    assert headers["x-gateway-policy"] == "default" and headers["x-gateway-cache-hit"] == "false"
    per_second = PriceList.load(default_price_list_path()).prices["openai/whisper-1"].per_audio_second
    assert Decimal(headers["x-gateway-cost-usd"]) == pytest.approx(per_second * 2, rel=1e-6)
    # The SDK exposes the gateway's request id.
    assert raw.request_id and raw.request_id == headers["x-request-id"]


async def test_text_format_is_plain_text(gw):
    async with gw.client() as client:
        text = await client.audio.transcriptions.create(
            file=upload(fresh_clip()), model=WHISPER, response_format="text"
        )
    assert isinstance(text, str) and text.strip() == gw.fake.transcript


async def test_verbose_json_has_segments_language_and_duration(gw):
    async with gw.client() as client:
        result = await client.audio.transcriptions.create(
            file=upload(fresh_clip(3.0)), model=WHISPER, response_format="verbose_json"
        )
    assert result.language == "english" and result.duration == pytest.approx(3.0, abs=0.01)
    assert result.text == gw.fake.transcript
    assert [s.text for s in result.segments] == [
        "The quick brown fox jumps over the lazy dog.",
        "It was not amused.",
    ]
    assert [s.id for s in result.segments] == [0, 1]
    assert result.segments[0].start == 0 and result.segments[-1].end == pytest.approx(3.0, abs=0.01)
    assert result.words is None
    assert sent_form(gw, "/v1/audio/transcriptions").value("response_format") == "verbose_json"


async def test_word_timestamps_come_back_when_asked_for(gw):
    async with gw.client() as client:
        result = await client.audio.transcriptions.create(
            file=upload(fresh_clip(2.0)),
            model=WHISPER,
            response_format="verbose_json",
            timestamp_granularities=["word", "segment"],
        )
        words_only = await client.audio.transcriptions.create(
            file=upload(fresh_clip(2.0)),
            model=WHISPER,
            response_format="verbose_json",
            timestamp_granularities=["word"],
        )
    expected = [w.strip(".") for w in gw.fake.transcript.split()]
    assert [w.word for w in result.words] == expected
    starts = [w.start for w in result.words]
    assert starts == sorted(starts) and result.words[-1].end == pytest.approx(2.0, abs=0.01)
    assert len(result.segments) == 2
    # As OpenAI does: word timings alone leave the segments out.
    assert [w.word for w in words_only.words] == expected and words_only.segments is None
    forms = [parse_form(r) for r in gw.fake.requests]
    assert all("word" in f.fields["timestamp_granularities[]"] for f in forms)


def _cues(document: str, fmt: str = "srt") -> list[tuple[float, float, list[str]]]:
    """(start, end, lines) of each cue, read back by subtitle parsers that are not the gateway's."""
    if fmt == "vtt":
        return [
            (
                c.start_in_seconds + c.start_time.milliseconds / 1000,
                c.end_in_seconds + c.end_time.milliseconds / 1000,
                c.lines,
            )
            for c in webvtt.from_buffer(io.StringIO(document))
        ]
    return [
        (c.start.total_seconds(), c.end.total_seconds(), c.content.splitlines())
        for c in srt.parse(document, ignore_errors=False)
    ]


@pytest.mark.parametrize("fmt", ["srt", "vtt"])
async def test_subtitles_cue_the_whole_transcript_in_time_order(gw, fmt):
    async with gw.client() as client:
        raw = await client.audio.transcriptions.with_raw_response.create(
            file=upload(fresh_clip(4.0)), model="policy:cheapest", response_format=fmt
        )
    document = raw.parse()
    assert isinstance(document, str)
    # Cues need segment times: the untimed (cheaper) model is never asked.
    assert raw.headers["x-gateway-provider"] == "openai-whisper"
    if fmt == "vtt":
        assert document.startswith("WEBVTT\n\n") and raw.headers["content-type"].startswith("text/vtt")
    cues = _cues(document, fmt)
    assert len(cues) == 2
    assert " ".join(" ".join(lines) for _, _, lines in cues) == gw.fake.transcript
    assert all(len(line) <= 42 for _, _, lines in cues for line in lines)
    times = [t for start, end, _ in cues for t in (start, end)]
    assert times == sorted(times) and times[0] == 0.0 and times[-1] == pytest.approx(4.0, abs=0.01)


async def test_translations_come_as_subtitles_too(gw):
    async with gw.client() as client:
        document = await client.audio.translations.create(
            file=upload(fresh_clip(3.0)), model=WHISPER, response_format="srt"
        )
    cues = _cues(document)
    assert " ".join(" ".join(lines) for _, _, lines in cues) == gw.fake.translation
    assert parse_form(gw.fake.requests[0]).value("response_format") == "verbose_json"


async def test_stream_sends_text_deltas_then_done(gw):
    async with gw.client() as client:
        stream = await client.audio.transcriptions.create(
            file=upload(fresh_clip()), model=WHISPER, stream=True
        )
        events = [event async for event in stream]
    delta, done = "transcript.text.delta", "transcript.text.done"
    assert [e.type for e in events] == [delta, delta, done]
    assert "".join(e.delta for e in events[:-1]) == gw.fake.transcript == events[-1].text
    assert events[0].delta == "The quick brown fox jumps over the lazy dog."


async def test_timed_formats_go_only_to_providers_that_time_segments(gw):
    # Under "cheapest" the untimed gpt-4o-mini model wins on price, unless segments are asked for.
    async with gw.client() as client:
        plain = await client.audio.transcriptions.with_raw_response.create(
            file=upload(fresh_clip()), model="policy:cheapest"
        )
        timed = await client.audio.transcriptions.with_raw_response.create(
            file=upload(fresh_clip()), model="policy:cheapest", response_format="verbose_json"
        )
    assert plain.headers["x-gateway-provider"] == "openai-mini"
    assert timed.headers["x-gateway-provider"] == "openai-whisper"
    assert len(timed.parse().segments) == 2


async def test_policy_and_provider_models_route_as_named(gw):
    async with gw.client() as client:
        pinned = await client.audio.transcriptions.with_raw_response.create(
            file=upload(fresh_clip()), model="provider:openai-whisper"
        )
        by_policy = await client.audio.transcriptions.with_raw_response.create(
            file=upload(fresh_clip()), model="policy:mini-only"
        )
        # A pin is a wish within the tenant's default policy, which denies this provider.
        with pytest.raises(openai.BadRequestError) as refused:
            await client.audio.transcriptions.create(file=upload(fresh_clip()), model="provider:openai-mini")
    assert pinned.headers["x-gateway-provider"] == "openai-whisper"
    assert by_policy.headers["x-gateway-provider"] == "openai-mini"
    assert by_policy.headers["x-gateway-policy"] == "mini-only"
    assert [parse_form(r).value("model") for r in gw.fake.requests] == ["whisper-1", "gpt-4o-mini-transcribe"]
    assert refused.value.body["code"] == "no_route"
    assert "openai-mini: denied by policy 'default'" in refused.value.message


# -- translations -----------------------------------------------------------------------------------------


async def test_translations_reach_whisper_translations_endpoint(gw):
    async with gw.client() as client:
        result = await client.audio.translations.create(file=upload(fresh_clip(2.0)), model=WHISPER)
        text = await client.audio.translations.create(
            file=upload(fresh_clip(2.0)), model=WHISPER, response_format="text"
        )
        verbose = await client.audio.translations.create(
            file=upload(fresh_clip(2.0)), model=WHISPER, response_format="verbose_json", prompt="Trains"
        )
    assert result.text == gw.fake.translation
    assert text.strip() == gw.fake.translation
    assert verbose.language == "english" and verbose.text == gw.fake.translation
    assert [s.text for s in verbose.segments] == ["Good morning.", "The train to the city leaves at nine."]
    paths = {r.path for r in gw.fake.requests}
    assert paths == {"/v1/audio/translations"}
    # The mini model has no translate feature: the default policy ranks it out.
    assert all(parse_form(r).value("model") == "whisper-1" for r in gw.fake.requests)
    assert parse_form(gw.fake.requests[-1]).value("prompt") == "Trains"


async def test_a_translation_no_provider_can_make_is_a_clear_400(gw):
    async with gw.client() as client:
        with pytest.raises(openai.BadRequestError) as caught:
            await client.audio.translations.create(file=upload(fresh_clip()), model="policy:mini-only")
    error = caught.value.body
    assert "translate" in error["message"] and "openai-mini: lacks feature(s) translate" in error["message"]
    assert error["code"] == "no_route" and error["type"] == "invalid_request_error"
    assert not gw.fake.requests


async def test_a_translation_is_cached_apart_from_the_transcription(gw):
    clip = fresh_clip()
    async with gw.client() as client:
        transcribed = await client.audio.transcriptions.create(file=upload(clip), model=WHISPER)
        translated = await client.audio.translations.with_raw_response.create(
            file=upload(clip), model=WHISPER
        )
    assert transcribed.text == gw.fake.transcript and translated.parse().text == gw.fake.translation
    assert translated.headers["x-gateway-cache-hit"] == "false"


# -- models -----------------------------------------------------------------------------------------------


async def test_models_list_the_tenants_policies_and_the_providers_they_admit(gw):
    async with gw.client() as client:
        ids = [m.id async for m in client.models.list()]
        mini = await client.models.retrieve("provider:openai-mini")
    assert ids == [
        "policy:default",
        "policy:cheapest",
        "policy:mini-only",
        "policy:private",
        "provider:openai-whisper",
        "provider:openai-mini",
    ]
    assert mini.owned_by == "audio-gateway" and mini.gateway["operations"] == ["transcribe"]
    # globex may only use "private" (local only): no cloud provider is listed, nor other policies.
    async with gw.client(GLOBEX) as client:
        assert [m.id async for m in client.models.list()] == ["policy:private"]
        with pytest.raises(openai.NotFoundError):
            await client.models.retrieve("provider:openai-whisper")


# -- errors -----------------------------------------------------------------------------------------------


async def test_bad_or_missing_keys_are_401(gw):
    async with gw.client("not-a-key") as client:
        with pytest.raises(openai.AuthenticationError) as caught:
            await client.audio.transcriptions.create(file=upload(fresh_clip()), model=WHISPER)
    assert caught.value.body == {
        "message": "unknown API key",
        "type": "invalid_request_error",
        "param": None,
        "code": "invalid_api_key",
    }
    async with httpx.AsyncClient() as http:
        reply = await http.get(f"{gw.base_url}/models")
    assert reply.status_code == 401
    assert "authorization: Bearer <key>' header" in reply.json()["error"]["message"]
    assert not gw.fake.requests


async def test_unknown_models_are_404_and_forbidden_policies_403(gw):
    async with gw.client() as client:
        with pytest.raises(openai.NotFoundError) as unknown_policy:
            await client.audio.transcriptions.create(file=upload(fresh_clip()), model="policy:nope")
        with pytest.raises(openai.NotFoundError) as unknown_provider:
            await client.audio.transcriptions.create(file=upload(fresh_clip()), model="provider:nope")
    async with gw.client(GLOBEX) as client:
        with pytest.raises(openai.PermissionDeniedError) as forbidden:
            await client.audio.transcriptions.create(file=upload(fresh_clip()), model="policy:default")
    assert unknown_policy.value.body["code"] == "model_not_found"
    assert unknown_policy.value.body["param"] == "model" and "policy:nope" in unknown_policy.value.message
    assert unknown_provider.value.body["code"] == "model_not_found"
    assert "may not use policy 'default'" in forbidden.value.message
    assert not gw.fake.requests


async def test_invalid_fields_are_400_naming_the_field(gw):
    async with gw.client() as client:
        with pytest.raises(openai.BadRequestError) as hot:
            await client.audio.transcriptions.create(file=upload(fresh_clip()), model=WHISPER, temperature=3)
        with pytest.raises(openai.BadRequestError) as fmt:
            await client.audio.transcriptions.create(
                file=upload(fresh_clip()),
                model=WHISPER,
                extra_body={"response_format": "docx"},
            )
        with pytest.raises(openai.BadRequestError) as words:
            await client.audio.transcriptions.create(
                file=upload(fresh_clip()), model=WHISPER, timestamp_granularities=["word"]
            )
        with pytest.raises(openai.BadRequestError) as not_audio:
            await client.audio.transcriptions.create(file=upload(b"RIFF, but not really"), model=WHISPER)
        with pytest.raises(openai.BadRequestError) as unknown:
            await client.audio.transcriptions.create(
                file=upload(fresh_clip()), model=WHISPER, extra_body={"colour": "blue"}
            )
    assert hot.value.body["param"] == "temperature"
    assert fmt.value.body["param"] == "response_format" and "verbose_json" in fmt.value.message
    assert words.value.body["param"] == "timestamp_granularities[]"
    assert "verbose_json" in words.value.message
    assert not_audio.value.body["code"] == "invalid_audio"
    assert unknown.value.body["param"] == "colour" and "unrecognized parameter" in unknown.value.message
    assert not gw.fake.requests


async def test_missing_file_and_model_are_400_not_422(gw):
    async with httpx.AsyncClient(headers={"authorization": f"Bearer {ACME}"}) as http:
        no_file = await http.post(f"{gw.base_url}/audio/transcriptions", files={"model": (None, "whisper-1")})
        no_model = await http.post(
            f"{gw.base_url}/audio/transcriptions", files={"file": ("a.wav", fresh_clip(), "audio/wav")}
        )
        json_body = await http.post(f"{gw.base_url}/audio/transcriptions", json={"model": "whisper-1"})
    assert no_file.status_code == no_model.status_code == json_body.status_code == 400
    assert no_file.json()["error"]["param"] is None and "'file'" in no_file.json()["error"]["message"]
    assert no_model.json()["error"] == {
        "message": "missing required parameter 'model'",
        "type": "invalid_request_error",
        "param": "model",
        "code": "missing_required_parameter",
    }
    assert "multipart/form-data" in json_body.json()["error"]["message"]


async def test_uploads_over_the_limit_are_413(gw):
    async with gw.client() as client:
        with pytest.raises(openai.APIStatusError) as caught:
            await client.audio.transcriptions.create(file=upload(b"\0" * (AUDIO_LIMIT * 3)), model=WHISPER)
    assert caught.value.status_code == 413
    assert caught.value.body["code"] == "request_too_large"
    assert "GATEWAY_LIMITS__MAX_AUDIO_BYTES" in caught.value.message
    assert not gw.fake.requests


async def test_a_spent_budget_is_429_with_retry_after_until_it_renews(gw):
    before = time.time()
    async with gw.client(FRUGAL) as client:
        with pytest.raises(openai.RateLimitError) as caught:
            await client.audio.transcriptions.create(file=upload(fresh_clip()), model=WHISPER)
    error = caught.value
    assert error.body["type"] == "insufficient_quota" and "budget" in error.message
    now = datetime.fromtimestamp(before, UTC)
    year, month = (now.year + 1, 1) if now.month == 12 else (now.year, now.month + 1)
    renewal = calendar.timegm((year, month, 1, 0, 0, 0))
    retry_after = int(error.response.headers["retry-after"])
    assert renewal - before - 5 <= retry_after <= renewal - before + 5
    # Too long to wait for: the SDKs are told not to retry on their own.
    assert error.response.headers["x-should-retry"] == "false"
    assert not gw.fake.requests


async def test_grpc_refuses_the_same_budget_with_the_same_hint_and_no_automatic_retry(gw):
    stub = pb_grpc.AudioGatewayStub(gw.channel)
    async with gw.client(FRUGAL) as client:
        with pytest.raises(openai.RateLimitError) as over_http:
            await client.audio.transcriptions.create(file=upload(fresh_clip()), model=WHISPER)
    with pytest.raises(grpc.aio.AioRpcError) as over_grpc:
        await stub.Transcribe(
            pb.TranscribeRequest(audio=common.Audio(content=fresh_clip())),
            metadata=(("authorization", f"Bearer {FRUGAL}"),),
        )
    assert over_grpc.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    trailers = dict(over_grpc.value.trailing_metadata())
    assert trailers["grpc-retry-pushback-ms"] == "-1"
    status = rpc_status.from_call(over_grpc.value)
    [detail] = status.details
    info = error_details_pb2.RetryInfo()
    assert detail.Unpack(info)
    http_hint = int(over_http.value.response.headers["retry-after"])
    assert abs(info.retry_delay.seconds - http_hint) <= 2


async def test_past_the_concurrency_cap_is_429_with_a_short_retry(gw):
    gw.fake.delay_s = 1.0
    async with gw.client() as client:
        calls = [
            client.audio.transcriptions.create(file=upload(fresh_clip()), model=WHISPER) for _ in range(6)
        ]
        results = await asyncio.gather(*calls, return_exceptions=True)
    refused = [r for r in results if isinstance(r, openai.RateLimitError)]
    served = [r for r in results if isinstance(r, openai.types.audio.Transcription)]
    assert len(served) == 4 and len(refused) == 2, results
    assert refused[0].body["code"] == "rate_limit_exceeded"
    assert refused[0].response.headers["retry-after"] == "1"
    assert refused[0].response.headers["retry-after-ms"] == "1000"
    assert refused[0].response.headers["x-should-retry"] == "true"


async def test_every_attempt_failing_is_503(gw):
    gw.fake.fail_next(500, times=10)
    async with gw.client() as client:
        with pytest.raises(openai.InternalServerError) as caught:
            await client.audio.transcriptions.create(
                file=upload(fresh_clip()), model="provider:openai-whisper"
            )
    assert caught.value.status_code == 503 and caught.value.body["type"] == "server_error"
    assert "openai-whisper" in caught.value.message and "HTTP 500" in caught.value.message


async def test_the_wait_the_sdk_announces_bounds_the_work(gw):
    gw.fake.delay_s = 2.0
    async with gw.client(timeout=30.0) as client:
        started = time.monotonic()
        with pytest.raises(openai.APIStatusError) as caught:
            await client.audio.transcriptions.create(
                file=upload(fresh_clip()),
                model="provider:openai-whisper",
                extra_headers={"x-stainless-read-timeout": "0.4"},
            )
        waited_s = time.monotonic() - started
    # The gateway gave up when the caller said it would, not when the vendor answered 2 s later.
    assert caught.value.status_code == 504 and caught.value.body["code"] == "timeout"
    assert waited_s < 1.5, waited_s


async def test_unknown_paths_and_methods_keep_the_error_shape(gw):
    async with httpx.AsyncClient(headers={"authorization": f"Bearer {ACME}"}) as http:
        missing = await http.get(f"{gw.base_url}/audio/nothing-here")
        wrong = await http.get(f"{gw.base_url}/audio/transcriptions")
    assert missing.status_code == 404 and "unrecognized request URL" in missing.json()["error"]["message"]
    assert wrong.status_code == 405 and wrong.json()["error"]["type"] == "invalid_request_error"


# -- request ids ------------------------------------------------------------------------------------------


async def test_request_ids_come_back_and_tame_ones_are_kept(gw):
    # Valid HTTP (visible characters and spaces) that the id rule refuses: too long, spaces, slashes.
    untame = "bad id/" * 40
    async with httpx.AsyncClient(headers={"authorization": f"Bearer {ACME}"}) as http:
        mine = await http.get(f"{gw.base_url}/models", headers={"x-request-id": "job-7:a"})
        hostile = await http.get(f"{gw.base_url}/models", headers={"x-request-id": untame})
        refused = await http.get(f"{gw.base_url}/models", headers={"authorization": "Bearer nope"})
    assert mine.headers["x-request-id"] == "job-7:a"
    assert hostile.status_code == 200 and len(hostile.headers["x-request-id"]) == 32
    assert refused.status_code == 401 and len(refused.headers["x-request-id"]) == 32


async def _raw_exchange(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(65536), 5)
    finally:
        writer.close()


@pytest.mark.parametrize(
    "request_bytes",
    [
        # A control character (DEL) in a header value: not a field-vchar (RFC 9110 5.5).
        b"GET /v1/models HTTP/1.1\r\nHost: gw\r\nx-request-id: bad\x7fid\r\n\r\n",
        # Both lengths: the classic request-smuggling ambiguity (RFC 9112 6.1 allows refusing it).
        b"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: gw\r\nContent-Length: 3\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        # A header folded onto a continuation line (obs-fold).
        b"GET /v1/models HTTP/1.1\r\nHost: gw\r\nx-request-id: a\r\n b\r\n\r\n",
    ],
    ids=["control-character", "length-and-chunked", "obs-fold"],
)
async def test_malformed_http_is_refused_before_the_app(gw, request_bytes):
    # The parser (llhttp) answers these itself: no request id, since no request reached the app.
    reply = await _raw_exchange(gw.door.port, request_bytes)
    assert reply.startswith(b"HTTP/1.1 400 "), reply[:200]
    assert b"x-request-id" not in reply.lower()


# -- one pipeline, two doors ------------------------------------------------------------------------------


async def _records(gw: HttpGateway, request_id: str, expected: int) -> list[reports_pb.LedgerRecord]:
    stub = reports_grpc.CostReportsStub(gw.channel)
    records: list[reports_pb.LedgerRecord] = []
    for _ in range(100):
        reply = await stub.FindRecords(
            reports_pb.FindRecordsRequest(request_id=request_id, tenant="acme"),
            metadata=(("authorization", f"Bearer {ADMIN}"),),
        )
        records = [r for r in reply.records if r.kind == "request"]
        if len(records) >= expected:
            return records
        await asyncio.sleep(0.05)
    raise AssertionError(f"{request_id}: {len(records)} of {expected} request records")


async def test_http_and_grpc_share_the_pipeline_the_ledger_and_the_cache(gw):
    clip = fresh_clip(2.5)
    async with gw.client(default_headers={"x-request-id": "door-http-1"}) as client:
        first = await client.audio.transcriptions.with_raw_response.create(file=upload(clip), model=WHISPER)
    stub = pb_grpc.AudioGatewayStub(gw.channel)
    second = await stub.Transcribe(
        pb.TranscribeRequest(audio=common.Audio(content=clip, mime_type="audio/wav")),
        metadata=(("authorization", f"Bearer {ACME}"), ("x-request-id", "door-grpc-1")),
    )
    assert len(gw.fake.requests) == 1
    assert first.headers["x-gateway-cache-hit"] == "false" and second.route.cache_hit
    assert second.text == first.parse().text
    [http_record] = await _records(gw, "door-http-1", 1)
    [grpc_record] = await _records(gw, "door-grpc-1", 1)
    cost = Decimal(http_record.cost_usd)
    assert cost > 0 and Decimal(first.headers["x-gateway-cost-usd"]) == cost
    assert (http_record.provider, grpc_record.provider) == ("openai-whisper", "openai-whisper")
    # The second door's request is a hit on the first's result, and saves exactly what it cost.
    assert grpc_record.cache_hit and Decimal(grpc_record.cost_usd) == 0
    assert Decimal(grpc_record.saved_usd) == cost == Decimal(second.route.saved_usd)


# -- the OpenAPI document ---------------------------------------------------------------------------------


async def test_openapi_document_is_valid_and_names_the_endpoints(gw):
    async with httpx.AsyncClient() as http:
        reply = await http.get(f"http://127.0.0.1:{gw.door.port}/openapi.json")
    assert reply.status_code == 200
    document = reply.json()
    validate(document)
    paths = document["paths"]
    for path, method in (
        ("/v1/audio/transcriptions", "post"),
        ("/v1/audio/translations", "post"),
        ("/v1/models", "get"),
        ("/v1/models/{model}", "get"),
    ):
        assert method in paths[path], path
    form = paths["/v1/audio/transcriptions"]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert {"file", "model", "response_format", "timestamp_granularities[]", "stream"} <= set(
        form["schema"]["properties"]
    )
    assert form["schema"]["required"] == ["file", "model"]
    assert "413" in paths["/v1/audio/transcriptions"]["post"]["responses"]


# -- draining ---------------------------------------------------------------------------------------------


async def test_shutdown_lets_an_inflight_http_request_finish_and_refuses_new_ones(tmp_path, redis_url):
    async with http_gateway(tmp_path, redis_url) as gateway:
        gateway.fake.delay_s = 1.0
        async with gateway.client() as client:
            call = asyncio.create_task(
                client.audio.transcriptions.create(file=upload(fresh_clip()), model=WHISPER)
            )
            await asyncio.sleep(0.3)
            stopping = asyncio.create_task(gateway.stop(5))
            result = await call
            await stopping
            assert result.text == gateway.fake.transcript
            with pytest.raises(openai.APIConnectionError):
                await client.models.list()
