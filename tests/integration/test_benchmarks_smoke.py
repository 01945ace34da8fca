"""The benchmarks still run: each, with --quick, exits 0 and prints every result line next to its goal.

The numbers are not checked (a smoke run measures too little, and they all share the machine at once);
the shape is: a configuration line, then one "<metric>: <value>  goal <goal>: MET|NOT MET" line per goal.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.engines, pytest.mark.timeout(300)]

REPO = Path(__file__).resolve().parents[2]
RESULT = re.compile(r"^(?P<metric>[^:\n]+): (?P<value>.+?)  goal (?P<goal>[^:\n]+): (?:MET|NOT MET)\b", re.M)
# Every goal each benchmark prints, by the start of its metric name.
EXPECTED = {
    "cloud_overhead.py": [
        "c=1 added latency p50",
        "c=1 added latency p99",
        "c=64 throughput ratio gateway/direct",
    ],
    "cache_hits.py": [
        "c=1 cache-hit throughput ratio gateway/no-op",
        "c=64 cache-hit throughput ratio gateway/no-op",
    ],
    "stream_vendor_latency.py": ["added latency per result p50"],
    "stream_synthesize.py": ["time to first audio ratio StreamSynthesize/Synthesize"],
    "wer.py": ["tiny.en (the default) short, gateway minus direct"],
    "local_throughput.py": [
        "8 concurrent 10 s requests, throughput ratio gateway/direct sequential",
        "1-minute recording, real-time factor ratio gateway/direct",
    ],
    "hostile_inputs.py": [
        "INTERNAL responses",
        "UNKNOWN responses",
        "health check p99 (whole run)",
        "health check max (whole run)",
        "gateway peak RSS",
    ],
}


def test_each_benchmark_runs_quick_and_prints_its_goals(redis_url):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    started = time.monotonic()
    # Side by side: the point is that they run, and start-ups in a row would take minutes.
    running = {
        name: subprocess.Popen(
            [sys.executable, f"bench/{name}", "--quick", "--redis-url", redis_url],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for name in EXPECTED
    }
    try:
        outputs = {name: proc.communicate(timeout=150)[0] for name, proc in running.items()}
    finally:
        for proc in running.values():
            if proc.poll() is None:
                proc.kill()  # its gateway dies with it; its helper servers see their stdin close
                proc.wait()
    elapsed = time.monotonic() - started

    for name, proc in running.items():
        output = outputs[name]
        assert proc.returncode == 0, f"{name} exited with {proc.returncode}:\n{output}"
        assert re.search(r"^config: gateway subprocess with .*GATEWAY_REDIS__URL=", output, re.M), output
        metrics = {match["metric"] for match in RESULT.finditer(output)}
        assert set(EXPECTED[name]) <= metrics, f"{name} printed {sorted(metrics)}:\n{output}"
    print(f"{len(EXPECTED)} quick benchmarks side by side: {elapsed:.1f} s")


def _run_alone(name: str, *args: str, timeout_s: float = 150) -> str:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, f"bench/{name}", "--quick", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    assert done.returncode == 0, done.stdout
    return done.stdout


def test_the_http_benchmark_runs_quick_and_prints_its_goals(redis_url):
    # On its own: a sixth gateway beside the five above would starve them on a two-core machine.
    output = _run_alone("http_overhead.py", "--redis-url", redis_url)
    assert re.search(r"^config: gateway subprocess with .*GATEWAY_REDIS__URL=", output, re.M), output
    metrics = {match["metric"] for match in RESULT.finditer(output)}
    assert {"c=1 added latency p50", "c=1 added latency p99"} <= metrics, (
        f"printed {sorted(metrics)}:\n{output}"
    )
    assert re.search(r"^openai SDK's own cost per call, p50: -?\d+\.\d\d ms \(", output, re.M), output


STREAM_GOALS = [
    "partial latency p50",
    "partial latency p90",
    "finalization latency p50",
    "final WER ratio stream/batch",
    "c=4 processing RTF",
]


def test_the_stream_benchmark_runs_quick_and_prints_its_goals(redis_url):
    # On its own, after the others: it keeps both cores busy with Whisper, which would starve them.
    output = _run_alone("stream_transcribe.py", "--redis-url", redis_url, timeout_s=240)
    assert re.search(r"^config \[A\]: gateway subprocess, StreamTranscribe over gRPC", output, re.M), output
    metrics = {match["metric"] for match in RESULT.finditer(output)}
    assert set(STREAM_GOALS) <= metrics, f"printed {sorted(metrics)}:\n{output}"
