"""Cost report rendering: table, CSV, JSON and the self-contained HTML page, from hand-built reports.

The amounts are chosen so binary floats would get them wrong (0.1 + 0.2), and the expected totals are
worked out by hand, not by the code under test.
"""

from __future__ import annotations

import csv
import html
import io
import json
import re
from collections.abc import Iterator
from concurrent import futures
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path

import grpc
import pytest
from google.protobuf import json_format
from rich.console import Console
from rich.table import Table

from gateway.api.v1 import cost_reports_pb2 as pb
from gateway.api.v1 import cost_reports_pb2_grpc as pb_grpc
from gateway.cli import main as cli
from gateway.cli.report_render import (
    grouped_dimensions,
    parse_group_by,
    report_csv,
    report_dict,
    report_html,
    report_json,
    report_table,
)

HOSTILE = '<script>alert("x")</script>"><img src=x onerror=alert(1)>'
DAY_PROVIDER = [pb.GROUP_BY_DAY, pb.GROUP_BY_PROVIDER]


def row(day: str = "", provider: str = "", **fields: object) -> pb.CostReportRow:
    return pb.CostReportRow(day=day, provider=provider, **fields)


def daily_report(*, with_total: bool = True) -> pb.CostReport:
    """Three days, three providers; 2025-03-02 has no traffic."""
    rows = [
        row(
            "2025-03-01",
            "faster-whisper",
            requests=10,
            cache_hits=4,
            cost_usd="0.1",
            saved_usd="0.05",
            counterfactual_cloud_usd="0.6",
            counterfactual_local_usd="0.1",
        ),
        row(
            "2025-03-01",
            "openai",
            requests=2,
            cost_usd="0.2",
            saved_usd="0",
            counterfactual_cloud_usd="0.2",
            counterfactual_local_usd="0.04",
        ),
        row(
            "2025-03-03",
            "openai",
            requests=5,
            cache_hits=1,
            cost_usd="0.3",
            saved_usd="0.2",
            counterfactual_cloud_usd="1.5",
            counterfactual_local_usd="0.25",
        ),
        row(
            "2025-03-03",
            HOSTILE,
            requests=1,
            cost_usd="0.00005",
            saved_usd="0",
            counterfactual_cloud_usd="0.01",
        ),
    ]
    report = pb.CostReport(
        since="2025-03-01",
        until="2025-03-03",
        group_by=DAY_PROVIDER,
        rows=rows,
        price_book_version="2025-03-01",
    )
    if with_total:
        # By hand: 0.1 + 0.2 + 0.3 + 0.00005 = 0.60005 (a float sum says 0.6000500000000001).
        report.total.CopyFrom(
            pb.CostReportRow(
                requests=18,
                cache_hits=5,
                cost_usd="0.60005",
                saved_usd="0.25",
                counterfactual_cloud_usd="2.31",
                counterfactual_local_usd="0.39",
            )
        )
    return report


def table_columns(table: Table) -> dict[str, list[str]]:
    """Cells by header, the header's line breaks read as spaces."""
    return {
        str(column.header).replace("\n", " "): [cell.plain for cell in column.cells]
        for column in table.columns
    }


# -- group-by parsing ---------------------------------------------------------------


def test_group_by_names_parse_in_order_without_duplicates():
    assert parse_group_by(" day, Provider ,day") == [pb.GROUP_BY_DAY, pb.GROUP_BY_PROVIDER]
    assert parse_group_by("") == []


def test_unknown_group_by_name_is_refused_with_the_valid_names():
    with pytest.raises(ValueError, match="cannot group by model; use day, tenant, provider, operation"):
        parse_group_by("day,model")


def test_grouped_dimensions_follow_column_order_not_request_order():
    report = pb.CostReport(group_by=[pb.GROUP_BY_OPERATION, pb.GROUP_BY_DAY])
    assert grouped_dimensions(report) == ("day", "operation")


# -- table ---------------------------------------------------------------------------


