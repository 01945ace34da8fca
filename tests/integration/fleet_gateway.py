"""One gateway replica for fleet tests: a fake cloud transcriber at a fixed price, sharing Redis.

Environment: REDIS_URL, PREFIX, PRICE_PER_S (USD per audio second);
optional POLICIES_FILE, DELAY_S, SPOOL_DIR.
Prints the port as one JSON line once serving, then runs until SIGTERM.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from decimal import Decimal
from pathlib import Path

from gateway.core.provider_types import Locality
from gateway.grpc.server import GatewayServer
from gateway.money.pricing import UnitPrices
from gateway.telemetry.logs import configure
from providers.testing import FakeTranscriber
from tests.conftest import local_settings


async def main() -> None:
    settings = local_settings()
    settings.redis.url = os.environ["REDIS_URL"]
    settings.redis.key_prefix = os.environ["PREFIX"]
    # Three replicas and their Redis share two cores here: leave room for scheduling delays.
    settings.redis.timeout_s = 2.0
    if os.environ.get("POLICIES_FILE"):
        settings.policies_file = Path(os.environ["POLICIES_FILE"])
    if os.environ.get("SPOOL_DIR"):
        settings.ledger.spool_dir = Path(os.environ["SPOOL_DIR"])
    settings.log.level = "warning"
    configure(settings.log)  # logs to stderr: stdout carries the port line
    fake = FakeTranscriber(
        name="cloud-stt", locality=Locality.CLOUD, delay_s=float(os.environ.get("DELAY_S", "0"))
    )
    prices = {("cloud-stt", fake.model): UnitPrices(per_audio_second=Decimal(os.environ["PRICE_PER_S"]))}
    server = GatewayServer(settings, providers=[fake], prices=prices)
    port = await server.start()
    await server.wait_ready(10)
    print(json.dumps({"port": port}), flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await server.stop(5)


if __name__ == "__main__":
    asyncio.run(main())
