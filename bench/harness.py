"""What the benchmarks share: servers in processes of their own, load at a fixed concurrency, percentiles.

Every server under test runs in its own process so that the benchmark client never shares a GIL (or an
event loop) with what it measures; on a two-core box that is the difference between measuring the gateway
and measuring the client.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from types import TracebackType

import grpc
import numpy as np
import redis
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parent.parent
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
ENGINES_OFF = {
    "GATEWAY_WHISPER__ENABLED": "false",
    "GATEWAY_PIPER__ENABLED": "false",
    "GATEWAY_LLAMA__ENABLED": "false",
}
# The key the fake OpenAI expects nothing of; it still travels the way a real one would.
OPENAI_KEY_ENV = "BENCH_OPENAI_API_KEY"
OPENAI_SECRETS = {OPENAI_KEY_ENV: "sk-bench-fake"}
OPENAI_PROVIDER = "openai-whisper"
_PR_SET_PDEATHSIG = 1

Call = Callable[[], Awaitable[object]]


def argument_parser(doc: str | None, quick_help: str) -> argparse.ArgumentParser:
    """The options every benchmark takes: ``--quick`` (a smoke run) and ``--redis-url``."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL, help="the Redis the gateway uses")
    return parser


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """Distinct free loopback ports: every socket stays bound until all are picked, so none repeats."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in sockets]


def openai_provider_settings(base_url: str) -> dict[str, str]:
    """Settings for a gateway with no local engines and one provider, ``openai-whisper``, at ``base_url``."""
    entry = {
        "name": OPENAI_PROVIDER,
        "kind": "openai",
        "operation": "transcribe",
        "model": "whisper-1",
        "base_url": base_url,
        "api_key_env": OPENAI_KEY_ENV,
    }
    path = Path(tempfile.mkdtemp(prefix="gw-bench-providers-")) / "providers.yaml"
    path.write_text(yaml.safe_dump({"providers": [entry]}), encoding="utf-8")
    # Throughput is measured at c=64: the admission cap (16 transcriptions by default) would refuse most of
    # the load, and a refusal is not what these benchmarks time.
    return {**ENGINES_OFF, "GATEWAY_PROVIDERS_FILE": str(path), "GATEWAY_ADMISSION__TRANSCRIBE": "0"}


def _child_env(overrides: Mapping[str, str]) -> dict[str, str]:
    # The package is installed editable from another tree: put this checkout first. Inherited GATEWAY_*
    # variables are dropped so the configuration a benchmark prints is the whole configuration.
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    return {**env, **overrides}


def _die_with_parent() -> None:
    # Runs in the child before exec: a benchmark killed mid-run must not leave a gateway holding its port,
    # its memory and a core. Linux only, like the VmHWM the benchmarks read.
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _log_tail(path: Path, lines: int = 30) -> str:
    text = path.read_text(errors="replace") if path.exists() else ""
    return "\n".join(text.splitlines()[-lines:])


class HelperServer:
    """``python -m <module> <args>`` that prints ``ready <address>`` and serves until its stdin closes.

    Closing stdin (rather than a signal) also ends the helper when the benchmark itself dies.
    """

    def __init__(self, module: str, *args: str) -> None:
        self._argv = [sys.executable, "-m", module, *args]
        self._proc: subprocess.Popen[str] | None = None
        self.address = ""

    def __enter__(self) -> HelperServer:
        self._proc = subprocess.Popen(
            self._argv, cwd=REPO, env=_child_env({}), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline().strip()
        if not line.startswith("ready "):
            self._proc.kill()
            raise RuntimeError(f"{' '.join(self._argv[2:])} did not start (said {line!r})")
        self.address = line.removeprefix("ready ")
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._proc is not None and self._proc.stdin is not None
        self._proc.stdin.close()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


class GatewayProcess:
    """``audio-gateway serve`` in a subprocess, configured only by the given GATEWAY_* settings.

    Adds what every benchmark needs on a shared machine: a free loopback port, metrics on a free port,
    a private ledger spool, and a Redis key prefix of its own (deleted on exit).
    """

    def __init__(
        self,
        settings: Mapping[str, str],
        redis_url: str,
        secrets: Mapping[str, str] | None = None,
        ready_timeout_s: float = 180.0,
    ) -> None:
        # Every port is picked here, none left to the kernel at bind time: the metrics server binds
        # first, and an ephemeral pick of its own could land on the gRPC port chosen below.
        self.port, self.http_port, self._metrics_port = free_ports(3)
        self._workdir = Path(tempfile.mkdtemp(prefix="gw-bench-"))
        self.key_prefix = f"bench:{uuid.uuid4().hex[:12]}:"
        self._redis_url = redis_url
        self.settings = {
            "GATEWAY_REDIS__URL": redis_url,
            "GATEWAY_LOG__FORMAT": "json",
            "GATEWAY_LOG__LEVEL": "info",
            **settings,
        }
        # Secrets go to the process but never into describe(), which the benchmarks print.
        self._env = {
            **(secrets or {}),
            # The HTTP API is off unless a benchmark's settings turn it on: most measure gRPC, and FastAPI
            # only slows the gateway's start.
            "GATEWAY_HTTP__ENABLED": "false",
            **self.settings,
            "GATEWAY_SERVER__HOST": "127.0.0.1",
            "GATEWAY_SERVER__PORT": str(self.port),
            # The HTTP door on loopback, on a port of its own, so that benchmarks run side by side.
            "GATEWAY_HTTP__HOST": "127.0.0.1",
            "GATEWAY_HTTP__PORT": str(self.http_port),
            "GATEWAY_SERVER__SHUTDOWN_GRACE_S": "5",
            "GATEWAY_METRICS__HOST": "127.0.0.1",
            "GATEWAY_METRICS__PORT": str(self._metrics_port),
            "GATEWAY_LEDGER__SPOOL_DIR": str(self._workdir / "spool"),
            "GATEWAY_REDIS__KEY_PREFIX": self.key_prefix,
        }
        self.log_path = self._workdir / "gateway.log"
        self._ready_timeout_s = ready_timeout_s
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def http_base_url(self) -> str:
        """The OpenAI-compatible API, as an OpenAI SDK's ``base_url``."""
        return f"http://127.0.0.1:{self.http_port}/v1"

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    def describe(self) -> str:
        """The configuration, as the environment the process was given (paths and ports left out)."""
        return " ".join(f"{k}={v}" for k, v in sorted(self.settings.items()))

    def exit_code(self) -> int | None:
        assert self._proc is not None
        return self._proc.poll()

    def metrics_port(self) -> int:
        """The port /metrics listens on, from its ``metrics.listening`` line (none when metrics are off)."""
        for line in self.log_path.read_text(errors="replace").splitlines():
            if '"metrics.listening"' in line:
                return int(json.loads(line)["port"])
        raise RuntimeError("the gateway logged no metrics port")

    def histogram_buckets(self, name: str) -> dict[tuple[str, float], float]:
        """A histogram's cumulative bucket counts from /metrics, keyed by (label values, upper bound)."""
        url = f"http://127.0.0.1:{self.metrics_port()}/metrics"
        with urllib.request.urlopen(url, timeout=10) as reply:
            text = reply.read().decode()
        buckets: dict[tuple[str, float], float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == f"{name}_bucket":
                    labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()) if k != "le")
                    buckets[(labels, float(sample.labels["le"]))] = sample.value
        return buckets

    def peak_rss_bytes(self) -> int:
        """The process's high-water resident set (VmHWM), which includes every thread and native buffer."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("this kernel does not report VmHWM")

    def __enter__(self) -> GatewayProcess:
        with self.log_path.open("wb") as log:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "gateway.cli.main", "serve"],
                cwd=REPO,
                env=_child_env(self._env),
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,
            )
        try:
            self._wait_serving()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _wait_serving(self) -> None:
        deadline = time.monotonic() + self._ready_timeout_s
        with grpc.insecure_channel(self.target) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            while True:
                if self.exit_code() is not None:
                    raise RuntimeError(f"the gateway exited during start-up:\n{_log_tail(self.log_path)}")
                with contextlib.suppress(grpc.RpcError):
                    reply = health.Check(health_pb2.HealthCheckRequest(), timeout=2)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the gateway never became SERVING:\n{_log_tail(self.log_path)}")
                time.sleep(0.2)

    def __exit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc: BaseException | None = None,
        tb: TracebackType | None = None,
    ) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            # Engine threads still busy with an abandoned request keep the interpreter from exiting;
            # the drain (GATEWAY_SERVER__SHUTDOWN_GRACE_S=5) has run by then and nothing is left to measure.
            try:
                self._proc.wait(timeout=6)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        _delete_keys(self._redis_url, self.key_prefix)


def _delete_keys(url: str, prefix: str) -> None:
    """Leave the shared Redis as it was: the gateway's cache, ledger and rollups live under its prefix."""
    with contextlib.suppress(redis.RedisError), redis.Redis.from_url(url, socket_timeout=2) as client:
        batch = list(client.scan_iter(match=f"{prefix}*", count=1000))
        for start in range(0, len(batch), 1000):
            client.delete(*batch[start : start + 1000])