def test_table_has_columns_for_grouped_dimensions_only_and_totals_to_the_cent():
    columns = table_columns(report_table(daily_report()))

    assert list(columns) == [
        "day",
        "provider",
        "requests",
        "cache hits",
        "cost",
        "cache saved",
        "all cloud",
        "all local",
        "saved vs cloud",
    ]
    assert columns["day"] == ["2025-03-01", "2025-03-01", "2025-03-03", "2025-03-03", "TOTAL"]
    assert columns["provider"][-2:] == [HOSTILE, ""]
    assert columns["requests"][-1] == "18"
    assert columns["cache hits"][-1] == "5"
    assert columns["cost"] == ["0.1000", "0.2000", "0.3000", "0.0001", "0.6001"]  # half up
    assert columns["cache saved"][-1] == "0.2500"
    assert columns["all cloud"][-1] == "2.3100"
    assert columns["all local"] == ["0.1000", "0.0400", "0.2500", "—", "0.3900"]
    # all-cloud minus cost, exactly: 2.31 - 0.60005 = 1.70995.
    assert columns["saved vs cloud"] == ["0.5000", "0.0000", "1.2000", "0.0100", "1.7100"]


def test_table_without_a_total_sums_the_rows_exactly():
    columns = table_columns(report_table(daily_report(with_total=False)))
    assert columns["cost"][-1] == "0.6001"
    assert columns["all cloud"][-1] == "2.3100"
    # Only the groups a local engine could serve have a local figure.
    assert columns["all local"][-1] == "0.3900"


def test_amounts_below_the_rounding_show_two_significant_digits_not_zero():
    report = pb.CostReport(
        rows=[row(cost_usd="0.000000028", counterfactual_cloud_usd="0.00021", counterfactual_local_usd="0")]
    )
    columns = table_columns(report_table(report))
    assert columns["cost"] == ["0.000000028", "0.000000028"]
    assert columns["all local"] == ["0.0000", "0.0000"]  # a real zero stays a zero
    assert columns["saved vs cloud"] == ["0.0002", "0.0002"]


def test_csv_writes_tiny_amounts_in_fixed_point():
    report = pb.CostReport(rows=[row(cost_usd="0.000000028", counterfactual_cloud_usd="0.00021")])
    record = next(csv.DictReader(io.StringIO(report_csv(report))))
    assert record["cost_usd"] == "0.000000028"
    assert record["saved_vs_cloud_usd"] == "0.000209972"


def possibly_billed_report() -> pb.CostReport:
    """A timed-out call to openai that deepgram then answered, and a clean day."""
    return pb.CostReport(
        group_by=DAY_PROVIDER,
        rows=[
            row("2025-03-01", "deepgram", requests=1, attempts=1, cost_usd="0.2"),
            row(
                "2025-03-01",
                "openai",
                attempts=1,
                failures=1,
                cost_usd="0",
                possibly_billed_usd="0.1",
                billing_unknown_attempts=1,
            ),
            row(
                "2025-03-02",
                "openai",
                requests=1,
                attempts=2,
                failures=1,
                cost_usd="0.3",
                possibly_billed_usd="0.0000002",
                billing_unknown_attempts=1,
            ),
        ],
    )


def test_possibly_billed_shows_apart_from_the_cost_wherever_there_is_any():
    report = possibly_billed_report()
    columns = table_columns(report_table(report))
    assert columns["possibly billed"] == ["0.0000", "0.1000", "0.00000020", "0.1000"]
    assert columns["cost"][-1] == "0.5000"  # never added in
    # Without any, the table keeps its usual columns.
    assert "possibly billed" not in table_columns(report_table(daily_report()))

    records = list(csv.DictReader(io.StringIO(report_csv(report))))
    assert [r["possibly_billed_usd"] for r in records] == ["0", "0.1", "0.0000002", "0.1000002"]
    assert [r["billing_unknown_attempts"] for r in records] == ["0", "1", "1", "2"]
    assert records[-1]["cost_usd"] == "0.5"

    page = report_html(report)
    assert "Possibly billed" in page and "$0.1000" in page
    assert "2 provider call(s) were cancelled or timed out" in page
    assert "cancelled or timed out" not in report_html(daily_report())


def test_ungrouped_report_labels_its_single_row_and_the_total():
    report = pb.CostReport(
        rows=[row(requests=3, cost_usd="0.3", counterfactual_cloud_usd="0.9")],
        total=row(requests=3, cost_usd="0.3", counterfactual_cloud_usd="0.9"),
    )
    columns = table_columns(report_table(report))
    assert columns["group"] == ["all", "TOTAL"]
    assert columns["saved vs cloud"] == ["0.6000", "0.6000"]


