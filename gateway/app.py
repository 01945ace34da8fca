"""build_app(settings): the one place where the gateway is assembled."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.catalogue import Catalogue
from gateway.pricing import PriceBook
from gateway.router import Router
from gateway.settings import Settings
from providers.base import Provider
from providers.registry import build_local_providers


@dataclass
class App:
    settings: Settings
    catalogue: Catalogue
    router: Router

    async def close(self) -> None:
        await self.catalogue.close()


def build_app(settings: Settings, providers: list[Provider] | None = None) -> App:
    """Wire the gateway from settings. ``providers`` replaces the configured ones (tests, embedding)."""
    catalogue = Catalogue(build_local_providers(settings) if providers is None else providers)
    prices = PriceBook(local_usd_per_hour=settings.pricing.local_usd_per_hour, vendor_prices={})
    router = Router(
        catalogue,
        prices,
        settings.limits,
        default_answer_tokens=settings.llama.max_answer_tokens,
    )
    return App(settings=settings, catalogue=catalogue, router=router)
