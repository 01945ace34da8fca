"""rank(): which providers may serve a request, in which order, and why. Pure: no I/O."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Protocol, TypeVar

from gateway.core.domain import Objective, Privacy, Routing
from gateway.core.errors import clip
from gateway.core.provider_types import Capabilities, LatencyModel, Locality, Operation
from policies.model import Policy, stricter_privacy

_ALLOWED_LOCALITIES = {
    Privacy.LOCAL_ONLY: {Locality.LOCAL},
    Privacy.ON_PREM: {Locality.LOCAL, Locality.ON_PREM},
    Privacy.ANY: {Locality.LOCAL, Locality.ON_PREM, Locality.CLOUD},
}


@dataclass(frozen=True)
class CandidateInfo:
    """What ranking may know about a provider: its declaration and readiness."""

    name: str
    model: str
    capabilities: Capabilities
    ready: bool = True


@dataclass(frozen=True)
class RankContext:
    operation: Operation
    audio_s: float = 0.0
    characters: int = 0
    language: str | None = None
    features: frozenset[str] = frozenset()
    routing: Routing = field(default_factory=Routing)
    # What bounds the rest of the request's cost, for its budget reservation (gateway.money.pricing):
    # the answer's token allowance (0: not known), the question's UTF-8 size, and the speaking rate
    # (slower speech is longer audio, which some voices are billed by).
    max_answer_tokens: int = 0
    question_bytes: int = 0
    speed: float = 1.0
    # A live stream: its cost is priced at streaming rates (a vendor's websocket rate, a local engine's
    # compute per second of streamed audio), so candidates compare like with like.
    streaming: bool = False


@dataclass(frozen=True)
class Kept:
    name: str
    estimated_cost_usd: Decimal
    estimated_latency_ms: float
    score: float


@dataclass(frozen=True)
class Rejected:
    name: str
    reason: str
    # The rule that excluded it: operation, privacy, max_cost, budget, breaker, not_ready, ...
    rule: str = ""


@dataclass(frozen=True)
class Ranking:
    policy: str
    kept: tuple[Kept, ...]
    rejected: tuple[Rejected, ...]
    max_attempts: int
    privacy: Privacy
    objective: Objective
    # The request as it was ranked, so what runs the ranking can price it again (its worst case).
    context: RankContext | None = None
    # Of the remaining deadline, what one attempt may use while another could follow (the policy's).
    attempt_share: float = 0.5


_Num = TypeVar("_Num", Decimal, float)

CostEstimator = Callable[[CandidateInfo, RankContext, float], Decimal]


class HealthView(Protocol):
    """What ranking reads of the health book: breaker blocks and learned latency."""

    def blocked(self, name: str, now: float) -> str | None: ...

    def latency_model(self, name: str, prior: LatencyModel) -> LatencyModel: ...


class _NoHistory:
    def blocked(self, name: str, now: float) -> str | None:
        return None

    def latency_model(self, name: str, prior: LatencyModel) -> LatencyModel:
        return prior


def rank(
    ctx: RankContext,
    catalogue: Sequence[CandidateInfo],
    policy: Policy,
    estimate_cost: CostEstimator,
    health: HealthView | None = None,
    now: float = 0.0,
    budget_remaining_usd: Decimal | None = None,
) -> Ranking:
    """Filter the catalogue by hard rules, then order what is left by the objective.

    ``health`` supplies open breakers and learned latency models (``now`` is the
    wall-clock time breakers are judged at); ``budget_remaining_usd`` is what the
    tenant has left this month, when it has a budget.
    """
    health = health or _NoHistory()
    privacy = stricter_privacy(policy.privacy, ctx.routing.privacy)
    max_cost = _min_optional(policy.max_cost_usd, ctx.routing.max_cost_usd)
    max_latency = _min_optional(policy.max_latency_ms, ctx.routing.max_latency_ms)
    objective = ctx.routing.objective or policy.objective

    kept: list[Kept] = []
    rejected: list[Rejected] = []
    models = latency_models(catalogue, health)
    for candidate in catalogue:
        latency = models[candidate.name].estimate_ms(ctx.audio_s, ctx.characters)
        cost = estimate_cost(candidate, ctx, latency)
        exclusion = _exclusion(candidate, ctx, policy, privacy, max_cost, max_latency, cost, latency)
        if exclusion is None and budget_remaining_usd is not None and cost > budget_remaining_usd:
            exclusion = (
                "budget",
                (
                    f"estimated cost ${cost:.6f} exceeds the tenant's remaining monthly budget "
                    f"${budget_remaining_usd:.6f}"
                ),
            )
        if exclusion is None and (blocked := health.blocked(candidate.name, now)):
            exclusion = "breaker", blocked
        if exclusion is not None:
            rule, reason = exclusion
            rejected.append(Rejected(candidate.name, reason, rule))
        else:
            kept.append(Kept(candidate.name, cost, latency, _score(candidate, objective, cost, latency)))
    kept.sort(key=lambda k: k.score)
    attempts = policy.max_attempts if policy.fallback else 1
    return Ranking(
        policy.name, tuple(kept), tuple(rejected), attempts, privacy, objective, ctx, policy.attempt_share
    )


def latency_models(catalogue: Sequence[CandidateInfo], health: HealthView) -> dict[str, LatencyModel]:
    """Each candidate's latency model: learned, or its prior.

    A learned model and an untried prior are not comparable: a pessimistic prior would lose to any kin
    that had been measured, and, losing, would never be measured itself. So a member of a latency family
    that has not learned yet borrows the first learned member's model, scaled by their priors' ratio.
    """
    models = {c.name: health.latency_model(c.name, c.capabilities.latency_prior) for c in catalogue}
    learned: dict[str, tuple[LatencyModel, LatencyModel]] = {}
    for c in catalogue:
        caps = c.capabilities
        if caps.latency_family and models[c.name] is not caps.latency_prior and caps.latency_prior.rtf > 0:
            learned.setdefault(caps.latency_family, (models[c.name], caps.latency_prior))
    for c in catalogue:
        caps = c.capabilities
        if caps.latency_family in learned and models[c.name] is caps.latency_prior:
            kin, kin_prior = learned[caps.latency_family]
            ratio = caps.latency_prior.rtf / kin_prior.rtf
            models[c.name] = LatencyModel(
                fixed_ms=kin.fixed_ms * ratio, rtf=kin.rtf * ratio, ms_per_char=kin.ms_per_char * ratio
            )
    return models


def _exclusion(
    candidate: CandidateInfo,
    ctx: RankContext,
    policy: Policy,
    privacy: Privacy,
    max_cost: Decimal | None,
    max_latency: float | None,
    cost: Decimal,
    latency: float,
) -> tuple[str, str] | None:
    caps = candidate.capabilities
    pin = ctx.routing.provider
    if ctx.operation not in caps.operations:
        return "operation", f"does not {ctx.operation.value}"
    if pin and pin != candidate.name:
        return "pin", f"request pinned provider {clip(pin)!r}"
    if (refused := policy_exclusion(candidate.name, caps, policy, privacy)) is not None:
        return refused
    if ctx.language and caps.languages is not None and ctx.language not in caps.languages:
        return (
            "language",
            f"does not support language {clip(ctx.language)!r} "
            f"(supports {', '.join(sorted(caps.languages))})",
        )
    if not ctx.features <= caps.features:
        return "features", f"lacks feature(s) {', '.join(sorted(ctx.features - caps.features))}"
    if caps.max_audio_s is not None and ctx.audio_s > caps.max_audio_s:
        return "max_audio", f"audio of {ctx.audio_s:.1f} s exceeds its {caps.max_audio_s:g} s limit"
    if max_cost is not None and cost > max_cost:
        return "max_cost", f"estimated cost ${cost:.6f} exceeds the cap ${max_cost}"
    if max_latency is not None and latency > max_latency:
        return "max_latency", f"estimated latency {latency:.0f} ms exceeds the cap {max_latency:.0f} ms"
    if not candidate.ready:
        return "not_ready", "not ready: the engine is still loading"
    return None


def locality_allowed(privacy: Privacy, locality: Locality) -> bool:
    return locality in _ALLOWED_LOCALITIES[privacy]


def policy_exclusion(
    name: str, caps: Capabilities, policy: Policy, privacy: Privacy
) -> tuple[str, str] | None:
    """(rule, reason) when ``policy`` at ``privacy`` refuses this provider whatever the request asks.

    The rules about where audio may go and who may see it: lists, privacy, retention, region. A cached
    result is served only if every provider that produced it passes them.
    """
    if policy.allow_providers is not None and name not in policy.allow_providers:
        return "allow_list", f"not in policy {policy.name!r} allow-list"
    if name in policy.deny_providers:
        return "deny_list", f"denied by policy {policy.name!r}"
    if caps.locality not in _ALLOWED_LOCALITIES[privacy]:
        return "privacy", f"locality {caps.locality.value} is not allowed under privacy {privacy.value}"
    if privacy is Privacy.ANY and policy.no_retention and caps.retains_data:
        return "retention", "the vendor retains data and the policy requires no retention"
    if policy.region is not None and caps.locality is Locality.CLOUD and caps.region != policy.region:
        return "region", f"region {caps.region} is not {policy.region}"
    return None


def _score(candidate: CandidateInfo, objective: Objective, cost: Decimal, latency: float) -> float:
    """Lower is better."""
    if objective is Objective.LATENCY:
        return latency
    if objective is Objective.QUALITY:
        wer = candidate.capabilities.published_wer
        return wer if wer is not None else 1.0
    return float(cost)


def _min_optional(a: _Num | None, b: _Num | None) -> _Num | None:
    values = [v for v in (a, b) if v is not None]
    return min(values) if values else None
