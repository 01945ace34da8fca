"""Cost reports: the ledger's daily rollups summed over a date range and grouped as asked."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal

from gateway.core.errors import InvalidInput, PermissionDenied, clip
from gateway.ledger.rollups import RollupRow
from gateway.ledger.store import Ledger
from policies.model import Tenant

DIMENSIONS = ("day", "tenant", "provider", "operation")
DEFAULT_SPAN = timedelta(days=30)
MAX_SPAN = timedelta(days=400)
# Record timestamps are Unix time: the ledger can hold nothing from before the epoch.
FIRST_DAY = date(1970, 1, 1)


@dataclass
class ReportRow:
    day: str = ""
    tenant: str = ""
    provider: str = ""
    operation: str = ""
    requests: int = 0
    attempts: int = 0
    failures: int = 0
    cache_hits: int = 0
    cost_usd: Decimal = Decimal(0)
    saved_usd: Decimal = Decimal(0)
    # Estimated cost of attempts cancelled or timed out: the vendor may have billed them. Not in cost_usd.
    possibly_billed_usd: Decimal = Decimal(0)
    billing_unknown_attempts: int = 0
    counterfactual_cloud_usd: Decimal = Decimal(0)
    counterfactual_local_usd: Decimal = Decimal(0)
    # Requests a local counterfactual existed for; when fewer than all, the local figure is partial.
    counterfactual_local_requests: int = 0
    audio_seconds: Decimal = Decimal(0)
    characters: int = 0
    input_tokens: int = 0
    audio_input_tokens: int = 0
    output_tokens: int = 0
    compute_seconds: Decimal = Decimal(0)

    def add(self, r: RollupRow) -> None:
        self.requests += r.requests
        self.attempts += r.attempts
        self.failures += r.failures
        self.cache_hits += r.cache_hits
        self.cost_usd += r.cost_usd
        self.saved_usd += r.saved_usd
        self.possibly_billed_usd += r.possibly_billed_usd
        self.billing_unknown_attempts += r.billing_unknown_attempts
        self.counterfactual_cloud_usd += r.counterfactual_cloud_usd
        self.counterfactual_local_usd += r.counterfactual_local_usd
        self.counterfactual_local_requests += r.counterfactual_local_requests
        self.audio_seconds += r.audio_seconds
        self.characters += r.characters
        self.input_tokens += r.input_tokens
        self.audio_input_tokens += r.audio_input_tokens
        self.output_tokens += r.output_tokens
        self.compute_seconds += r.compute_seconds


@dataclass
class Report:
    since: date
    until: date
    group_by: tuple[str, ...]
    rows: list[ReportRow]
    total: ReportRow = field(default_factory=ReportRow)


def resolve_range(since: str, until: str, today: date) -> tuple[date, date]:
    try:
        end = date.fromisoformat(until) if until else today
        start = date.fromisoformat(since) if since else None
    except ValueError as exc:
        raise InvalidInput(f"since and until are days written YYYY-MM-DD: {clip(str(exc))}") from None
    for name, day in (("until", end), ("since", start)):
        if day is not None and day < FIRST_DAY:
            raise InvalidInput(
                f"{name} ({day}) is before {FIRST_DAY}, where the ledger begins; ask for {FIRST_DAY} or later"
            )
    if start is None:
        # Clamped rather than subtracted blindly: 30 days before 1970-01-10 does not exist in the ledger.
        start = max(end - DEFAULT_SPAN, FIRST_DAY)
    if start > end:
        raise InvalidInput(f"since ({start}) is after until ({end})")
    if end - start > MAX_SPAN:
        raise InvalidInput(f"a report covers at most {MAX_SPAN.days} days; narrow since/until")
    return start, end


def visible_tenant(caller: Tenant, requested: str, auth_required: bool) -> str | None:
    """Which tenant's traffic the caller may see: None means every tenant's (admins only)."""
    if not auth_required or caller.admin:
        return requested or None
    if requested and requested != caller.name:
        raise PermissionDenied(
            f"tenant {caller.name!r} may only read its own cost report, not {clip(requested)!r}"
        )
    return caller.name


async def build_report(
    ledger: Ledger, tenant: str | None, since: date, until: date, group_by: Sequence[str]
) -> Report:
    unknown = [g for g in group_by if g not in DIMENSIONS]
    if unknown:
        raise InvalidInput(f"cannot group by {clip(', '.join(unknown))}; use {', '.join(DIMENSIONS)}")
    dims = tuple(d for d in DIMENSIONS if d in group_by)
    rollups = await ledger.rollups(since, until, tenant)
    return aggregate(rollups, since, until, dims)


def aggregate(rollups: Iterable[RollupRow], since: date, until: date, dims: tuple[str, ...]) -> Report:
    groups: dict[tuple[str, ...], ReportRow] = {}
    total = ReportRow()
    for r in rollups:
        values = {
            "day": r.day.isoformat(),
            "tenant": r.tenant,
            "provider": r.provider,
            "operation": r.operation,
        }
        key = tuple(values[d] for d in dims)
        row = groups.get(key)
        if row is None:
            row = groups[key] = ReportRow(**{d: values[d] for d in dims})
        row.add(r)
        total.add(r)
    rows = [groups[k] for k in sorted(groups)]
    return Report(since=since, until=until, group_by=dims, rows=rows, total=total)