def test_table_prints_names_literally_never_as_markup():
    report = pb.CostReport(group_by=[pb.GROUP_BY_TENANT], rows=[pb.CostReportRow(tenant="[bold red]acme[/]")])
    console = Console(file=io.StringIO(), width=200, color_system=None)
    console.print(report_table(report))
    assert "[bold red]acme[/]" in console.file.getvalue()


@pytest.mark.parametrize("amount", ["abc", "NaN", "Infinity", "1,5"])
def test_a_malformed_amount_is_refused_not_guessed(amount):
    report = pb.CostReport(rows=[row(cost_usd=amount)])
    with pytest.raises(ValueError, match="cost_usd"):
        report_table(report)


# -- CSV and JSON --------------------------------------------------------------------------


def test_csv_parses_back_to_the_same_exact_numbers():
    report = daily_report(with_total=False)
    records = list(csv.DictReader(io.StringIO(report_csv(report))))

    assert [r["day"] for r in records] == ["2025-03-01", "2025-03-01", "2025-03-03", "2025-03-03", "TOTAL"]
    assert records[3]["provider"] == HOSTILE
    body, total = records[:-1], records[-1]
    for record, source in zip(body, report.rows, strict=True):
        assert Decimal(record["cost_usd"]) == Decimal(source.cost_usd)
        assert int(record["requests"]) == source.requests
    assert records[3]["counterfactual_local_usd"] == ""  # unknown stays unknown, not 0
    # Exact, as a float sum would not be: 0.1 + 0.2 + 0.3 + 0.00005.
    assert total["cost_usd"] == "0.60005"
    assert Decimal(total["cost_usd"]) == sum(Decimal(r["cost_usd"]) for r in body)
    assert total["requests"] == "18"
    assert total["saved_vs_cloud_usd"] == "1.70995"
    assert Decimal(records[0]["saved_vs_cloud_usd"]) == Decimal("0.5")


def test_csv_carries_units():
    report = pb.CostReport(
        rows=[row(units=pb.Units(audio_seconds=12.5, characters=300, output_tokens=7, compute_seconds=0.25))]
    )
    record = next(csv.DictReader(io.StringIO(report_csv(report))))
    assert (record["audio_seconds"], record["characters"], record["output_tokens"]) == ("12.5", "300", "7")
    assert record["compute_seconds"] == "0.25"


def test_csv_total_sums_units_when_the_report_has_no_total():
    report = pb.CostReport(
        rows=[
            row(units=pb.Units(audio_seconds=1.5, characters=10, output_tokens=3)),
            row(units=pb.Units(audio_seconds=2.25, characters=5, output_tokens=4)),
        ]
    )
    total = list(csv.DictReader(io.StringIO(report_csv(report))))[-1]
    assert (total["audio_seconds"], total["characters"], total["output_tokens"]) == ("3.75", "15", "7")


def test_json_round_trips_to_the_same_message():
    report = daily_report()
    text = report_json(report)

    assert json_format.Parse(text, pb.CostReport()) == report
    body = json.loads(text)
    assert body == report_dict(report)
    assert body["group_by"] == ["GROUP_BY_DAY", "GROUP_BY_PROVIDER"]
    assert body["price_book_version"] == "2025-03-01"
    assert body["total"]["cost_usd"] == "0.60005"
    assert body["rows"][0]["tenant"] == ""  # every field present, proto names kept


# -- HTML ------------------------------------------------------------------------------------


def bars(page: str, css_class: str) -> list[dict[str, str]]:
    return [
        dict(re.findall(r'([\w-]+)="([^"]*)"', tag))
        for tag in re.findall(rf'<rect class="{css_class}"[^>]*>', page)
    ]


def test_html_draws_one_cost_bar_per_day_and_provider():
    report = daily_report()
    page = report_html(report)

    cost_bars = bars(page, "cost-bar")
    expected = {(r.day, r.provider) for r in report.rows}
    assert len(cost_bars) == len(expected) == 4
    assert {(b["data-day"], b["data-series"]) for b in cost_bars} == {
        (day, html.escape(provider)) for day, provider in expected
    }
    saved_bars = bars(page, "saved-bar")
    assert [b["data-day"] for b in saved_bars] == ["2025-03-01", "2025-03-03"]
    assert [b["data-series"] for b in bars(page, "compare-bar")] == ["actual", "cloud", "local"]
    assert page.count("<svg") == 3
    assert page.count('role="img"') == 3


