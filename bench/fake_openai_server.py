"""The tests' OpenAI wire fake (tests/fakes/openai_server.py) in a process of its own.

Run by the benchmarks through ``harness.HelperServer``: prints ``ready <base_url>`` and serves until its
stdin closes. A process of its own keeps the fake off the benchmark client's GIL.

The fake parses each multipart upload with the standard library's MIME parser and decodes the whole
recording, about 40 ms of CPU for a 6 s WAV: on two cores that would make the fake, not the gateway, what a
benchmark measures. Its transcription reply depends only on the form it receives, so a form seen before is
answered from a memo (keyed by the body with its random multipart boundary taken out).
"""

from __future__ import annotations

import hashlib
import re
import sys
import threading

from tests.fakes.base import Recorded, Reply
from tests.fakes.openai_server import FakeOpenAI

_MEMO_ENTRIES = 64


class MemoizedFakeOpenAI(FakeOpenAI):
    def __init__(self) -> None:
        super().__init__()
        self._replies: dict[bytes, Reply] = {}

    def _transcribe(self, recorded: Recorded, match: re.Match[str]) -> Reply:
        boundary = recorded.headers.get("content-type", "").partition("boundary=")[2].strip('"')
        if not boundary:
            return super()._transcribe(recorded, match)
        key = hashlib.blake2b(recorded.body.replace(boundary.encode(), b"")).digest()
        reply = self._replies.get(key)
        if reply is None:
            reply = super()._transcribe(recorded, match)
            if len(self._replies) < _MEMO_ENTRIES:
                self._replies[key] = reply
        return reply


def main() -> None:
    stdin_closed = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stdin_closed.set()), daemon=True).start()
    with MemoizedFakeOpenAI() as fake:
        print(f"ready {fake.base_url}", flush=True)
        # The fake records every request it serves; a benchmark sends tens of thousands of uploads.
        while not stdin_closed.wait(0.5):
            fake.reset()


if __name__ == "__main__":
    main()
