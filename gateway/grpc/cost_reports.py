"""The CostReports service: thin like the others (convert, build the report, convert back)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import grpc

from gateway.api.v1 import cost_reports_pb2 as pb
from gateway.api.v1 import cost_reports_pb2_grpc as pb_grpc
from gateway.grpc.interceptors import tenant_var
from gateway.ledger import reports
from gateway.ledger.store import Ledger
from gateway.money.pricing import PriceBook
from gateway.routing.policy_store import PolicyStore

_GROUP = {
    pb.GROUP_BY_DAY: "day",
    pb.GROUP_BY_TENANT: "tenant",
    pb.GROUP_BY_PROVIDER: "provider",
    pb.GROUP_BY_OPERATION: "operation",
}
_GROUP_OUT = {v: k for k, v in _GROUP.items()}


class CostReportsServicer(pb_grpc.CostReportsServicer):
    def __init__(self, ledger: Ledger, policies: PolicyStore, prices: PriceBook) -> None:
        self._ledger = ledger
        self._policies = policies
        self._prices = prices

    async def GetCostReport(
        self, request: pb.GetCostReportRequest, context: grpc.aio.ServicerContext
    ) -> pb.CostReport:
        caller = tenant_var.get()
        if caller is None:
            raise RuntimeError("the request interceptor did not authenticate this call")
        tenant = reports.visible_tenant(caller, request.tenant, self._policies.book.auth_required)
        since, until = reports.resolve_range(request.since, request.until, datetime.now(UTC).date())
        group_by = [_GROUP[g] for g in request.group_by if g in _GROUP]
        report = await reports.build_report(self._ledger, tenant, since, until, group_by)
        return pb.CostReport(
            since=report.since.isoformat(),
            until=report.until.isoformat(),
            group_by=[_GROUP_OUT[g] for g in report.group_by],
            rows=[_row(r) for r in report.rows],
            total=_row(report.total),
            price_book_version=self._prices.version,
        )


def _money(value: Decimal) -> str:
    return format(value.normalize(), "f") if value else "0"


def _row(r: reports.ReportRow) -> pb.CostReportRow:
    local = _money(r.counterfactual_local_usd) if r.counterfactual_local_requests else ""
    return pb.CostReportRow(
        day=r.day,
        tenant=r.tenant,
        provider=r.provider,
        operation=r.operation,
        requests=r.requests,
        attempts=r.attempts,
        failures=r.failures,
        cache_hits=r.cache_hits,
        cost_usd=_money(r.cost_usd),
        saved_usd=_money(r.saved_usd),
        counterfactual_cloud_usd=_money(r.counterfactual_cloud_usd),
        counterfactual_local_usd=local,
        units=pb.Units(
            audio_seconds=float(r.audio_seconds),
            characters=r.characters,
            input_tokens=r.input_tokens,
            audio_input_tokens=r.audio_input_tokens,
            output_tokens=r.output_tokens,
            compute_seconds=float(r.compute_seconds),
        ),
    )
