"""Turning usage units into money. All money is Decimal; floats never hold a price.

Local engines are priced as the compute time they held this node for, at a
configured $/hour: local is cheap, not free, so routing on cost stays honest.
Vendors are priced per unit from the price book entries given to PriceBook.

Two prices are put on a request before it runs. :meth:`PriceBook.estimate` is what it is *expected* to
cost; ranking orders candidates by it. :meth:`PriceBook.worst_case` is the most it *can* cost at one
candidate; a tenant's budget reservation holds that, so concurrent requests (on any number of replicas)
cannot together spend past the budget by answering at length.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from decimal import Context, Decimal, InvalidOperation
from pathlib import Path

import yaml

from gateway.core.provider_types import Locality, Operation, Usage
from policies.rank import CandidateInfo, RankContext

_SECONDS_PER_HOUR = Decimal(3600)
# Enough places for micro-cent local costs; results are exact decimal strings.
_QUANTUM = Decimal("0.000000001")
_PROMPT_TOKENS = 200
_TRANSCRIPT_TOKENS_PER_S = 4
_AUDIO_TOKENS_PER_S = 10
_ANSWER_TOKENS = 150
# Speech runs about 15 characters a second at normal speed.
_SPEECH_S_PER_CHAR = 1 / 15
# Bounds for the worst case. Whisper emits at most 224 tokens per 30 s window (7.5 a second) and fast speech
# is about 5 words a second; 15 leaves room for tokenizers that split finer than either.
_MAX_TRANSCRIPT_TOKENS_PER_S = 15
# Four characters a second: slower than any voice reads text, numbers spelled out included.
_MAX_SPEECH_S_PER_CHAR = 0.25


@dataclass(frozen=True)
class UnitPrices:
    """USD per single unit. Zero where the vendor does not bill that unit."""

    per_audio_second: Decimal = Decimal(0)
    per_character: Decimal = Decimal(0)
    per_input_token: Decimal = Decimal(0)
    per_audio_input_token: Decimal = Decimal(0)
    per_output_token: Decimal = Decimal(0)


@dataclass(frozen=True)
class PriceBook:
    local_usd_per_hour: Decimal
    vendor_prices: dict[tuple[str, str], UnitPrices]
    version: str = "builtin"
    # Operation → list prices of cloud models, for "what would the cloud have cost" with none configured.
    reference_cloud: dict[Operation, tuple[UnitPrices, ...]] = field(default_factory=dict)
    # Live-stream rates by (provider, model), where a vendor bills streams apart from files (the price
    # book's "vendor/model:streaming" keys); a provider without one streams at its file rate.
    stream_prices: dict[tuple[str, str], UnitPrices] = field(default_factory=dict)

    def is_priced(self, provider: str, model: str) -> bool:
        return (provider, model) in self.vendor_prices

    def unit_prices(self, provider: str, model: str, locality: Locality) -> UnitPrices:
        if locality is Locality.LOCAL:
            return UnitPrices()
        return self.vendor_prices.get((provider, model), UnitPrices())

    def cost(self, provider: str, model: str, locality: Locality, usage: Usage) -> Decimal:
        if locality is Locality.LOCAL:
            return self._compute_cost(usage.compute_seconds)
        return price_units(self.unit_prices(provider, model, locality), usage)

    def stream_unit_prices(self, provider: str, model: str, locality: Locality) -> UnitPrices:
        if locality is Locality.LOCAL:
            return UnitPrices()
        return self.stream_prices.get((provider, model)) or self.unit_prices(provider, model, locality)

    def stream_cost(self, provider: str, model: str, locality: Locality, usage: Usage) -> Decimal:
        """What a live stream's attempt cost: its streaming rate when the vendor has one."""
        if locality is Locality.LOCAL:
            return self._compute_cost(usage.compute_seconds)
        return price_units(self.stream_unit_prices(provider, model, locality), usage)

    def estimate(self, candidate: CandidateInfo, ctx: RankContext, latency_ms: float) -> Decimal:
        """Expected cost before the call: local compute ≈ the expected latency.

        A stream (``ctx.streaming``) is priced for ``ctx.audio_s`` of its audio as it will be billed: a
        vendor at its streaming rate, a local engine for the compute it holds per second streamed. Both
        grow in proportion to the audio, so the order holds whatever the stream's length turns out to be.
        """
        locality = candidate.capabilities.locality
        if ctx.streaming:
            seconds = candidate.capabilities.stream_compute_per_audio_s * ctx.audio_s
            return self.stream_cost(
                candidate.name,
                candidate.model,
                locality,
                Usage(audio_seconds=ctx.audio_s, compute_seconds=seconds),
            )
        if locality is Locality.LOCAL:
            return self._compute_cost(latency_ms / 1000.0)
        usage = estimated_usage(
            ctx.operation, ctx.audio_s, ctx.characters, answer_tokens=ctx.max_answer_tokens, speed=ctx.speed
        )
        return self.cost(candidate.name, candidate.model, locality, usage)

    def worst_case(self, candidate: CandidateInfo, ctx: RankContext, max_compute_s: float) -> Decimal:
        """The most this request can cost at ``candidate``: what a budget reservation must hold for it.

        A vendor bills units the request bounds (see :func:`worst_case_usage`). A local engine bills the
        compute time it held, and an attempt holds it for at most the time it is given: ``max_compute_s``,
        the request's remaining deadline.
        """
        locality = candidate.capabilities.locality
        if locality is Locality.LOCAL:
            return self._compute_cost(max(max_compute_s, 0.0))
        return self.cost(candidate.name, candidate.model, locality, worst_case_usage(ctx))

    def reference_cost(self, operation: Operation, usage: Usage) -> Decimal | None:
        """The cheapest listed cloud price for this usage (counterfactuals with no cloud provider)."""
        costs = [price_units(p, usage) for p in self.reference_cloud.get(operation, ())]
        return min(costs) if costs else None

    def _compute_cost(self, seconds: float) -> Decimal:
        return _to_quantum(self.local_usd_per_hour * _dec(seconds) / _SECONDS_PER_HOUR)


