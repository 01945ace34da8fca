"""Requests no provider answered are named "rejected" in the cost report, never a blank provider."""

from __future__ import annotations

import re

from rich.console import Console

from gateway.api.v1 import cost_reports_pb2 as pb
from gateway.cli.report_render import report_html, report_table

DAY_PROVIDER = [pb.GROUP_BY_DAY, pb.GROUP_BY_PROVIDER]


def traffic(rejected_cost: str = "0") -> pb.CostReport:
    rows = [
        pb.CostReportRow(day="2025-03-01", provider="faster-whisper", requests=6, cost_usd="0.0018"),
        pb.CostReportRow(day="2025-03-01", provider="", requests=3, cost_usd=rejected_cost),
        pb.CostReportRow(day="2025-03-02", provider="faster-whisper", requests=2, cost_usd="0.0006"),
    ]
    return pb.CostReport(since="2025-03-01", until="2025-03-02", group_by=DAY_PROVIDER, rows=rows)


def legend(page: str) -> list[str]:
    block = page.split('<ul class="legend" aria-label="Legend">')[1].split("</ul>")[0]
    return re.findall(r'<span class="swatch"[^>]*></span>([^<]*)</li>', block)


def test_rejected_requests_that_cost_nothing_stay_out_of_the_chart_but_are_counted():
    page = report_html(traffic())
    assert legend(page) == ["faster-whisper"]
    assert 'data-series=""' not in page
    assert (
        "3 request(s) were rejected (no provider answered them): they cost nothing and are not drawn." in page
    )
    assert re.search(r"<td[^>]*>rejected</td>", page)


def test_rejected_requests_with_billed_failed_calls_are_drawn_under_a_label():
    page = report_html(traffic(rejected_cost="0.0004"))
    assert legend(page) == ["faster-whisper", "rejected"]
    assert 'data-series="rejected"' in page
    assert "their failed calls cost $0.0004, drawn as \u201crejected\u201d" in page


def test_the_table_names_the_rejected_row():
    console = Console(width=200, record=True)
    console.print(report_table(traffic()))
    lines = console.export_text().splitlines()
    assert any("2025-03-01" in line and "rejected" in line for line in lines)
