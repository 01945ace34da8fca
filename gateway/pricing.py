"""Turning usage units into money. All money is Decimal; floats never hold a price.

Local engines are priced as the compute time they held this node for, at a
configured $/hour: local is cheap, not free, so routing on cost stays honest.
Vendors are priced per unit from the price book entries given to PriceBook.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from policies.rank import CandidateInfo, RankContext
from providers.base import Locality, Usage

_SECONDS_PER_HOUR = Decimal(3600)
# Enough places for micro-cent local costs; results are exact decimal strings.
_QUANTUM = Decimal("0.000000001")


@dataclass(frozen=True)
class UnitPrices:
    """USD per unit. Zero where the vendor does not bill that unit."""

    per_audio_second: Decimal = Decimal(0)
    per_character: Decimal = Decimal(0)
    per_input_token: Decimal = Decimal(0)
    per_output_token: Decimal = Decimal(0)


@dataclass(frozen=True)
class PriceBook:
    local_usd_per_hour: Decimal
    vendor_prices: dict[tuple[str, str], UnitPrices]
    version: str = "builtin"

    def unit_prices(self, provider: str, model: str, locality: Locality) -> UnitPrices:
        if locality is Locality.LOCAL:
            return UnitPrices()
        return self.vendor_prices.get((provider, model), UnitPrices())

    def cost(self, provider: str, model: str, locality: Locality, usage: Usage) -> Decimal:
        if locality is Locality.LOCAL:
            return self._compute_cost(usage.compute_seconds)
        prices = self.unit_prices(provider, model, locality)
        total = (
            prices.per_audio_second * _dec(usage.audio_seconds)
            + prices.per_character * usage.characters
            + prices.per_input_token * usage.input_tokens
            + prices.per_output_token * usage.output_tokens
        )
        return total.quantize(_QUANTUM)

    def estimate(self, candidate: CandidateInfo, ctx: RankContext, latency_ms: float) -> Decimal:
        """Expected cost before the call: local compute ≈ the expected latency."""
        locality = candidate.capabilities.locality
        if locality is Locality.LOCAL:
            return self._compute_cost(latency_ms / 1000.0)
        usage = Usage(audio_seconds=ctx.audio_s, characters=ctx.characters)
        return self.cost(candidate.name, candidate.model, locality, usage)

    def _compute_cost(self, seconds: float) -> Decimal:
        return (self.local_usd_per_hour * _dec(seconds) / _SECONDS_PER_HOUR).quantize(_QUANTUM)


def _dec(value: float) -> Decimal:
    # Via repr so 0.1 stays 0.1 rather than its binary expansion.
    return Decimal(repr(value))
