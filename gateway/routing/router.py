"""The router: the pipeline with every operation plugged in, as the doors call it.

Each method is one line over :class:`~gateway.routing.pipeline.Pipeline`; what differs between operations
lives in :mod:`gateway.routing.operations`.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from typing import TYPE_CHECKING

from gateway.core.domain import (
    CallKind,
    ExplainRequest,
    Explanation,
    SpeechChunk,
    SynthesizeRequest,
    SynthesizeResult,
    TranscribeRequest,
    TranscribeResult,
    UnderstandRequest,
    UnderstandResult,
)
from gateway.routing import progress
from gateway.routing.attempts import Attempts
from gateway.routing.explain import Explainer
from gateway.routing.operations.synthesize import SynthesizePlug
from gateway.routing.operations.synthesize_stream import SynthesizeStreamPlug
from gateway.routing.operations.transcribe import TranscribePlug
from gateway.routing.operations.understand import UnderstandPlug
from gateway.routing.pipeline import Pipeline, RequestContext

if TYPE_CHECKING:
    from gateway.cache.results import ResultCache
    from gateway.core.audio import AudioIntake
    from gateway.core.progress import AudioProgress
    from gateway.health.book import HealthBook
    from gateway.money.budget import Budgets
    from gateway.money.pricing import PriceBook
    from gateway.routing.accounting import Accounting
    from gateway.routing.admission import Admission
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
        audio: AudioIntake,
        admission: Admission,
        ledger_ack_s: float = 5.0,
    ) -> None:
        self.pipeline = Pipeline(
            catalogue, prices, policies, health, budgets, cache, accounting, admission, ledger_ack_s
        )
        attempts = Attempts(catalogue, prices, health, budgets, accounting)
        self._transcribe = TranscribePlug(audio.open, attempts)
        self._synthesize = SynthesizePlug(attempts, limits.max_text_chars)
        self._synthesize_stream = SynthesizeStreamPlug(self._synthesize, attempts, catalogue, health)
        self._understand = UnderstandPlug(
            audio.open,
            self.pipeline,
            attempts,
            catalogue,
            default_answer_tokens=default_answer_tokens,
            max_question_chars=limits.max_question_chars,
        )
        self._explainer = Explainer(self.pipeline, catalogue, health, audio.open, limits)
        self._admission = admission

    async def transcribe(self, req: TranscribeRequest, ctx: RequestContext) -> TranscribeResult:
        return await self.pipeline.run(self._transcribe, req, req.routing, ctx)

    def transcribe_progress(
        self, req: TranscribeRequest, ctx: RequestContext
    ) -> AsyncGenerator[AudioProgress | TranscribeResult, None]:
        """:meth:`transcribe`, with the progress its engine reports on the way."""
        return progress.followed(lambda: self.transcribe(req, ctx))

    async def synthesize(self, req: SynthesizeRequest, ctx: RequestContext) -> SynthesizeResult:
        return await self.pipeline.run(self._synthesize, req, req.routing, ctx)

    def stream_synthesize(self, req: SynthesizeRequest, ctx: RequestContext) -> AsyncIterator[SpeechChunk]:
        plug = self._synthesize_stream
        return self.pipeline.stream(plug.operation, lambda: plug.prepare(req), req.routing, ctx)

    async def understand(self, req: UnderstandRequest, ctx: RequestContext) -> UnderstandResult:
        return await self.pipeline.run(self._understand, req, req.routing, ctx)

    async def explain(self, req: ExplainRequest, ctx: RequestContext) -> Explanation:
        async with self._admission.admit(CallKind.EXPLAIN):
            return await self._explainer.explain(req, ctx)
