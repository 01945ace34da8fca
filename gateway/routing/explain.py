"""ExplainRoute: the ranking a request would get, with every number behind it; nothing is executed."""

from __future__ import annotations

import math
from decimal import Decimal
from typing import TYPE_CHECKING

from gateway.core.domain import ExplainedCandidate, ExplainRequest, Explanation
from gateway.core.errors import InvalidInput
from gateway.core.provider_types import Operation, TranscribeOptions
from gateway.health.book import BreakerState, LatencySource
from gateway.routing.operations import synthesize, transcribe, understand
from gateway.settings import LimitSettings

if TYPE_CHECKING:
    from gateway.health.book import HealthBook
    from gateway.routing.catalogue import Catalogue
    from gateway.routing.operations.transcribe import AudioOpener
    from gateway.routing.pipeline import Pipeline, RequestContext
    from policies.rank import RankContext, Ranking


class Explainer:
    def __init__(
        self,
        pipeline: Pipeline,
        catalogue: Catalogue,
        health: HealthBook,
        open_audio: AudioOpener,
        limits: LimitSettings | None = None,
    ) -> None:
        self._pipeline = pipeline
        self._catalogue = catalogue
        self._health = health
        self._open_audio = open_audio
        self._limits = limits or LimitSettings()

    async def explain(self, req: ExplainRequest, ctx: RequestContext) -> Explanation:
        pipeline = self._pipeline
        policy = pipeline.policy(req.routing, ctx.tenant)
        audio_s = req.audio_s or 0.0
        self._check_size(audio_s, req.characters or 0)
        if req.audio is not None:
            audio_s = (await self._open_audio(req.audio)).duration_s
        characters = req.characters or len((req.text or "").strip())
        self._check_size(audio_s, characters)
        rank_ctx: RankContext
        if req.operation is Operation.TRANSCRIBE:
            rank_ctx = transcribe.rank_context(
                audio_s,
                req.language,
                req.word_timestamps,
                req.routing,
                TranscribeOptions(diarize=req.diarize, translate=req.translate),
            )
        elif req.operation is Operation.SYNTHESIZE:
            rank_ctx = synthesize.rank_context(characters, req.voice, req.routing)
        else:
            rank_ctx = understand.rank_context(audio_s, req.language, req.routing)
        ranking = await pipeline.rank(rank_ctx, policy, ctx.tenant)
        sized_by_audio = req.operation is not Operation.SYNTHESIZE
        transcription: tuple[ExplainedCandidate, ...] = ()
        if (
            req.operation is Operation.UNDERSTAND
            and ranking.kept
            and not understand.answerer(self._catalogue, ranking.kept[0].name).listens
        ):
            step = transcribe.rank_context(
                audio_s, req.language, False, understand.transcription_routing(req.routing)
            )
            transcription = self._explained(await pipeline.rank(step, policy, ctx.tenant), audio=True)
        return Explanation(
            tenant=ctx.tenant.name,
            policy=policy.name,
            privacy=ranking.privacy,
            objective=ranking.objective,
            max_attempts=ranking.max_attempts,
            audio_s=audio_s,
            characters=characters,
            candidates=self._explained(ranking, audio=sized_by_audio),
            transcription_candidates=transcription,
            remaining_budget_usd=await pipeline.remaining_budget(ctx.tenant),
        )

    def _check_size(self, audio_s: float, characters: int) -> None:
        """Refuse sizes no real request could have: the estimates would be meaningless (or overflow)."""
        limits = self._limits
        if not math.isfinite(audio_s) or audio_s < 0 or characters < 0:
            raise InvalidInput("audio_duration_s and characters must be finite and not negative")
        if audio_s > limits.max_audio_s:
            raise InvalidInput(
                f"audio_duration_s is {audio_s:g} s; this gateway accepts recordings of at most "
                f"{limits.max_audio_s:g} s (GATEWAY_LIMITS__MAX_AUDIO_S): explain a shorter one"
            )
        if characters > limits.max_text_chars:
            raise InvalidInput(
                f"the text is {characters} characters; this gateway speaks at most {limits.max_text_chars} "
                "per request (GATEWAY_LIMITS__MAX_TEXT_CHARS): explain a shorter one"
            )

    def _explained(self, ranking: Ranking, *, audio: bool) -> tuple[ExplainedCandidate, ...]:
        snapshot = self._health.snapshot()
        estimates = {c.name: c for c in ranking.kept}
        rows: list[ExplainedCandidate] = []
        order = [k.name for k in ranking.kept] + [r.name for r in ranking.rejected]
        reasons = {r.name: r.reason for r in ranking.rejected}
        for position, name in enumerate(order, start=1):
            provider = self._catalogue.get(name)
            kept = estimates.get(name)
            health = snapshot.get(name)
            latency = snapshot.latency(name, provider.capabilities.latency_prior, audio=audio)
            model = latency.model
            rows.append(
                ExplainedCandidate(
                    provider=name,
                    model=provider.model,
                    locality=provider.capabilities.locality,
                    eligible=kept is not None,
                    rejected_reason=reasons.get(name, ""),
                    rank=position if kept is not None else 0,
                    estimated_cost_usd=kept.estimated_cost_usd if kept else Decimal(0),
                    estimated_latency_ms=kept.estimated_latency_ms if kept else 0.0,
                    score=kept.score if kept else 0.0,
                    breaker_state=health.state.value if health else BreakerState.CLOSED.value,
                    latency_learned=latency.source is not LatencySource.PRIOR,
                    latency_source=latency.source.value,
                    latency_observations=latency.observations,
                    latency_fixed_ms=model.fixed_ms,
                    latency_per_unit=model.rtf if audio else model.ms_per_char,
                )
            )
        return tuple(rows)
