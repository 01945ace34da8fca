"""Answering questions about a transcript with any chat model litellm reaches.

litellm (``model: openai/gpt-4o-mini``, ``anthropic/claude-...``, ``ollama/...``; ``base_url`` for a
self-hosted server) does not listen: the router transcribes first and hands over the transcript. The
gateway prices the tokens from its own price book (``litellm/<model>`` or the entry's ``prices:``),
never from litellm's cost map.
"""

from __future__ import annotations

import os

# litellm fetches its model cost map over the network when imported unless told to use the bundled
# copy; the gateway never uses that map, and an import must not wait on the internet.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import asyncio
import json
from typing import TYPE_CHECKING, Any

import litellm
import openai
from litellm import exceptions as llm_errors

from gateway.core.errors import ProviderBadResponse, ProviderError, ProviderTimeout, ProviderUnavailable
from gateway.core.provider_types import Answer, AnswerOptions, LatencyModel, Operation, Usage
from providers.llama_cpp import SYSTEM_PROMPT
from providers.remote import capabilities_from, error_for_status

if TYPE_CHECKING:
    from gateway.core.audio import Recording
    from providers.config import ProviderConfig

# Otherwise litellm prints a "give feedback" banner to stdout on every failure.
litellm.suppress_debug_info = True

_LATENCY = LatencyModel(fixed_ms=900.0, ms_per_char=0.02)


class LiteLLMProvider:
    """A text chat model behind litellm, answering from the transcript."""

    listens = False

    def __init__(self, config: ProviderConfig) -> None:
        if config.operation is not Operation.UNDERSTAND:
            raise ValueError(
                f"provider {config.name!r} (kind litellm) answers questions: its operation must be "
                f"understand, not {config.operation.value}"
            )
        self.name = config.name
        self.model = config.model
        self._config = config
        temperature = config.options.get("temperature")
        self._temperature = float(temperature) if temperature is not None else None
        self.capabilities = capabilities_from(config, frozenset({"transcript_input"}), _LATENCY)

    async def start(self) -> None:
        """Nothing to load: litellm opens connections per call."""

    async def close(self) -> None:
        """Nothing held open between calls."""

    async def answer(
        self,
        question: str,
        transcript: str | None,
        audio: Recording | None,
        options: AnswerOptions,
        timeout_s: float | None,
    ) -> Answer:
        if transcript is None:
            raise ProviderUnavailable(self.name, "needs a transcript; the router must transcribe first")
        messages = [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": f'Transcript:\n"""\n{transcript}\n"""\n\nQuestion: {question}'},
        ]
        limit = self._config.timeout_s if timeout_s is None else min(timeout_s, self._config.timeout_s)
        limit = max(limit, 0.001)
        extra: dict[str, Any] = {} if self._temperature is None else {"temperature": self._temperature}
        try:
            async with asyncio.timeout(limit):
                response: Any = await litellm.acompletion(
                    model=self.model,
                    messages=messages,
                    api_base=self._config.base_url,
                    # Never None: litellm would then look for a key in the environment itself.
                    api_key=self._config.secret() or "unset",
                    timeout=limit,
                    # One attempt: litellm's own retries and the SDK's under it both off.
                    num_retries=0,
                    max_retries=0,
                    max_tokens=options.max_tokens,
                    **extra,
                )
        except TimeoutError as exc:
            raise ProviderTimeout(self.name, f"no answer within {limit:.1f} s") from exc
        except openai.OpenAIError as exc:
            # litellm's exception classes all derive from the openai SDK's base error.
            raise map_error(self.name, exc) from exc
        except Exception as exc:
            # litellm translates dozens of vendor SDKs and can raise outside its own tree; another
            # candidate may still answer, so this is an outage of this one, not an internal error.
            raise ProviderUnavailable(self.name, f"litellm failed: {type(exc).__name__}") from exc
        try:
            text = response.choices[0].message.content
            if not isinstance(text, str):
                raise TypeError(f"content is {type(text).__name__}")
            usage = Usage(
                input_tokens=int(response.usage.prompt_tokens),
                output_tokens=int(response.usage.completion_tokens),
            )
        except (AttributeError, IndexError, TypeError, ValueError) as exc:
            raise ProviderBadResponse(self.name, "the completion is malformed") from exc
        text = text.strip()
        if not text:
            raise ProviderBadResponse(self.name, "the model produced an empty answer")
        return Answer(text=text, usage=usage)


def map_error(provider: str, exc: Exception) -> ProviderError:
    """litellm's exceptions, by type and status code, to ours."""
    if isinstance(exc, llm_errors.Timeout):
        return ProviderTimeout(provider, "the request timed out")
    if isinstance(exc, llm_errors.APIConnectionError):
        return ProviderUnavailable(provider, "connection failed")
    if isinstance(exc, llm_errors.APIResponseValidationError) or _caused_by(exc, json.JSONDecodeError):
        # litellm reports a body that is not JSON as a 500; it is a bad response, not an outage.
        return ProviderBadResponse(provider, "the response is not a valid completion")
    status = getattr(exc, "status_code", None)
    if isinstance(status, int):
        # Authentication messages can echo part of the key: keep only the status for those.
        message = getattr(exc, "message", "")
        detail = message if isinstance(message, str) and status not in (401, 403) else ""
        return error_for_status(provider, status, detail)
    return ProviderUnavailable(provider, f"litellm failed: {type(exc).__name__}")


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, kind):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False