def test_html_bar_heights_are_proportional_to_cost():
    page = report_html(daily_report())
    heights = {(b["data-day"], b["data-series"]): float(b["height"]) for b in bars(page, "cost-bar")}
    # 0.2 on 2025-03-01 against 0.3 on 2025-03-03, both openai.
    ratio = heights[("2025-03-01", "openai")] / heights[("2025-03-03", "openai")]
    assert ratio == pytest.approx(0.2 / 0.3, rel=1e-3)
    # Stacked: the day's second segment sits on top of the first.
    first, second = (b for b in bars(page, "cost-bar") if b["data-day"] == "2025-03-01")
    assert float(second["y"]) + float(second["height"]) == pytest.approx(float(first["y"]), abs=0.02)


def test_html_aggregates_extra_dimensions_into_one_bar_per_day_and_provider():
    report = pb.CostReport(
        since="2025-03-01",
        until="2025-03-01",
        group_by=[*DAY_PROVIDER, pb.GROUP_BY_OPERATION],
        rows=[
            pb.CostReportRow(day="2025-03-01", provider="openai", operation="transcribe", cost_usd="0.1"),
            pb.CostReportRow(day="2025-03-01", provider="openai", operation="understand", cost_usd="0.2"),
        ],
    )
    page = report_html(report)
    (bar,) = bars(page, "cost-bar")
    assert "$0.3000" in page[page.index('data-series="openai"') :]
    assert bar["data-day"] == "2025-03-01"


def test_html_of_an_empty_report_still_draws_the_days_and_says_there_is_nothing():
    report = pb.CostReport(since="2025-03-01", until="2025-03-07", group_by=DAY_PROVIDER)
    page = report_html(report)
    assert bars(page, "cost-bar") == [] and bars(page, "saved-bar") == []
    assert page.count("<svg") == 3
    assert ">03-07</text>" in page  # the axis covers the whole range
    assert [b["data-series"] for b in bars(page, "compare-bar")] == ["actual"]
    assert "The report has no cloud counterfactual for this traffic." in page
    assert "No requests were recorded in this range." in page
    assert "No requests were recorded" not in report_html(daily_report())


def test_html_says_which_grouping_a_chart_needs():
    report = pb.CostReport(group_by=[pb.GROUP_BY_OPERATION], rows=[pb.CostReportRow(operation="transcribe")])
    page = report_html(report)
    assert bars(page, "cost-bar") == [] and bars(page, "saved-bar") == []
    assert "needs a report grouped by day and provider; this one is grouped by operation" in page
    assert "needs a report grouped by day; this one is grouped by operation" in page
    assert "--group-by day,provider" in page


def test_html_notes_a_missing_or_partial_local_figure():
    partial = report_html(daily_report(with_total=False))
    assert "the all-local figure covers only the rest" in partial
    none_local = pb.CostReport(rows=[row(requests=1, cost_usd="0.1", counterfactual_cloud_usd="0.1")])
    page = report_html(none_local)
    assert "No local engine could serve this traffic" in page
    assert [b["data-series"] for b in bars(page, "compare-bar")] == ["actual", "cloud"]


def test_html_escapes_hostile_names_everywhere():
    report = daily_report()
    report.rows.append(row("2025-03-03", "acme", requests=1, cost_usd="0.1"))
    report.group_by.append(pb.GROUP_BY_TENANT)
    report.rows[-1].tenant = HOSTILE
    page = report_html(report, title=HOSTILE)

    assert "<script" not in page.lower()
    assert "<img" not in page.lower()
    assert "onerror=alert(1)>" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    # Present in the table, the bar attributes, the tooltips and the title.
    assert page.count("&lt;script&gt;") >= 5


class Markup(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, attrs))


