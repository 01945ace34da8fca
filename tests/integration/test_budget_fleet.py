"""Three gateway processes sharing one Redis race for one tenant's budget, and never overspend it.

Each process is tests/integration/budget_gateway.py: either the real RedisBudgets doing reserve → in
flight → settle, as the router does per request, or a whole gateway replica answering questions over gRPC.
A barrier file starts all three at the same moment, and this test samples the tenant's Redis total the
whole time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from uuid import uuid4

import pytest
import redis

REPO = Path(__file__).resolve().parents[2]
NANO = 10**9
COST = Decimal("0.30")
LIMIT = COST * 50  # room for exactly 50 requests at their estimate
SHARES = (67, 67, 66)  # 200 requests in all
TENANT = "acme"


def _start(
    share: int, redis_url: str, prefix: str, barrier: Path, actual: Decimal, **extra: str
) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "PREFIX": prefix,
        "TENANT": TENANT,
        "LIMIT_USD": str(LIMIT),
        "COST_USD": str(COST),
        "ACTUAL_USD": str(actual),
        "N_REQUESTS": str(share),
        # 3 × 16 in flight is just under 50, so the limit is crossed while every process has requests out.
        "CONCURRENCY": "16",
        "BARRIER": str(barrier),
        **extra,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "tests.integration.budget_gateway"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_until_ready(procs: list[subprocess.Popen[str]], barrier: Path) -> None:
    deadline = time.monotonic() + 60
    while len(list(barrier.parent.glob(f"{barrier.name}.ready.*"))) < len(procs):
        for proc in procs:
            if proc.poll() is not None:
                _, err = proc.communicate()
                pytest.fail(f"a budget gateway exited before the start (rc {proc.returncode}):\n{err}")
        assert time.monotonic() < deadline, "the budget gateways never became ready"
        time.sleep(0.01)


@pytest.mark.parametrize(
    "actual",
    [
        pytest.param(COST, id="actual-equals-estimate"),
        pytest.param(COST / 3, id="actual-below-estimate"),
        pytest.param(COST * Decimal("1.2"), id="actual-above-estimate"),
    ],
)
def test_three_gateways_sharing_redis_never_overspend(redis_url: str, tmp_path: Path, actual: Decimal):
    prefix = f"test:{uuid4().hex}:"
    key = f"{prefix}budget:{TENANT}:{datetime.now(UTC):%Y-%m}"
    barrier = tmp_path / "start"
    client = redis.Redis.from_url(redis_url)
    procs = [_start(share, redis_url, prefix, barrier, actual) for share in SHARES]
    try:
        _wait_until_ready(procs, barrier)
        barrier.touch()
        peak = 0
        while any(proc.poll() is None for proc in procs):
            peak = max(peak, int(client.get(key) or 0))
        outputs = [proc.communicate(timeout=60) for proc in procs]
        final = int(client.get(key) or 0)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        client.delete(key)
        client.close()

    for proc, (_, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
    reports = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]
    admitted = sum(r["admitted"] for r in reports)
    # Every process answered each of its requests. Which of them won reservations is up to scheduling; that
    # they shared one budget is not: each one's share (67) would alone admit more than the 50 that fit.
    assert [r["admitted"] + r["refused"] for r in reports] == list(SHARES), reports
    assert all(r["unavailable"] == 0 for r in reports), reports
    assert final == admitted * int(actual * NANO), "settlement left the total off the actual costs"
    peak = max(peak, *(int(Decimal(r["max_seen_usd"]) * NANO) for r in reports))

    limit, cost = int(LIMIT * NANO), int(COST * NANO)
    if actual == COST:
        # The reservation check is strict, so exactly the 50 that fit get in (not 51), and with exact
        # estimates the total never passes the limit at all, let alone by one request's cost.
        assert admitted == 50, reports
        assert peak <= limit + cost
        assert peak == final == limit
    elif actual < COST:
        # Settling below the estimate hands budget back to every process, so more requests fit.
        assert admitted > 50, reports
        assert peak <= limit
    else:
        # Overruns are charged in full; no request is admitted once reservations reach the limit, so at most
        # the 50 that fit by their estimates run, each overrunning by its own difference only.
        assert admitted <= 50, reports
        assert final <= 50 * int(actual * NANO)


def _race(
    procs: list[subprocess.Popen[str]], barrier: Path, client: redis.Redis, key: str
) -> tuple[list[dict[str, object]], int, int]:
    """Start the processes together; their reports, the peak total seen, and the final total (nano-USD)."""
    _wait_until_ready(procs, barrier)
    barrier.touch()
    peak = 0
    while any(proc.poll() is None for proc in procs):
        peak = max(peak, int(client.get(key) or 0))
        time.sleep(0.005)
    outputs = [proc.communicate(timeout=60) for proc in procs]
    for proc, (_, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
    return [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs], peak, int(client.get(key) or 0)


ANSWER_BUDGET = Decimal("0.05")
ANSWER_TOKENS = 4000
OUTPUT_USD_PER_TOKEN = Decimal("0.000001")  # 4000 tokens: $0.004 an answer, so about a dozen fit


def test_three_replicas_hold_long_answers_to_the_budget(redis_url: str, tmp_path: Path):
    # Sixty questions at once, twenty through each replica, each answered at its full 4000-token allowance.
    # Reserving a short "expected" answer let every one of them through: about five times the budget.
    prefix = f"test:{uuid4().hex}:"
    key = f"{prefix}budget:{TENANT}:{datetime.now(UTC):%Y-%m}"
    barrier = tmp_path / "start"
    client = redis.Redis.from_url(redis_url)
    env = {
        "MODE": "understand",
        "LIMIT_USD": str(ANSWER_BUDGET),
        "CONCURRENCY": "20",
        "MAX_INFLIGHT_S": "0.05",
        "ANSWER_TOKENS": str(ANSWER_TOKENS),
        "OUTPUT_USD_PER_TOKEN": str(OUTPUT_USD_PER_TOKEN),
    }
    procs = [_start(20, redis_url, prefix, barrier, COST, **env) for _ in range(3)]
    try:
        reports, peak, final = _race(procs, barrier, client, key)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        client.delete(key)
        client.close()

    assert [r["admitted"] + r["refused"] for r in reports] == [20, 20, 20], reports
    assert all(r["unavailable"] == 0 for r in reports), reports
    admitted = sum(int(r["admitted"]) for r in reports)
    assert 0 < admitted < 60, reports  # the budget bound, and something fitted in it
    one_request = max(Decimal(str(r["max_cost_usd"])) for r in reports)
    assert one_request >= ANSWER_TOKENS * OUTPUT_USD_PER_TOKEN  # the answers did use their allowance
    spent = Decimal(final).scaleb(-9)
    assert spent <= ANSWER_BUDGET + one_request, (spent, reports)
    assert Decimal(peak).scaleb(-9) <= ANSWER_BUDGET + one_request, (peak, reports)
    # The total is what the answered requests cost, plus transcriptions of questions refused afterwards.
    assert sum(Decimal(str(r["spent_usd"])) for r in reports) <= spent