def price_units(prices: UnitPrices, usage: Usage) -> Decimal:
    total = (
        prices.per_audio_second * _dec(usage.audio_seconds)
        + prices.per_character * usage.characters
        + prices.per_input_token * usage.input_tokens
        + prices.per_audio_input_token * usage.audio_input_tokens
        + prices.per_output_token * usage.output_tokens
    )
    return _to_quantum(total)


def usd_text(amount: Decimal) -> str:
    """An amount as plain decimal text, as the APIs report money: no exponent, no trailing zeros."""
    return format(amount.normalize(), "f") if amount else "0"


def _to_quantum(amount: Decimal) -> Decimal:
    # The default context keeps 28 digits, so a large amount would not quantize to nano-dollars at all:
    # give it the digits it needs, so no finite amount fails here.
    digits = max(amount.adjusted(), 0) + 12
    return amount.quantize(_QUANTUM, context=Context(prec=max(digits, 28)))


def estimated_usage(
    operation: Operation, audio_s: float, characters: int, *, answer_tokens: int = 0, speed: float = 1.0
) -> Usage:
    """Units a request is expected to consume, before any provider has reported them.

    ``answer_tokens`` is the answer's token allowance (0: not known); ``speed`` the speaking rate.
    """
    if operation is Operation.UNDERSTAND:
        # Token-priced models: a transcript runs about 4 tokens per second of speech, an audio
        # prompt about 10 audio tokens per second, and answers are short (never past their allowance).
        return Usage(
            audio_seconds=audio_s,
            # In Decimal: a float product can overflow to inf, which no int can hold.
            input_tokens=_PROMPT_TOKENS + int(_dec(audio_s) * _TRANSCRIPT_TOKENS_PER_S),
            audio_input_tokens=int(_dec(audio_s) * _AUDIO_TOKENS_PER_S),
            output_tokens=min(_ANSWER_TOKENS, answer_tokens) if answer_tokens > 0 else _ANSWER_TOKENS,
        )
    if operation is Operation.SYNTHESIZE:
        # Some voices are billed by the second of speech they return, not by the character.
        return Usage(characters=characters, audio_seconds=_speech_s(characters, _SPEECH_S_PER_CHAR, speed))
    return Usage(audio_seconds=audio_s, characters=characters)


