"""What every remote adapter shares: capabilities from its config entry, and HTTP status → error."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.core.errors import ProviderError, ProviderRejected, ProviderUnavailable
from gateway.core.provider_types import Capabilities, LatencyModel, Locality

if TYPE_CHECKING:
    from providers.config import ProviderConfig

_MAX_DETAIL = 200


def capabilities_from(
    config: ProviderConfig, features: frozenset[str], latency: LatencyModel
) -> Capabilities:
    """The adapter states what its API can do; the config entry may narrow or re-describe it."""
    prior = config.latency
    return Capabilities(
        operations=frozenset({config.operation}),
        locality=config.locality or Locality.CLOUD,
        retains_data=bool(config.retains_data),
        latency_prior=LatencyModel(prior.fixed_ms, prior.rtf, prior.ms_per_char) if prior else latency,
        region=config.region,
        languages=config.languages,
        features=config.features or features,
        max_audio_s=config.max_audio_s,
        published_wer=config.published_wer,
        timeout_s=config.timeout_s,
    )


def error_for_status(provider: str, status: int, detail: str = "") -> ProviderError:
    """408, 429 and 5xx may succeed elsewhere or later; other 4xx will not."""
    detail = " ".join(detail.split())[:_MAX_DETAIL]
    message = f"HTTP {status}" + (f": {detail}" if detail else "")
    if status in (408, 429) or status >= 500:
        return ProviderUnavailable(provider, message)
    if status in (401, 403):
        return ProviderRejected(provider, f"{message} (check the provider's api_key_env)")
    return ProviderRejected(provider, message)
