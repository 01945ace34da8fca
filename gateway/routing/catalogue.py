"""The configured providers, their readiness, and their lifecycle."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable

import structlog

from gateway.core.provider_types import Operation
from policies.rank import CandidateInfo
from providers.base import Answerer, Provider, Synthesizer, Transcriber

log = structlog.get_logger(__name__)

# What a provider that lists an operation must implement. Checked here, once: the request path casts
# instead, as a runtime Protocol check costs about 17 µs per call.
_IMPLEMENTS = {
    Operation.TRANSCRIBE: Transcriber,
    Operation.SYNTHESIZE: Synthesizer,
    Operation.UNDERSTAND: Answerer,
}


class Catalogue:
    def __init__(self, providers: Iterable[Provider]) -> None:
        self._providers: dict[str, Provider] = {}
        for provider in providers:
            if provider.name in self._providers:
                raise ValueError(f"two providers are named {provider.name!r}")
            for operation in provider.capabilities.operations:
                if not isinstance(provider, _IMPLEMENTS[operation]):
                    raise TypeError(
                        f"provider {provider.name!r} lists {operation.value} but does not implement "
                        f"{_IMPLEMENTS[operation].__name__}"
                    )
            self._providers[provider.name] = provider
        self._ready: set[str] = set()
        self._failed: dict[str, str] = {}

    def get(self, name: str) -> Provider:
        return self._providers[name]

    def candidates(self) -> list[CandidateInfo]:
        return [self.info(name) for name in self._providers]

    def info(self, name: str) -> CandidateInfo:
        p = self._providers[name]
        return CandidateInfo(p.name, p.model, p.capabilities, ready=name in self._ready)

    def operations(self) -> set[Operation]:
        return {op for p in self._providers.values() for op in p.capabilities.operations}

    def ready_operations(self) -> set[Operation]:
        return {op for name in self._ready for op in self._providers[name].capabilities.operations}

    def memory(self) -> dict[str, int]:
        """Resident bytes each loaded local engine's model took (engines that measure it)."""
        sizes = {name: getattr(self._providers[name], "memory_bytes", 0) for name in self._ready}
        return {name: size for name, size in sizes.items() if size}

    def all_ready(self) -> bool:
        return self._ready == set(self._providers)

    @property
    def failures(self) -> dict[str, str]:
        return dict(self._failed)

    async def start(self, on_change: Callable[[], Awaitable[None]] | None = None) -> None:
        """Load and warm every provider; each becomes routable as soon as it is warm.

        Engines load one after another: on a small node, loading them all at
        once only makes every one of them late.
        """
        for provider in self._providers.values():
            started = asyncio.get_running_loop().time()
            try:
                await provider.start()
            except Exception as exc:
                # One broken engine must not take the others down; it stays unroutable.
                self._failed[provider.name] = f"{type(exc).__name__}: {exc}"
                log.error("provider.start_failed", provider=provider.name, error=str(exc))
                continue
            self._ready.add(provider.name)
            # Local engines say how much resident memory their model took (several may be loaded at once).
            memory = getattr(provider, "memory_bytes", 0)
            log.info(
                "provider.ready",
                provider=provider.name,
                model=provider.model,
                load_s=round(asyncio.get_running_loop().time() - started, 3),
                **({"memory_mb": round(memory / 2**20, 1)} if memory else {}),
            )
            if on_change is not None:
                await on_change()

    async def close(self) -> None:
        for provider in self._providers.values():
            await provider.close()
        self._ready.clear()