# -- load ----------------------------------------------------------------------------------------------


async def requests_per_second(call: Call, concurrency: int, total: int) -> float:
    """Complete ``total`` calls with ``concurrency`` of them in flight at all times."""
    tickets = iter(range(total))

    async def worker() -> None:
        for _ in tickets:
            await call()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(min(concurrency, total))))
    return total / (time.perf_counter() - started)


async def interleaved_throughput(
    sides: Mapping[str, Call], concurrency: int, per_round: int, rounds: int
) -> dict[str, list[float]]:
    """Requests/s of each side, round by round, with the order alternating so drift hits both alike."""
    names = list(sides)
    results: dict[str, list[float]] = {name: [] for name in names}
    for index in range(rounds):
        for name in names if index % 2 == 0 else reversed(names):
            results[name].append(await requests_per_second(sides[name], concurrency, per_round))
    return results


async def interleaved_latency(sides: Mapping[str, Call], rounds: int) -> dict[str, list[float]]:
    """One call of each side per round, alternating which goes first; seconds per call."""
    names = list(sides)
    results: dict[str, list[float]] = {name: [] for name in names}
    for index in range(rounds):
        for name in names if index % 2 == 0 else reversed(names):
            started = time.perf_counter()
            await sides[name]()
            results[name].append(time.perf_counter() - started)
    return results


