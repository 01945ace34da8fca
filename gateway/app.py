"""build_app(settings): the one place where the gateway is assembled."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol

from redis.asyncio import BlockingConnectionPool, Redis

from gateway.cache.results import ResultCache
from gateway.core.audio import AudioIntake, AudioLimits
from gateway.core.provider_types import Locality, Operation
from gateway.health.book import HealthBook
from gateway.ledger.store import Ledger
from gateway.money.budget import Budgets, LocalBudgets, RedisBudgets
from gateway.money.pricing import PriceBook, PriceBookError, PriceList, UnitPrices, default_price_list_path
from gateway.routing.accounting import Accounting
from gateway.routing.admission import Admission
from gateway.routing.catalogue import Catalogue
from gateway.routing.policy_store import PolicyStore
from gateway.routing.router import Router
from gateway.routing.streaming import StreamService
from gateway.settings import NO_REDIS, Settings
from gateway.telemetry.metrics import Metrics
from providers.base import Provider
from providers.config import ProviderConfig, load_providers_file
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
    ledger: Ledger
    metrics: Metrics
    audio: AudioIntake
    admission: Admission
    streams: StreamService

    async def close(self) -> None:
        await self.catalogue.close()
        self.audio.close()
        if self.redis is not None:
            await self.redis.aclose()


class Door(Protocol):
    """A way in besides gRPC (the HTTP API), started after the gRPC server and drained with it."""

    async def start(self) -> None: ...

    async def stop(self, grace_s: float) -> None:
        """Refuse new requests and give in-flight ones ``grace_s`` seconds to finish."""
        ...


# Builds a door over the assembled gateway, so every door shares one App (pipeline, cache, ledger).
DoorFactory = Callable[[App], Door]


def build_app(
    settings: Settings,
    providers: list[Provider] | None = None,
    prices: dict[tuple[str, str], UnitPrices] | None = None,
    clock: Callable[[], float] = time.time,
) -> App:
    """Wire the gateway from settings.

    ``providers`` replaces the configured ones and ``prices`` adds unit prices by (name, model), for
    embedding the gateway with providers built in code (and for tests). ``clock`` (epoch seconds) is what
    breaker cool-downs are measured by.
    """
    configs = load_providers_file(settings.providers_file) if settings.providers_file else []
    if providers is None:
        providers = [*build_local_providers(settings), *build_remote_providers(configs)]
    catalogue = Catalogue(providers)
    book = build_price_book(settings, configs)
    prices = replace(book, vendor_prices={**book.vendor_prices, **(prices or {})})
    policies = PolicyStore(settings.policies_file)
    health = HealthBook(settings.breaker, clock)
    redis = _redis_client(settings)
    budgets: Budgets = (
        RedisBudgets(
            redis,
            settings.redis.key_prefix,
            settings.redis.timeout_s,
            fail_open=settings.redis.budget_fail_open,
        )
        if redis is not None
        else LocalBudgets()
    )
    cache = ResultCache(redis, settings.redis.key_prefix, settings.cache)
    ledger = Ledger(redis, settings.redis.key_prefix, settings.ledger.spool_dir, settings.ledger)
    metrics = Metrics()
    accounting = Accounting(ledger, metrics, prices, catalogue, health)
    audio = build_audio_intake(settings)
    admission = Admission(settings.admission, metrics)
    router = Router(
        catalogue,
        prices,
        settings.limits,
        default_answer_tokens=settings.llama.max_answer_tokens,
        policies=policies,
        health=health,
        budgets=budgets,
        cache=cache,
        accounting=accounting,
        audio=audio,
        admission=admission,
        ledger_ack_s=settings.ledger.ack_timeout_s,
    )
    streams = StreamService(router.pipeline, catalogue, prices, health, budgets, accounting, settings.streams)
    return App(
        settings=settings,
        catalogue=catalogue,
        router=router,
        prices=prices,
        policies=policies,
        health=health,
        redis=redis,
        ledger=ledger,
        metrics=metrics,
        audio=audio,
        admission=admission,
        streams=streams,
    )


def build_audio_intake(settings: Settings) -> AudioIntake:
    limits, audio = settings.limits, settings.audio
    return AudioIntake(
        AudioLimits(
            max_bytes=limits.max_audio_bytes,
            max_duration_s=limits.max_audio_s,
            min_sample_rate=audio.min_sample_rate,
            max_sample_rate=audio.max_sample_rate,
            max_channels=audio.max_channels,
            min_bytes_per_s=audio.min_bytes_per_s,
            probe_cpu_s=audio.probe_cpu_s,
            decode_cpu_s=audio.decode_cpu_s,
            decode_cpu_s_per_audio_s=audio.decode_cpu_s_per_audio_s,
        ),
        uri_roots=limits.uri_roots,
        decode_workers=audio.decode_workers,
    )


def _price_keys(config: ProviderConfig) -> list[str]:
    """litellm models carry a routing prefix ("openai/gpt-4o-mini"); the book lists the bare model too."""
    keys = [config.price_key]
    if "/" in config.model:
        keys.append(f"{config.kind.value}/{config.model.split('/', 1)[1]}")
    return keys


def _redis_client(settings: Settings) -> Redis | None:
    if settings.redis.url in ("", NO_REDIS):
        return None
    timeout = settings.redis.timeout_s
    # Bounded timeouts: a slow or absent Redis degrades shared state, never a request.
    # A pool that waits for a free connection: a burst beyond its size queues instead of failing.
    pool = BlockingConnectionPool.from_url(
        settings.redis.url,
        max_connections=settings.redis.max_connections,
        # Waiting for a free connection is queueing, not an outage: allow it longer than one call.
        timeout=timeout * 4,
        # No socket_timeout (None said explicitly: redis-py 8 defaults it to 5 s): every call is already
        # bounded by its caller's own asyncio.timeout, and with one redis-py runs each write of a
        # connection as a task of its own (wait_for) and each read under a timeout of its own, which cost
        # more loop wake-ups than the rest of a cache hit.
        socket_timeout=None,
        socket_connect_timeout=timeout,
    )
    return Redis(connection_pool=pool)


def build_price_book(settings: Settings, configs: list[ProviderConfig]) -> PriceBook:
    """Price every configured remote provider, refusing to start with a cloud model nobody priced."""
    price_list = PriceList.load(settings.price_book_file or default_price_list_path())
    vendor_prices: dict[tuple[str, str], UnitPrices] = {}
    stream_prices: dict[tuple[str, str], UnitPrices] = {}
    for config in configs:
        if config.prices is None and (stream := price_list.prices.get(f"{config.price_key}:streaming")):
            stream_prices[(config.name, config.model)] = stream
        if config.prices is not None:
            vendor_prices[(config.name, config.model)] = UnitPrices(**config.prices.model_dump())
        elif key := next((k for k in _price_keys(config) if k in price_list.prices), None):
            vendor_prices[(config.name, config.model)] = price_list.prices[key]
        elif config.locality is Locality.CLOUD:
            raise PriceBookError(
                f"provider {config.name!r}: the price book has no {config.price_key!r}; add it to the price "
                "book or give the provider a 'prices:' entry, so its cost is recorded"
            )
    reference = {
        Operation(op): tuple(price_list.prices[key] for key in keys)
        for op, keys in price_list.reference_cloud.items()
        if op in Operation.__members__.values()
    }
    return PriceBook(
        local_usd_per_hour=settings.pricing.local_usd_per_hour,
        vendor_prices=vendor_prices,
        version=price_list.version,
        reference_cloud=reference,
        stream_prices=stream_prices,
    )
