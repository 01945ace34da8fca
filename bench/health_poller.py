"""grpc.health.v1 Check, polled from a process of its own while a benchmark loads the gateway.

A separate process and channel, like a kubelet's probe: what it measures is the gateway's answer time,
not the benchmark client's own event loop or the HTTP/2 connection the load shares.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

PROBE_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class Probe:
    sent_at: float  # time.time(), to split a run into phases
    latency_s: float  # a probe that failed or timed out counts with the time it took
    serving: bool  # the answer was SERVING (False: NOT_SERVING, an error status or the probe's timeout)


def _poll(target: str, interval_s: float, connected: Event, stop: Event, out: Connection) -> None:
    probes: list[Probe] = []
    request = health_pb2.HealthCheckRequest()
    with grpc.insecure_channel(target) as channel:
        # Connect before the first timed probe, so a probe never includes the TCP and HTTP/2 set-up.
        grpc.channel_ready_future(channel).result(timeout=30)
        connected.set()
        check = health_pb2_grpc.HealthStub(channel).Check
        while not stop.is_set():
            sent_at, started = time.time(), time.perf_counter()
            try:
                serving = (
                    check(request, timeout=PROBE_TIMEOUT_S).status == health_pb2.HealthCheckResponse.SERVING
                )
            except grpc.RpcError:
                serving = False
            probes.append(Probe(sent_at, time.perf_counter() - started, serving))
            stop.wait(interval_s)
    out.send(probes)


class HealthPoller:
    """``with HealthPoller(target) as poller: ...`` then ``poller.probes``."""

    def __init__(self, target: str, interval_s: float = 0.02) -> None:
        context = multiprocessing.get_context("spawn")
        self._stop = context.Event()
        self._connected = context.Event()
        self._receiver, sender = context.Pipe(duplex=False)
        self._process = context.Process(
            target=_poll, args=(target, interval_s, self._connected, self._stop, sender), daemon=True
        )
        self.probes: list[Probe] = []

    def __enter__(self) -> HealthPoller:
        self._process.start()
        if not self._connected.wait(60):
            self._process.kill()
            raise RuntimeError("the health poller could not connect to the gateway")
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        # A poller that died leaves no probes; the benchmark reports that none completed.
        if self._receiver.poll(30):
            with contextlib.suppress(EOFError):
                self.probes = self._receiver.recv()
        self._process.join(10)
        if self._process.is_alive():
            self._process.kill()
