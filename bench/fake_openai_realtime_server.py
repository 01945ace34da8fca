"""The tests' OpenAI Realtime wire fake (tests/fakes/openai_realtime_server.py) in a process of its own.

Run by the benchmarks through ``harness.HelperServer``: prints ``ready <base_url>`` and serves until its
stdin closes. Every item's transcript is the same three words, one delta per word as its audio arrives and
the whole text when the server's VAD ends the item, so the gateway and a direct client get the same events
for the same audio.
"""

from __future__ import annotations

import sys
import threading

from tests.fakes.openai_realtime_server import FakeOpenAIRealtime


def main() -> None:
    stdin_closed = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stdin_closed.set()), daemon=True).start()
    with FakeOpenAIRealtime() as fake:
        # Items are counted across sessions: a script long enough for any run.
        fake.script = ["alpha bravo charlie"] * 1_000_000
        fake.seconds_per_word = 0.45
        print(f"ready {fake.base_url}", flush=True)
        # The fake records every connection and all the audio it was sent; a benchmark opens hundreds.
        while not stdin_closed.wait(0.5):
            fake.connections.clear()


if __name__ == "__main__":
    main()
