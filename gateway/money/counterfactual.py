"""What a request would have cost elsewhere: on the cheapest eligible cloud provider, and on local engines.

Finance's question ("what did running local save?") is answered from real
traffic: every request record carries both figures, estimated from the units
the request actually had. Cloud means the configured cloud providers able to
serve the operation, or, with none configured, the price book's reference list
prices. Local means the configured in-process engines, priced as compute time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from gateway.core.provider_types import Locality, Operation
from gateway.money.pricing import PriceBook, estimated_usage
from policies.rank import CandidateInfo, HealthView, RankContext


@dataclass(frozen=True)
class Counterfactual:
    cloud_usd: Decimal | None
    local_usd: Decimal | None


def counterfactual(
    operation: Operation,
    audio_s: float,
    characters: int,
    catalogue: Sequence[CandidateInfo],
    prices: PriceBook,
    health: HealthView,
) -> Counterfactual:
    return Counterfactual(
        cloud_usd=cloud_counterfactual(operation, audio_s, characters, catalogue, prices),
        local_usd=local_counterfactual(operation, audio_s, characters, catalogue, prices, health),
    )


def cloud_counterfactual(
    operation: Operation,
    audio_s: float,
    characters: int,
    catalogue: Sequence[CandidateInfo],
    prices: PriceBook,
) -> Decimal | None:
    """The cheapest eligible cloud provider's price. Vendors bill units, not time: no health is needed."""
    return _cheapest(operation, audio_s, characters, catalogue, prices, None, Locality.CLOUD)


def local_counterfactual(
    operation: Operation,
    audio_s: float,
    characters: int,
    catalogue: Sequence[CandidateInfo],
    prices: PriceBook,
    health: HealthView,
) -> Decimal | None:
    """The local engines' compute, priced from the latency the health book has learned for them."""
    return _cheapest(operation, audio_s, characters, catalogue, prices, health, Locality.LOCAL)


def _cheapest(
    operation: Operation,
    audio_s: float,
    characters: int,
    catalogue: Sequence[CandidateInfo],
    prices: PriceBook,
    health: HealthView | None,
    locality: Locality,
) -> Decimal | None:
    ctx = RankContext(operation, audio_s=audio_s, characters=characters)
    costs: list[Decimal] = []
    for candidate in catalogue:
        caps = candidate.capabilities
        if operation not in caps.operations or caps.locality is not locality:
            continue
        if locality is Locality.CLOUD and not prices.is_priced(candidate.name, candidate.model):
            continue
        latency = (
            0.0
            if health is None
            else health.latency_model(candidate.name, caps.latency_prior).estimate_ms(audio_s, characters)
        )
        cost = prices.estimate(candidate, ctx, latency)
        if operation is Operation.UNDERSTAND and "listens" not in caps.features:
            # A text model needs the recording transcribed first, in the same place.
            step = _cheapest(Operation.TRANSCRIBE, audio_s, 0, catalogue, prices, health, locality)
            if step is None:
                continue
            cost += step
        costs.append(cost)
    if costs:
        return min(costs)
    if locality is Locality.CLOUD:
        return _reference(operation, audio_s, characters, prices)
    return None


def _reference(operation: Operation, audio_s: float, characters: int, prices: PriceBook) -> Decimal | None:
    cost = prices.reference_cost(operation, estimated_usage(operation, audio_s, characters))
    if cost is not None and operation is Operation.UNDERSTAND:
        step = prices.reference_cost(Operation.TRANSCRIBE, estimated_usage(Operation.TRANSCRIBE, audio_s, 0))
        cost = cost + step if step is not None else None
    return cost