def test_html_is_self_contained():
    page = report_html(daily_report())
    assert "http://" not in page and "https://" not in page
    markup = Markup()
    markup.feed(page)
    tags = {tag for tag, _ in markup.tags}
    assert not tags & {"script", "link", "img", "image", "iframe", "object", "embed", "use", "base"}
    attributes = {name for _, attrs in markup.tags for name, _ in attrs}
    assert not attributes & {"src", "srcset", "href", "xlink:href", "action", "poster"}
    assert "url(" not in page and "@import" not in page
    assert "default-src 'none'" in page


# -- the command line, against a real gRPC server serving a canned report ------------------------


class CannedReports(pb_grpc.CostReportsServicer):
    def __init__(self, reply: pb.CostReport) -> None:
        self.reply = reply
        self.requests: list[pb.GetCostReportRequest] = []
        self.metadata: list[dict[str, str]] = []
        self.refuse: str | None = None

    def GetCostReport(self, request, context):
        self.requests.append(request)
        self.metadata.append(dict(context.invocation_metadata()))
        if self.refuse:
            context.abort(grpc.StatusCode.PERMISSION_DENIED, self.refuse)
        return self.reply


@pytest.fixture
def reports() -> Iterator[tuple[CannedReports, str]]:
    servicer = CannedReports(daily_report())
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    pb_grpc.add_CostReportsServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield servicer, f"127.0.0.1:{port}"
    server.stop(0)


def test_cli_report_prints_the_table_and_sends_the_key(reports, capsys, monkeypatch):
    servicer, target = reports
    monkeypatch.setenv(cli.API_KEY_ENV, "sk-test-report")

    code = cli.main(
        [
            "report",
            "--target",
            target,
            "--tenant",
            "acme",
            "--since",
            "2025-03-01",
            "--group-by",
            "day,provider",
        ]
    )

    out, err = capsys.readouterr()
    assert code == cli.EXIT_OK, err
    (request,) = servicer.requests
    assert (request.tenant, request.since, request.until) == ("acme", "2025-03-01", "")
    assert list(request.group_by) == DAY_PROVIDER
    assert servicer.metadata[0]["authorization"] == "Bearer sk-test-report"
    assert "TOTAL" in out and "0.6001" in out and "1.7100" in out
    assert "sk-test-report" not in out + err


def test_cli_report_writes_html_csv_and_json(reports, capsys, tmp_path: Path):
    servicer, target = reports
    page, table = tmp_path / "report.html", tmp_path / "report.csv"

    code = cli.main(["report", "--target", target, "--html", str(page), "--csv", str(table), "--json"])

    out, err = capsys.readouterr()
    assert code == cli.EXIT_OK, err
    # --html without --group-by asks for what its charts need.
    assert list(servicer.requests[0].group_by) == DAY_PROVIDER
    assert json_format.Parse(out, pb.CostReport()) == servicer.reply
    assert page.read_text(encoding="utf-8") == report_html(servicer.reply)
    assert table.read_bytes().decode() == report_csv(servicer.reply)
    assert f"wrote {page}" in err and f"wrote {table}" in err


def test_cli_report_csv_to_stdout(reports, capsys):
    _, target = reports
    assert cli.main(["report", "--target", target, "--csv", "-"]) == cli.EXIT_OK
    records = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert records[-1]["day"] == "TOTAL" and records[-1]["cost_usd"] == "0.60005"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--since", "2025-02-30"], "--since takes a day written YYYY-MM-DD"),
        (["--group-by", "day,model"], "cannot group by model"),
        (["--json", "--csv", "-"], "both write to standard output"),
        (["--html", "/nonexistent-dir/r.html"], "directory /nonexistent-dir does not exist"),
        (["--provider", "openai"], "unrecognized arguments: --provider openai"),
    ],
)
def test_cli_report_refuses_bad_arguments_before_calling(reports, capsys, argv, message):
    servicer, target = reports
    assert cli.main(["report", "--target", target, *argv]) == cli.EXIT_ERROR
    assert message in capsys.readouterr().err
    assert servicer.requests == []


def test_cli_report_shows_the_server_refusal(reports, capsys):
    servicer, target = reports
    servicer.refuse = "tenant 'acme' may only read its own cost report"
    assert cli.main(["report", "--target", target, "--tenant", "globex"]) == cli.EXIT_ERROR
    err = capsys.readouterr().err
    assert "error: PERMISSION_DENIED: tenant 'acme' may only read its own cost report" in err
