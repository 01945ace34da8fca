"""The litellm adapter against the OpenAI wire fake: litellm's "openai/" route speaks to its /v1."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from gateway.core.errors import ProviderBadResponse, ProviderRejected, ProviderTimeout, ProviderUnavailable
from gateway.core.provider_types import AnswerOptions, Locality
from providers.base import Answerer
from providers.config import ProviderConfig
from providers.litellm import LiteLLMProvider
from providers.llama_cpp import SYSTEM_PROMPT
from tests.fakes.openai_server import FakeOpenAI, openai_error

# litellm's own type definitions warn when it first builds its response models.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Items? .* (is|are) using the `ReadOnly` qualifier:UserWarning"
)

KEY = "sk-litellm-test-4242"
TRANSCRIPT = "Please move my appointment from Monday to Thursday at ten."
QUESTION = "Which day does the caller want?"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(answer="Thursday at ten.") as server:
        yield server


@pytest.fixture(autouse=True)
def _clean(fake: FakeOpenAI) -> Iterator[None]:
    fake.reset()
    yield
    fake.reset()


def llm(fake: FakeOpenAI, **extra: object) -> LiteLLMProvider:
    fields: dict[str, object] = {
        "name": "litellm-mini",
        "kind": "litellm",
        "operation": "understand",
        "model": "openai/gpt-4o-mini",
        "base_url": fake.base_url,
        "api_key": KEY,
        **extra,
    }
    return LiteLLMProvider(ProviderConfig.model_validate(fields))


async def ask(provider: LiteLLMProvider, timeout_s: float | None = 10.0, max_tokens: int = 48) -> object:
    return await provider.answer(QUESTION, TRANSCRIPT, None, AnswerOptions(max_tokens=max_tokens), timeout_s)


async def test_answers_from_the_transcript_and_reports_tokens(fake):
    provider = llm(fake, options={"temperature": 0.2})
    assert isinstance(provider, Answerer)
    answer = await provider.answer(QUESTION, TRANSCRIPT, None, AnswerOptions(max_tokens=48), 10)

    [request] = fake.requests
    assert (request.method, request.path) == ("POST", "/v1/chat/completions")
    assert request.headers["authorization"] == f"Bearer {KEY}"
    body = request.json()
    assert body["model"] == "gpt-4o-mini"
    assert body["max_tokens"] == 48
    assert body["temperature"] == 0.2
    system, user = body["messages"]
    assert system == {"role": "system", "content": SYSTEM_PROMPT}
    assert user["role"] == "user"
    assert TRANSCRIPT in user["content"]
    assert QUESTION in user["content"]

    assert answer.text == "Thursday at ten."
    usage = fake.last_usage
    assert usage is not None
    assert answer.usage.input_tokens == usage["prompt_tokens"] > 0
    assert answer.usage.output_tokens == usage["completion_tokens"] == 3
    assert answer.usage.audio_input_tokens == 0
    assert answer.usage.audio_seconds == 0.0


async def test_max_tokens_reaches_the_server(fake):
    answer = await ask(llm(fake), max_tokens=2)
    assert fake.requests[0].json()["max_tokens"] == 2
    assert answer.text == "Thursday at"
    assert answer.usage.output_tokens == 2


async def test_it_needs_a_transcript(fake):
    provider = llm(fake)
    with pytest.raises(ProviderUnavailable, match="needs a transcript"):
        await provider.answer(QUESTION, None, None, AnswerOptions(), 10)
    assert fake.requests == []


def test_capabilities_and_locality():
    self_hosted = LiteLLMProvider(
        ProviderConfig(
            name="vllm",
            kind="litellm",
            operation="understand",
            model="openai/x",
            base_url="http://127.0.0.1:1",
        )
    )
    assert self_hosted.listens is False
    assert "transcript_input" in self_hosted.capabilities.features
    assert self_hosted.capabilities.locality is Locality.ON_PREM
    assert self_hosted.capabilities.retains_data is False
    cloud = LiteLLMProvider(
        ProviderConfig(name="claude", kind="litellm", operation="understand", model="anthropic/claude-x")
    )
    assert (cloud.capabilities.locality, cloud.capabilities.retains_data) == (Locality.CLOUD, True)


def test_only_understand_entries_are_accepted():
    entry = ProviderConfig(name="oops", kind="litellm", operation="transcribe", model="openai/whisper-1")
    with pytest.raises(ValueError, match=r"'oops'.*must be understand"):
        LiteLLMProvider(entry)


@pytest.mark.parametrize(
    ("status", "error", "retryable"),
    [
        (500, ProviderUnavailable, True),
        (503, ProviderUnavailable, True),
        (429, ProviderUnavailable, True),
        (401, ProviderRejected, False),
        (403, ProviderRejected, False),
        (400, ProviderRejected, False),
        (404, ProviderRejected, False),
        (422, ProviderRejected, False),
    ],
)
async def test_http_errors_map_by_status_with_a_single_attempt(fake, status, error, retryable):
    fake.fail_next(status, openai_error("Incorrect API key provided: sk-li***4242"), times=5)
    with pytest.raises(error, match=f"HTTP {status}") as info:
        await ask(llm(fake))
    assert type(info.value) is error
    assert info.value.retryable is retryable
    assert info.value.__cause__ is not None
    assert len(fake.requests) == 1  # neither litellm nor the SDK under it retried
    if status in (401, 403):
        assert "sk-li" not in str(info.value)


async def test_a_reply_slower_than_the_deadline_is_a_timeout(fake):
    fake.delay_s = 2.0
    started = time.monotonic()
    with pytest.raises(ProviderTimeout) as info:
        await ask(llm(fake), timeout_s=0.3)
    assert time.monotonic() - started < 1.5
    assert info.value.retryable is True
    assert len(fake.requests) == 1


async def test_the_entry_timeout_caps_the_request_deadline(fake):
    fake.slow_first_byte_s = 2.0
    started = time.monotonic()
    with pytest.raises(ProviderTimeout):
        await ask(llm(fake, timeout_s=0.3), timeout_s=None)
    assert time.monotonic() - started < 1.5


async def test_a_malformed_body_is_a_retryable_bad_response(fake):
    fake.malformed = True
    with pytest.raises(ProviderBadResponse) as info:
        await ask(llm(fake))
    assert info.value.retryable is True


async def test_a_dropped_connection_is_retryable(fake):
    fake.drop = True
    with pytest.raises(ProviderUnavailable) as info:
        await ask(llm(fake))
    assert info.value.retryable is True
    assert len(fake.requests) == 1


async def test_an_empty_answer_is_a_bad_response(fake):
    fake.answer = ""
    with pytest.raises(ProviderBadResponse, match="empty answer"):
        await ask(llm(fake))
