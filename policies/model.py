"""A policy: what a request may use and what it optimises for."""

from __future__ import annotations

from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field

from gateway.domain import Objective, Privacy


class Policy(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    privacy: Privacy = Privacy.ANY
    # With privacy "any": only vendors that do not keep the audio.
    no_retention: bool = False
    region: str | None = None
    objective: Objective = Objective.COST
    max_cost_usd: Decimal | None = Field(None, ge=0)
    max_latency_ms: float | None = Field(None, gt=0)
    allow_providers: frozenset[str] | None = None
    deny_providers: frozenset[str] = frozenset()
    fallback: bool = True
    max_attempts: int = Field(3, ge=1)


# What a gateway with no policy file applies: every configured provider, cheapest first.
DEFAULT_POLICY = Policy(name="default")

_PRIVACY_ORDER = {Privacy.LOCAL_ONLY: 0, Privacy.ON_PREM: 1, Privacy.ANY: 2}


def stricter_privacy(a: Privacy, b: Privacy | None) -> Privacy:
    """A request may tighten its policy's privacy, never loosen it."""
    if b is None:
        return a
    return a if _PRIVACY_ORDER[a] <= _PRIVACY_ORDER[b] else b
