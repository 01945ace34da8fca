"""`audio-gateway serve` with no Redis URL runs its own Valkey: reports and the cache work out of the box."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from gateway.cli import main as cli
from gateway.cli.report_render import MONEY_PLACES, _fmt_money
from tests.audio_files import encode, tone
from tests.redis_servers import free_port

pytestmark = pytest.mark.engines


@pytest.fixture
def state_dir() -> Iterator[Path]:
    # Short, unlike tmp_path: the socket's path must fit a unix socket address.
    path = Path(tempfile.mkdtemp(prefix="gw-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _serve(tmp_path: Path, state_dir: Path, port: int) -> subprocess.Popen[bytes]:
    env = {
        key: value for key, value in os.environ.items() if key not in ("GATEWAY_REDIS__URL", "GATEWAY_TARGET")
    }
    env.update(
        {
            "GATEWAY_SERVER__HOST": "127.0.0.1",
            "GATEWAY_SERVER__PORT": str(port),
            "GATEWAY_METRICS__ENABLED": "false",
            "GATEWAY_LOG__FORMAT": "json",
            "GATEWAY_PIPER__ENABLED": "false",
            "GATEWAY_LLAMA__ENABLED": "false",
            "GATEWAY_LEDGER__SPOOL_DIR": str(tmp_path / "spool"),
            "GATEWAY_REDIS__EMBEDDED_DIR": str(state_dir / "valkey"),
        }
    )
    log = (tmp_path / f"serve-{port}.log").open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "gateway.cli.main", "serve"], env=env, stdout=log, stderr=log
    )


def _stop(proc: subprocess.Popen[bytes]) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=60)


def _logs(tmp_path: Path) -> str:
    return "".join(p.read_text() for p in sorted(tmp_path.glob("serve-*.log")))


def _json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict:
    assert cli.main([*argv, "--json", "--timeout", "60"]) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def _shown_amount(amount: Decimal) -> str:
    """The amount as the report's table prints it."""
    return _fmt_money(amount, MONEY_PLACES)


def test_serve_without_a_redis_url_keeps_reports_and_the_cache(tmp_path, state_dir, capsys):
    clip = tmp_path / "clip.wav"
    clip.write_bytes(encode(tone(1.0), 16_000, "wav"))
    port = free_port()
    target = f"127.0.0.1:{port}"
    proc = _serve(tmp_path, state_dir, port)
    try:
        assert cli.main(["health", "--target", target, "--wait", "180"]) == 0, _logs(tmp_path)
        capsys.readouterr()
        socket_path = state_dir / "valkey" / "valkey.sock"
        assert socket_path.is_socket()

        first = _json(capsys, "transcribe", str(clip), "--target", target)
        assert first["route"]["cache_hit"] is False
        # The README's quick start: `audio-gateway report` right after the first transcription.
        assert cli.main(["report", "--target", target, "--timeout", "60"]) == 0
        table = capsys.readouterr().out
        total = next(line for line in table.splitlines() if "TOTAL" in line)
        assert total.split()[1] == "1", table  # one request
        cost = Decimal(first["route"]["cost_usd"])
        assert cost > 0 and _shown_amount(cost) in total, table
        report = _json(capsys, "report", "--target", target, "--group-by", "provider")
        assert report["total"]["requests"] == "1"
        assert [row["provider"] for row in report["rows"]] == [first["route"]["provider"]]

        again = _json(capsys, "transcribe", str(clip), "--target", target)
        assert again["route"]["cache_hit"] is True
        assert again["text"] == first["text"]
        report = _json(capsys, "report", "--target", target)
        assert (report["total"]["requests"], report["total"]["cache_hits"]) == ("2", "1")
    finally:
        assert _stop(proc) == 0
    # The store stopped with the gateway...
    assert not socket_path.exists()
    logs = _logs(tmp_path)
    assert "state.embedded_stopped" in logs and "Traceback" not in logs

    # ...and its append-only file brings the ledger and the cache back with the next one.
    port = free_port()
    target = f"127.0.0.1:{port}"
    proc = _serve(tmp_path, state_dir, port)
    try:
        assert cli.main(["health", "--target", target, "--wait", "180"]) == 0, _logs(tmp_path)
        capsys.readouterr()
        report = _json(capsys, "report", "--target", target)
        assert report["total"]["requests"] == "2"
        assert _json(capsys, "transcribe", str(clip), "--target", target)["route"]["cache_hit"] is True
    finally:
        assert _stop(proc) == 0


def test_a_killed_gateways_store_is_taken_over_by_the_next(tmp_path, state_dir, capsys):
    port = free_port()
    proc = _serve(tmp_path, state_dir, port)
    socket_path = state_dir / "valkey" / "valkey.sock"
    try:
        deadline = time.monotonic() + 60
        while not socket_path.is_socket():
            assert proc.poll() is None and time.monotonic() < deadline, "the embedded store never started"
            time.sleep(0.1)
    finally:
        proc.kill()  # no chance to stop its Valkey
        proc.wait(timeout=10)
    assert socket_path.is_socket()  # the orphan still runs

    port = free_port()
    proc = _serve(tmp_path, state_dir, port)
    try:
        assert cli.main(["health", "--target", f"127.0.0.1:{port}", "--wait", "180"]) == 0, _logs(tmp_path)
        capsys.readouterr()
        report = _json(capsys, "report", "--target", f"127.0.0.1:{port}")
        assert report["total"]["requests"] == "0"
    finally:
        assert _stop(proc) == 0
    logs = _logs(tmp_path)
    assert "state.embedded_orphan_stopped" in logs
    assert not socket_path.exists()