def worst_case_usage(ctx: RankContext) -> Usage:
    """The most units a request can consume at a vendor: every unit a price book entry may bill, bounded.

    - Transcribe: the audio's measured seconds, which is what providers report (never their own guess).
    - Synthesize: the text's characters, and the seconds of speech they can make at the requested speed.
    - Understand: the answer's whole token allowance (``max_answer_tokens``; vendors stop there), and as
      input the prompt's fixed wording, the question (a byte-level tokenizer never makes more tokens than
      bytes) and a transcript or audio prompt of the recording's length.

    With ``max_answer_tokens`` 0 (not known, as in ExplainRoute) the answer is taken at its expected length.
    """
    if ctx.operation is Operation.UNDERSTAND:
        return Usage(
            audio_seconds=ctx.audio_s,
            input_tokens=_PROMPT_TOKENS
            + ctx.question_bytes
            + math.ceil(ctx.audio_s * _MAX_TRANSCRIPT_TOKENS_PER_S),
            audio_input_tokens=math.ceil(ctx.audio_s * _AUDIO_TOKENS_PER_S),
            output_tokens=ctx.max_answer_tokens if ctx.max_answer_tokens > 0 else _ANSWER_TOKENS,
        )
    if ctx.operation is Operation.SYNTHESIZE:
        return Usage(
            characters=ctx.characters,
            audio_seconds=_speech_s(ctx.characters, _MAX_SPEECH_S_PER_CHAR, ctx.speed),
        )
    return Usage(audio_seconds=ctx.audio_s, characters=ctx.characters)


def _speech_s(characters: int, s_per_char: float, speed: float) -> float:
    return characters * s_per_char / (speed if speed > 0 else 1.0)


def _dec(value: float) -> Decimal:
    # Via repr so 0.1 stays 0.1 rather than its binary expansion.
    return Decimal(repr(value))


class PriceBookError(ValueError):
    pass


_UNIT_FIELDS = {
    "audio_second": "per_audio_second",
    "character": "per_character",
    "input_token": "per_input_token",
    "audio_input_token": "per_audio_input_token",
    "output_token": "per_output_token",
}


@dataclass(frozen=True)
class PriceList:
    """The price book file: list prices by "vendor/model", each with its source and date."""

    version: str
    prices: dict[str, UnitPrices]
    # operation name → price keys of the cloud models a counterfactual compares against
    reference_cloud: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> PriceList:
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise PriceBookError(f"{path}: cannot read the price book: {exc}") from exc
        if not isinstance(raw, dict) or not isinstance(raw.get("prices"), dict):
            raise PriceBookError(f"{path}: expected a mapping with 'version' and 'prices'")
        prices = {}
        for key, entries in raw["prices"].items():
            fields: dict[str, Decimal] = {}
            for entry in entries if isinstance(entries, list) else [entries]:
                try:
                    unit = _UNIT_FIELDS[entry["unit"]]
                    usd, per = Decimal(str(entry["usd"])), Decimal(str(entry.get("per", 1)))
                    entry["source"], entry["as_of"]
                except (KeyError, TypeError, InvalidOperation) as exc:
                    raise PriceBookError(
                        f"{path}: price {key!r} needs unit (one of {', '.join(_UNIT_FIELDS)}), usd, per, "
                        f"source and as_of: {exc!r}"
                    ) from exc
                fields[unit] = usd / per
            prices[key] = UnitPrices(**fields)
        reference = {op: tuple(keys) for op, keys in (raw.get("reference_cloud") or {}).items()}
        unknown = sorted(k for keys in reference.values() for k in keys if k not in prices)
        if unknown:
            raise PriceBookError(f"{path}: reference_cloud names unpriced models: {', '.join(unknown)}")
        return cls(version=str(raw.get("version", "unversioned")), prices=prices, reference_cloud=reference)


def default_price_list_path() -> Path:
    return Path(__file__).with_name("pricebook.yaml")
