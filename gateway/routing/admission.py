"""Admission control: a cap on calls in flight per operation, with quick refusals past it.

A node has two cores and finite memory (a decoded half-hour upload is about 115 MB of samples). Without a
cap, a burst piles up in memory and every caller waits longer; refusing at once with a retry hint lets a
client back off or go to another replica while the calls already admitted finish in time.

A call past its cap waits at most ``GATEWAY_ADMISSION__MAX_WAIT_S`` (0 by default) for a slot, then gets
:class:`~gateway.core.errors.Overloaded`. There is no other queue here; the engines bound their own work
queues (``max_queued``) and the router turns "every engine busy" into the same error.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from gateway.core.domain import CallKind
from gateway.core.errors import Overloaded
from gateway.core.provider_types import Operation
from gateway.settings import AdmissionSettings
from gateway.telemetry.metrics import Metrics


class _Gate:
    """The slots of one kind of call. ``cap`` 0: unlimited, only counted."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.in_flight = 0
        self._slots = asyncio.Semaphore(cap) if cap else None

    async def enter(self, wait_s: float) -> bool:
        if self._slots is not None and not await _take(self._slots, wait_s):
            return False
        self.in_flight += 1
        return True

    def leave(self) -> None:
        self.in_flight -= 1
        if self._slots is not None:
            self._slots.release()


async def _take(slots: asyncio.Semaphore, wait_s: float) -> bool:
    if not slots.locked():
        await slots.acquire()  # a free slot is taken without suspending
        return True
    if wait_s <= 0:
        return False
    try:
        async with asyncio.timeout(wait_s):
            await slots.acquire()
    except TimeoutError:
        return False
    return True


class Admission:
    def __init__(self, settings: AdmissionSettings, metrics: Metrics) -> None:
        caps = {
            CallKind.TRANSCRIBE: settings.transcribe,
            CallKind.SYNTHESIZE: settings.synthesize,
            CallKind.UNDERSTAND: settings.understand,
            CallKind.EXPLAIN: settings.explain,
        }
        self._gates = {kind: _Gate(cap) for kind, cap in caps.items()}
        for kind, gate in self._gates.items():
            metrics.track_in_flight(kind, lambda gate=gate: gate.in_flight)
        self._max_wait_s = settings.max_wait_s
        self._retry_after_s = settings.retry_after_s
        self._metrics = metrics

    def in_flight(self, call: Operation | CallKind) -> int:
        return self._gates[CallKind(call)].in_flight

    @contextlib.asynccontextmanager
    async def admit(self, call: Operation | CallKind) -> AsyncIterator[None]:
        """Hold one slot of ``call``'s cap for the body; raise :class:`Overloaded` if none frees in time."""
        kind = CallKind(call)
        gate = self._gates[kind]
        if not await gate.enter(self._max_wait_s):
            self._metrics.admission_refused(kind, "concurrency")
            retry = self._retry_after_s
            raise Overloaded(
                f"the gateway is already running its limit of {gate.cap} {kind.value} calls; "
                f"retry in {retry:g} s",
                retry,
            )
        try:
            yield
        except Overloaded:
            # Admitted, but every provider's queue was full.
            self._metrics.admission_refused(kind, "providers_busy")
            raise
        finally:
            gate.leave()
