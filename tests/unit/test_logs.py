"""The log sink: one JSON object per line, each line written whole."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import structlog

from gateway.settings import LogSettings
from gateway.telemetry.logs import configure


class Writes:
    """A stream that remembers each write it was given."""

    def __init__(self) -> None:
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return len(text)

    def flush(self) -> None:
        pass


@pytest.fixture
def restored() -> Iterator[None]:
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


def test_each_json_line_is_one_write_ending_in_its_newline(restored: None):
    stream = Writes()
    configure(LogSettings(format="json", level="info"), stream=stream)  # type: ignore[arg-type]
    log = structlog.get_logger("test")
    log.info("request.served", request_key="k1", cost_usd="0.00058")
    log.warning("ledger.ack_timeout", timeout_s=5.0)
    log.debug("below.the.level")
    # A reader tailing the file never sees a line without its end, and a line costs one system call.
    assert len(stream.writes) == 2
    assert all(w.endswith("\n") and w.count("\n") == 1 for w in stream.writes)
    events = [json.loads(w) for w in stream.writes]
    assert [e["event"] for e in events] == ["request.served", "ledger.ack_timeout"]
    assert events[0]["request_key"] == "k1" and events[1]["level"] == "warning"
