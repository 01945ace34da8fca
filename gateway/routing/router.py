"""The router: the pipeline with every operation plugged in, as the doors call it.

Each method is one line over :class:`~gateway.routing.pipeline.Pipeline`; what differs between operations
lives in :mod:`gateway.routing.operations`.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from gateway.core import audio
from gateway.core.domain import (
    AudioInput,
    ExplainRequest,
    Explanation,
    SynthesizeRequest,
    SynthesizeResult,
    TranscribeRequest,
    TranscribeResult,
    UnderstandRequest,
    UnderstandResult,
)
from gateway.core.errors import InvalidInput
from gateway.routing.attempts import Attempts
from gateway.routing.explain import Explainer
from gateway.routing.operations.synthesize import SynthesizePlug
from gateway.routing.operations.transcribe import TranscribePlug
from gateway.routing.operations.understand import UnderstandPlug
from gateway.routing.pipeline import Pipeline, RequestContext

if TYPE_CHECKING:
    from gateway.cache.results import ResultCache
    from gateway.health.book import HealthBook
    from gateway.money.budget import Budgets
    from gateway.money.pricing import PriceBook
    from gateway.routing.accounting import Accounting
    from gateway.routing.catalogue import Catalogue
    from gateway.routing.policy_store import PolicyStore
    from gateway.settings import LimitSettings

__all__ = ["RequestContext", "Router"]


class Router:
    def __init__(
        self,
        catalogue: Catalogue,
        prices: PriceBook,
        limits: LimitSettings,
        default_answer_tokens: int,
        policies: PolicyStore,
        health: HealthBook,
        budgets: Budgets,
        cache: ResultCache,
        accounting: Accounting,
        ledger_ack_s: float = 5.0,
    ) -> None:
        self._limits = limits
        self._audio_limits = audio.AudioLimits(limits.max_audio_bytes, limits.max_audio_s)
        self.pipeline = Pipeline(
            catalogue, prices, policies, health, budgets, cache, accounting, ledger_ack_s
        )
        attempts = Attempts(catalogue, prices, health, budgets, accounting)
        self._transcribe = TranscribePlug(self._open_audio, attempts)
        self._synthesize = SynthesizePlug(attempts, limits.max_text_chars)
        self._understand = UnderstandPlug(
            self._open_audio,
            self.pipeline,
            attempts,
            catalogue,
            default_answer_tokens=default_answer_tokens,
            max_question_chars=limits.max_question_chars,
        )
        self._explainer = Explainer(self.pipeline, catalogue, health, self._open_audio)

    async def transcribe(self, req: TranscribeRequest, ctx: RequestContext) -> TranscribeResult:
        return await self.pipeline.run(self._transcribe, req, req.routing, ctx)

    async def synthesize(self, req: SynthesizeRequest, ctx: RequestContext) -> SynthesizeResult:
        return await self.pipeline.run(self._synthesize, req, req.routing, ctx)

    async def understand(self, req: UnderstandRequest, ctx: RequestContext) -> UnderstandResult:
        return await self.pipeline.run(self._understand, req, req.routing, ctx)

    async def explain(self, req: ExplainRequest, ctx: RequestContext) -> Explanation:
        return await self._explainer.explain(req, ctx)

    async def _open_audio(self, source: AudioInput) -> audio.DecodedAudio:
        if source.uri is not None:
            data = await asyncio.to_thread(
                audio.read_uri, source.uri, self._limits.uri_roots, self._limits.max_audio_bytes
            )
        elif source.content is not None:
            data = source.content
        else:
            raise InvalidInput("audio is missing: set audio.content (or audio.uri)")
        return await asyncio.to_thread(audio.decode, data, source.mime_type, self._audio_limits)
