"""build_app(settings): the one place where the gateway is assembled."""

from __future__ import annotations

from dataclasses import dataclass, replace

from redis.asyncio import Redis

from gateway.catalogue import Catalogue
from gateway.health import HealthBook
from gateway.policy_store import PolicyStore
from gateway.pricing import PriceBook, PriceBookError, PriceList, UnitPrices, default_price_list_path
from gateway.provider_config import ProviderConfig, load_providers_file
from gateway.router import Router
from gateway.settings import Settings
from providers.base import Locality, Provider
from providers.registry import build_local_providers, build_remote_providers


@dataclass
class App:
    settings: Settings
    catalogue: Catalogue
    router: Router
    prices: PriceBook
    policies: PolicyStore
    health: HealthBook
    redis: Redis | None

    async def close(self) -> None:
        await self.catalogue.close()
        if self.redis is not None:
            await self.redis.aclose()


def build_app(
    settings: Settings,
    providers: list[Provider] | None = None,
    prices: dict[tuple[str, str], UnitPrices] | None = None,
) -> App:
    """Wire the gateway from settings.

    ``providers`` replaces the configured ones and ``prices`` adds unit prices by (name, model), for
    embedding the gateway with providers built in code (and for tests).
    """
    configs = load_providers_file(settings.providers_file) if settings.providers_file else []
    if providers is None:
        providers = [*build_local_providers(settings), *build_remote_providers(configs)]
    catalogue = Catalogue(providers)
    book = build_price_book(settings, configs)
    prices = replace(book, vendor_prices={**book.vendor_prices, **(prices or {})})
    policies = PolicyStore(settings.policies_file)
    health = HealthBook(settings.breaker)
    router = Router(
        catalogue,
        prices,
        settings.limits,
        default_answer_tokens=settings.llama.max_answer_tokens,
        policies=policies,
        health=health,
    )
    return App(
        settings=settings,
        catalogue=catalogue,
        router=router,
        prices=prices,
        policies=policies,
        health=health,
        redis=_redis_client(settings),
    )


def _redis_client(settings: Settings) -> Redis | None:
    if not settings.redis.url:
        return None
    timeout = settings.redis.timeout_s
    # Bounded timeouts: a slow or absent Redis degrades shared state, never a request.
    return Redis.from_url(settings.redis.url, socket_timeout=timeout, socket_connect_timeout=timeout)


def build_price_book(settings: Settings, configs: list[ProviderConfig]) -> PriceBook:
    """Price every configured remote provider, refusing to start with a cloud model nobody priced."""
    price_list = PriceList.load(settings.price_book_file or default_price_list_path())
    vendor_prices: dict[tuple[str, str], UnitPrices] = {}
    for config in configs:
        if config.prices is not None:
            vendor_prices[(config.name, config.model)] = UnitPrices(**config.prices.model_dump())
        elif config.price_key in price_list.prices:
            vendor_prices[(config.name, config.model)] = price_list.prices[config.price_key]
        elif config.locality is Locality.CLOUD:
            raise PriceBookError(
                f"provider {config.name!r}: the price book has no {config.price_key!r}; add it to the price "
                "book or give the provider a 'prices:' entry, so its cost is recorded"
            )
    return PriceBook(
        local_usd_per_hour=settings.pricing.local_usd_per_hour,
        vendor_prices=vendor_prices,
        version=price_list.version,
    )
