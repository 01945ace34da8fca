"""The HTTP door's pure pieces: the one error classification, the model mapping, stream deltas, retry
headers and the budget's renewal hint."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import grpc
import httpx
import pytest
from fastapi import APIRouter
from pydantic import BaseModel, Field
from starlette.datastructures import Headers

from gateway.app import build_app
from gateway.core import errors
from gateway.core.domain import Routing
from gateway.core.provider_types import SegmentTiming
from gateway.grpc.interceptors import status_for
from gateway.http.app import create_http_app
from gateway.http.callers import client_timeout_s
from gateway.http.errors import gateway_error_response, retry_headers
from gateway.http.models import model_routing
from gateway.http.transcripts import deltas
from gateway.money.budget import BudgetExceeded, LocalBudgets
from gateway.settings import Settings
from providers.faster_whisper import FasterWhisperTranscriber
from providers.testing import FakeTranscriber
from tests.conftest import local_settings


def _every_error_type() -> list[type[errors.GatewayError]]:
    found, todo = [], [errors.GatewayError]
    while todo:
        current = todo.pop()
        for sub in current.__subclasses__():
            found.append(sub)
            todo.append(sub)
    return found


def _instance(kind: type[errors.GatewayError]) -> errors.GatewayError:
    if issubclass(kind, errors.ProviderBusy):
        return kind("p", "full", 0.5)
    if issubclass(kind, errors.ProviderError):
        return kind("p", "failed")
    if issubclass(kind, errors.AllAttemptsFailed):
        return kind([errors.ProviderUnavailable("p", "down")])
    if issubclass(kind, errors.Overloaded):
        return kind("busy", 1.0)
    if issubclass(kind, BudgetExceeded):
        return kind("acme", "2026-11", Decimal(1), Decimal(1), Decimal("0.1"), 60.0)
    return kind("message")


@pytest.mark.parametrize("kind", _every_error_type(), ids=lambda k: k.__name__)
def test_every_error_is_classified_once_for_both_doors(kind):
    exc = _instance(kind)
    classification = errors.classify(exc)
    assert classification is not errors.INTERNAL
    # gRPC's status comes from the same row as the HTTP status.
    assert status_for(exc) == grpc.StatusCode[classification.grpc_status]
    assert classification.http_status in (400, 401, 403, 404, 413, 429, 503, 504)
    response = gateway_error_response(exc)
    assert response.status_code == classification.http_status


@pytest.mark.parametrize(
    ("exc", "grpc_status", "http_status", "openai_type"),
    [
        (errors.InvalidInput("x"), "INVALID_ARGUMENT", 400, "invalid_request_error"),
        (errors.UnknownModel("x"), "INVALID_ARGUMENT", 404, "invalid_request_error"),
        (errors.Unauthenticated("x"), "UNAUTHENTICATED", 401, "invalid_request_error"),
        (errors.PermissionDenied("x"), "PERMISSION_DENIED", 403, "permission_error"),
        (errors.LimitExceeded("x"), "RESOURCE_EXHAUSTED", 413, "invalid_request_error"),
        (errors.BudgetExhausted("x", 10.0), "RESOURCE_EXHAUSTED", 429, "insufficient_quota"),
        (errors.Overloaded("x", 1.0), "RESOURCE_EXHAUSTED", 429, "rate_limit_error"),
        (errors.NoRoute("x"), "FAILED_PRECONDITION", 400, "invalid_request_error"),
        (errors.NotReady("x"), "UNAVAILABLE", 503, "server_error"),
        (errors.AllAttemptsFailed([]), "UNAVAILABLE", 503, "server_error"),
        (errors.DeadlineExceeded([]), "DEADLINE_EXCEEDED", 504, "server_error"),
        (ValueError("a bug"), "INTERNAL", 500, "server_error"),
    ],
)
def test_the_table_rows(exc, grpc_status, http_status, openai_type):
    row = errors.classify(exc)
    assert (row.grpc_status, row.http_status, row.openai_type) == (grpc_status, http_status, openai_type)
    assert errors.status_name(exc) == grpc_status


def test_error_bodies_carry_retry_headers_only_with_a_hint():
    busy = gateway_error_response(errors.Overloaded("busy", 0.25))
    assert busy.headers["retry-after"] == "1" and busy.headers["retry-after-ms"] == "250"
    assert busy.headers["x-should-retry"] == "true"
    assert "retry-after" not in gateway_error_response(errors.InvalidInput("bad")).headers
    assert retry_headers(86_400.4)["retry-after"] == "86401"
    assert retry_headers(86_400.4)["x-should-retry"] == "false"


@pytest.mark.parametrize(
    ("now", "expected_s"),
    [
        (datetime(2026, 11, 30, 23, 59, 0, tzinfo=UTC), 60.0),
        (datetime(2026, 12, 31, 0, 0, 0, tzinfo=UTC), 86_400.0),
        (datetime(2026, 2, 1, 0, 0, 0, tzinfo=UTC), 28 * 86_400.0),
    ],
)
async def test_a_refused_budget_says_when_it_renews(now, expected_s):
    budgets = LocalBudgets(now=lambda: now)
    assert budgets.renews_in_s() == expected_s
    with pytest.raises(BudgetExceeded) as caught:
        await budgets.reserve("acme", Decimal("0.01"), Decimal("0.02"))
    assert caught.value.retry_after_s == expected_s
    assert errors.classify(caught.value).http_status == 429


@pytest.fixture
async def gateway_app():
    app = build_app(local_settings(), providers=[FakeTranscriber(name="fake-stt")])
    yield app
    await app.close()


def test_model_mapping(gateway_app):
    assert model_routing("whisper-1", gateway_app) == Routing()
    assert model_routing("gpt-4o-transcribe", gateway_app) == Routing()
    assert model_routing("policy:private", gateway_app) == Routing(policy="private")
    assert model_routing("provider:fake-stt", gateway_app) == Routing(provider="fake-stt")
    for unknown in ("policy:nope", "provider:nope", "policy:", "provider:" + "x" * 5000):
        with pytest.raises(errors.UnknownModel) as caught:
            model_routing(unknown, gateway_app)
        assert len(str(caught.value)) < 300


@pytest.mark.parametrize(
    ("text", "segments", "expected"),
    [
        ("Hello there. Bye.", ["Hello there.", "Bye."], ["Hello there.", " Bye."]),
        ("Hello there. Bye.", ["Hello there.", "Missing.", "Bye."], ["Hello there.", " Bye."]),
        ("Hello there. Bye.", [], ["Hello there. Bye."]),
        ("Hello there. Bye.", ["Bye.", "Hello there."], ["Hello there. Bye."]),
        ("", [], []),
    ],
)
def test_stream_deltas_join_back_into_the_text(text, segments, expected):
    timed = [SegmentTiming(text=s, start_s=0.0, end_s=1.0) for s in segments]
    pieces = deltas(text, timed)
    assert pieces == expected and "".join(pieces) == text


def test_http_settings_from_the_environment(monkeypatch):
    assert (Settings().http.enabled, Settings().http.port) == (True, 8080)
    monkeypatch.setenv("GATEWAY_HTTP__PORT", "9090")
    monkeypatch.setenv("GATEWAY_HTTP__HOST", "127.0.0.1")
    monkeypatch.setenv("GATEWAY_HTTP__ENABLED", "false")
    settings = Settings()
    assert (settings.http.port, settings.http.host, settings.http.enabled) == (9090, "127.0.0.1", False)


def test_only_a_multilingual_whisper_declares_translate(tmp_path: Path):
    settings = Settings()
    assert "translate" not in FasterWhisperTranscriber(settings.whisper).capabilities.features
    model = tmp_path / "whisper-base-ct2"
    model.mkdir()
    (model / "tokenizer.json").write_text('{"added_tokens": [{"content": "<|en|>"}, {"content": "<|fr|>"}]}')
    settings.whisper.model = str(model)
    caps = FasterWhisperTranscriber(settings.whisper).capabilities
    assert "translate" in caps.features and caps.languages is None


class EchoBody(BaseModel):
    input: str
    speed: float = Field(1.0, ge=0.25, le=4.0)


echo_router = APIRouter()


@echo_router.post("/v1/echo")
async def echo(body: EchoBody) -> dict[str, float]:
    return {"speed": body.speed}


async def test_fastapis_own_validation_errors_are_400_in_openai_shape(gateway_app):
    # What an endpoint with a JSON body gets (speech, chat): FastAPI validates it before the endpoint runs.
    http = create_http_app(gateway_app)
    http.include_router(echo_router)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=http), base_url="http://gw") as client:
        ok = await client.post("/v1/echo", json={"input": "hi", "speed": 2})
        slow = await client.post("/v1/echo", json={"input": "hi", "speed": 9})
        missing = await client.post("/v1/echo", json={})
        broken = await client.post(
            "/v1/echo", content=b"{not json", headers={"content-type": "application/json"}
        )
    assert ok.status_code == 200 and ok.json() == {"speed": 2.0} and ok.headers["x-request-id"]
    assert slow.status_code == 400 and slow.json()["error"]["param"] == "speed"
    assert slow.json()["error"]["type"] == "invalid_request_error"
    assert missing.status_code == 400 and missing.json()["error"]["code"] == "missing_required_parameter"
    assert missing.json()["error"]["param"] == "input"
    assert broken.status_code == 400 and set(broken.json()["error"]) == {"message", "type", "param", "code"}


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, None),
        ({"x-stainless-read-timeout": "600.0"}, 600.0),
        ({"x-stainless-timeout": "30"}, 30.0),
        ({"x-stainless-read-timeout": "12.5", "x-stainless-timeout": "3"}, 3.0),
        ({"x-stainless-timeout": "0"}, None),  # Node truncates a sub-second timeout to 0: none announced
        ({"x-stainless-read-timeout": "nan"}, None),
        ({"x-stainless-read-timeout": "inf"}, None),
        ({"x-stainless-read-timeout": "-5"}, None),
        ({"x-stainless-read-timeout": "soon", "x-stainless-timeout": "7"}, 7.0),
        ({"x-stainless-read-timeout": "1" * 10_000}, float("1" * 32)),  # read no further than 32 bytes
    ],
)
def test_the_wait_a_caller_announces(headers, expected):
    assert client_timeout_s(Headers(headers)) == expected