def percentile_ms(seconds: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(seconds) * 1000.0, q))


def median_ratio(numerators: list[float], denominators: list[float]) -> float:
    """The median of per-round ratios: each round's two sides saw the same machine load."""
    return float(np.median(np.asarray(numerators) / np.asarray(denominators)))


def report(metric: str, value: str, goal: str, met: bool, detail: str = "") -> None:
    """One result line: what was measured, its goal and whether the goal was met, then how it was measured."""
    print(f"{metric}: {value}  goal {goal}: {'MET' if met else 'NOT MET'}{f'  ({detail})' if detail else ''}")


def report_added_latency(
    latency: Mapping[str, list[float]], goals_ms: Mapping[int, float], rounds: int
) -> None:
    """The latency the gateway adds at each percentile: its calls' minus the direct calls', against a goal,
    with both sides' figures and their ratio."""
    for q, goal in goals_ms.items():
        gateway_ms, direct_ms = percentile_ms(latency["gateway"], q), percentile_ms(latency["direct"], q)
        added = gateway_ms - direct_ms
        report(
            f"c=1 added latency p{q}",
            f"{added:+.2f} ms",
            f"<= {goal:g} ms",
            added <= goal,
            f"gateway {gateway_ms:.2f} ms, direct {direct_ms:.2f} ms, ratio {gateway_ms / direct_ms:.2f}; "
            f"{rounds} interleaved rounds",
        )
