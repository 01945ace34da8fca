"""Where a request went and what it cost, as response headers.

OpenAI's response bodies have no room for the gateway's RouteInfo, so every endpoint reports it in
``x-gateway-*`` headers: SDKs ignore them, and ``with_raw_response`` (or ``curl -i``) shows them.
"""

from __future__ import annotations

from gateway.core.domain import RouteInfo
from gateway.money.pricing import usd_text


def route_headers(route: RouteInfo) -> dict[str, str]:
    return {
        "x-gateway-policy": route.policy,
        "x-gateway-provider": route.provider,
        "x-gateway-model": route.model,
        "x-gateway-locality": route.locality.value if route.locality else "",
        "x-gateway-cache-hit": "true" if route.cache_hit else "false",
        "x-gateway-cost-usd": usd_text(route.cost_usd),
        "x-gateway-saved-usd": usd_text(route.saved_usd),
        "x-gateway-attempts": str(len(route.attempts)),
    }
