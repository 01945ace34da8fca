"""What a request would have cost elsewhere: the cloud price from units alone, the local one from latency."""

from __future__ import annotations

from decimal import Decimal

from gateway.core.provider_types import Capabilities, LatencyModel, Locality, Operation
from gateway.money.counterfactual import cloud_counterfactual, counterfactual, local_counterfactual
from gateway.money.pricing import PriceBook, UnitPrices
from policies.rank import CandidateInfo


def candidate(name: str, locality: Locality, fixed_ms: float) -> CandidateInfo:
    caps = Capabilities(
        operations=frozenset({Operation.TRANSCRIBE}),
        locality=locality,
        retains_data=False,
        latency_prior=LatencyModel(fixed_ms=fixed_ms),
    )
    return CandidateInfo(name, f"{name}-model", caps)


class Learned:
    """A health view that has learned one latency for every provider."""

    def __init__(self, fixed_ms: float) -> None:
        self.fixed_ms = fixed_ms

    def blocked(self, name: str, now: float) -> str | None:
        return None

    def latency_model(self, name: str, prior: LatencyModel) -> LatencyModel:
        return LatencyModel(fixed_ms=self.fixed_ms)


CATALOGUE = [
    candidate("dear", Locality.CLOUD, 100.0),
    candidate("cheap", Locality.CLOUD, 900.0),
    candidate("whisper", Locality.LOCAL, 500.0),
]
PRICES = PriceBook(
    local_usd_per_hour=Decimal("3.6"),
    vendor_prices={
        ("dear", "dear-model"): UnitPrices(per_audio_second=Decimal("0.0002")),
        ("cheap", "cheap-model"): UnitPrices(per_audio_second=Decimal("0.0001")),
    },
)


def test_the_cloud_price_is_the_cheapest_vendors_whatever_was_learned():
    cloud = cloud_counterfactual(Operation.TRANSCRIBE, 60.0, 0, CATALOGUE, PRICES)
    assert cloud == Decimal("0.006")
    for learned in (Learned(1.0), Learned(60_000.0)):
        assert counterfactual(Operation.TRANSCRIBE, 60.0, 0, CATALOGUE, PRICES, learned).cloud_usd == cloud


def test_the_local_price_follows_the_learned_latency():
    # 3.6 USD an hour is 0.001 USD a second of compute.
    fast = local_counterfactual(Operation.TRANSCRIBE, 60.0, 0, CATALOGUE, PRICES, Learned(2_000.0))
    slow = local_counterfactual(Operation.TRANSCRIBE, 60.0, 0, CATALOGUE, PRICES, Learned(20_000.0))
    assert (fast, slow) == (Decimal("0.002"), Decimal("0.02"))
    both = counterfactual(Operation.TRANSCRIBE, 60.0, 0, CATALOGUE, PRICES, Learned(2_000.0))
    assert both.local_usd == fast


def test_no_local_engine_means_no_local_price():
    cloud_only = CATALOGUE[:2]
    assert local_counterfactual(Operation.TRANSCRIBE, 60.0, 0, cloud_only, PRICES, Learned(1.0)) is None
