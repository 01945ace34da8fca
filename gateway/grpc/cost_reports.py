"""The CostReports service: thin like the others (convert, build the report, convert back)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import grpc

from gateway.api.v1 import cost_reports_pb2 as pb
from gateway.api.v1 import cost_reports_pb2_grpc as pb_grpc
from gateway.core.errors import InvalidInput
from gateway.grpc.interceptors import tenant_var
from gateway.ledger import reports
from gateway.ledger.store import Ledger, LedgerRecord
from gateway.money.pricing import PriceBook, usd_text
from gateway.routing.policy_store import PolicyStore
from gateway.routing.request_ids import VALID_REQUEST_ID
from policies.model import Tenant

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
        caller = _caller()
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

    async def FindRecords(
        self, request: pb.FindRecordsRequest, context: grpc.aio.ServicerContext
    ) -> pb.FindRecordsResponse:
        caller = _caller()
        if not VALID_REQUEST_ID.match(request.request_id):
            raise InvalidInput(
                "request_id must be the x-request-id the requests carried: 1 to 128 of A-Z a-z 0-9 . _ : -"
            )
        tenant = reports.visible_tenant(caller, request.tenant, self._policies.book.auth_required)
        if tenant is None:
            if caller.admin:
                raise InvalidInput("an admin key sees every tenant: name the tenant whose records to find")
            tenant = caller.name
        records = await self._ledger.find(tenant, request.request_id)
        return pb.FindRecordsResponse(records=[_record(r) for r in records])


def _caller() -> Tenant:
    caller = tenant_var.get()
    if caller is None:
        raise RuntimeError("the request interceptor did not authenticate this call")
    return caller


def _record(r: LedgerRecord) -> pb.LedgerRecord:
    return pb.LedgerRecord(
        record_id=r.record_id,
        request_key=r.request_key,
        request_id=r.request_id,
        kind=r.kind,
        tenant=r.tenant,
        operation=r.operation,
        provider=r.provider,
        model=r.model,
        locality=r.locality,
        outcome=r.outcome,
        cost_usd=_money(r.cost_usd),
        saved_usd=_money(r.saved_usd),
        cache_hit=r.cache_hit,
        billing_unknown=r.billing_unknown,
        possibly_billed_usd=_money(r.possibly_billed_usd),
        latency_ms=r.latency_ms,
        timestamp=r.timestamp,
    )


def _money(value: Decimal) -> str:
    return usd_text(value)


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
        possibly_billed_usd=_money(r.possibly_billed_usd),
        billing_unknown_attempts=r.billing_unknown_attempts,
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
