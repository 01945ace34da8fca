"""A policy: what a request may use and what it optimises for."""

from __future__ import annotations

from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field

from gateway.core.domain import Objective, Privacy


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
    # StreamSynthesize: when a provider fails after audio has gone out, go on with the next candidate from
    # the interrupted sentence (the caller is told the voice may change); false ends the stream UNAVAILABLE.
    fallback_mid_stream: bool = True
    # The share of the request's remaining deadline one attempt may use while another candidate could still
    # follow it, so a provider that hangs leaves time for the fallback. The last attempt gets what remains.
    # Each attempt is also bounded by its provider's own timeout_s.
    attempt_share: float = Field(0.5, gt=0, le=1)
    # Serve identical requests from the result cache.
    cache: bool = True
    # Whether results of local_only requests may be cached (in Redis, outside the process).
    cache_local_only: bool = False


class Tenant(BaseModel):
    """A caller of the gateway, known by the SHA-256 of its API key (the key itself is never stored)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    key_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    default_policy: str
    # Policies the tenant may ask for; empty: only its default.
    policies: frozenset[str] = frozenset()
    monthly_budget_usd: Decimal | None = Field(None, ge=0)
    # May read every tenant's cost reports.
    admin: bool = False

    def may_use(self, policy: str) -> bool:
        return policy == self.default_policy or policy in self.policies


# What a gateway with no policy file applies: every configured provider, cheapest first.
DEFAULT_POLICY = Policy(name="default")
# The caller when no tenants are configured (authentication off).
ANONYMOUS = Tenant(name="anonymous", key_sha256="0" * 64, default_policy=DEFAULT_POLICY.name)

_PRIVACY_ORDER = {Privacy.LOCAL_ONLY: 0, Privacy.ON_PREM: 1, Privacy.ANY: 2}


def stricter_privacy(a: Privacy, b: Privacy | None) -> Privacy:
    """A request may tighten its policy's privacy, never loosen it."""
    if b is None:
        return a
    return a if _PRIVACY_ORDER[a] <= _PRIVACY_ORDER[b] else b
