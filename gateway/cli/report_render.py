"""Cost reports for people: a rich table, CSV, JSON, and a self-contained HTML page with SVG charts.

Every function here is pure: a ``CostReport`` message in, text (or a rich ``Table``) out. Money arrives as
exact decimal strings and is summed, subtracted and printed as ``Decimal``; floats appear only where a chart
needs pixel coordinates. The HTML page loads nothing: its CSS and charts are inline, and a
Content-Security-Policy forbids every fetch, so it opens the same way from a mail attachment or an air-gapped
laptop.
"""

from __future__ import annotations

import csv
import html
import io
import json
import math
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any, TypeVar

from google.protobuf import json_format
from rich import box
from rich.table import Table
from rich.text import Text

from gateway.api.v1 import cost_reports_pb2

__all__ = [
    "DIMENSIONS",
    "MONEY_PLACES",
    "grouped_dimensions",
    "parse_group_by",
    "report_csv",
    "report_dict",
    "report_html",
    "report_json",
    "report_table",
]

# The order the server sorts rows by, and the order columns appear in.
DIMENSIONS: tuple[str, ...] = ("day", "tenant", "provider", "operation")
# Local requests cost fractions of a cent: whole cents would show most of them as 0.00.
MONEY_PLACES = 4

_GROUP_BY: dict[str, cost_reports_pb2.GroupBy.ValueType] = {
    "day": cost_reports_pb2.GROUP_BY_DAY,
    "tenant": cost_reports_pb2.GROUP_BY_TENANT,
    "provider": cost_reports_pb2.GROUP_BY_PROVIDER,
    "operation": cost_reports_pb2.GROUP_BY_OPERATION,
}
_DIMENSION_OF = {value: name for name, value in _GROUP_BY.items()}
# Okabe-Ito: distinguishable with the common colour-vision deficiencies.
_PALETTE = ("#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#f0e442", "#555555")
# Outside the provider palette, so no chart's colour reads as a provider it is not.
_SAVED_COLOUR = "#1b7837"
_COMPARE_COLOURS = {"actual": "#5e3c99", "cloud": "#b2182b", "local": "#1b7837"}
_MAX_AXIS_DAYS = 400  # the server refuses longer spans; beyond this the axis is the days with data

K = TypeVar("K", bound=Hashable)


# -- parsing -------------------------------------------------------------------


def parse_group_by(text: str) -> list[cost_reports_pb2.GroupBy.ValueType]:
    """``"day,provider"`` as GroupBy values, in the order given. Raises ValueError for an unknown name."""
    names = [part.strip().lower() for part in text.split(",") if part.strip()]
    unknown = [name for name in names if name not in _GROUP_BY]
    if unknown:
        raise ValueError(f"cannot group by {', '.join(unknown)}; use {', '.join(DIMENSIONS)}")
    return [_GROUP_BY[name] for name in dict.fromkeys(names)]


def grouped_dimensions(report: cost_reports_pb2.CostReport) -> tuple[str, ...]:
    """The dimensions ``report`` is grouped by, in column order."""
    present = {_DIMENSION_OF[g] for g in report.group_by if g in _DIMENSION_OF}
    return tuple(d for d in DIMENSIONS if d in present)


def _money(value: str, field: str) -> Decimal:
    amount = _optional_money(value, field)
    return Decimal(0) if amount is None else amount


def _optional_money(value: str, field: str) -> Decimal | None:
    if not value:
        return None
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise ValueError(f"{field} is not a decimal amount: {value!r}") from None
    if not amount.is_finite():
        raise ValueError(f"{field} is not a finite amount: {value!r}")
    return amount


@dataclass(frozen=True)
class _Row:
    """One report row with its money parsed; ``None`` where the report leaves a figure unknown."""

    labels: dict[str, str]
    requests: int
    attempts: int
    failures: int
    cache_hits: int
    cost: Decimal
    saved: Decimal
    # Calls cancelled or timed out: their estimated cost, which the vendor may bill or not.
    possibly_billed: Decimal
    cloud: Decimal | None
    local: Decimal | None
    message: cost_reports_pb2.CostReportRow

    @property
    def saved_vs_cloud(self) -> Decimal | None:
        """What running the traffic where it ran saved against sending all of it to the cheapest cloud."""
        return None if self.cloud is None else self.cloud - self.cost

    @classmethod
    def parse(cls, row: cost_reports_pb2.CostReportRow) -> _Row:
        return cls(
            labels={
                "day": row.day,
                "tenant": row.tenant,
                "provider": row.provider,
                "operation": row.operation,
            },
            requests=row.requests,
            attempts=row.attempts,
            failures=row.failures,
            cache_hits=row.cache_hits,
            cost=_money(row.cost_usd, "cost_usd"),
            saved=_money(row.saved_usd, "saved_usd"),
            possibly_billed=_money(row.possibly_billed_usd, "possibly_billed_usd"),
            cloud=_optional_money(row.counterfactual_cloud_usd, "counterfactual_cloud_usd"),
            local=_optional_money(row.counterfactual_local_usd, "counterfactual_local_usd"),
            message=row,
        )


def _rows(report: cost_reports_pb2.CostReport) -> list[_Row]:
    return [_Row.parse(row) for row in report.rows]


def _total(report: cost_reports_pb2.CostReport, rows: Sequence[_Row]) -> _Row:
    # The server's total is authoritative; summing here covers a report built without one.
    if report.HasField("total"):
        return _Row.parse(report.total)
    return _Row(
        labels=dict.fromkeys(DIMENSIONS, ""),
        requests=sum(r.requests for r in rows),
        attempts=sum(r.attempts for r in rows),
        failures=sum(r.failures for r in rows),
        cache_hits=sum(r.cache_hits for r in rows),
        cost=sum((r.cost for r in rows), Decimal(0)),
        saved=sum((r.saved for r in rows), Decimal(0)),
        possibly_billed=sum((r.possibly_billed for r in rows), Decimal(0)),
        cloud=_sum_known(r.cloud for r in rows),
        local=_sum_known(r.local for r in rows),
        message=cost_reports_pb2.CostReportRow(
            units=_sum_units(r.message.units for r in rows),
            billing_unknown_attempts=sum(r.message.billing_unknown_attempts for r in rows),
        ),
    )


def _sum_units(units: Iterable[cost_reports_pb2.Units]) -> cost_reports_pb2.Units:
    total = cost_reports_pb2.Units()
    for u in units:
        total.audio_seconds += u.audio_seconds
        total.characters += u.characters
        total.input_tokens += u.input_tokens
        total.audio_input_tokens += u.audio_input_tokens
        total.output_tokens += u.output_tokens
        total.compute_seconds += u.compute_seconds
    return total


def _sum_known(values: Iterable[Decimal | None]) -> Decimal | None:
    known = [v for v in values if v is not None]
    return sum(known, Decimal(0)) if known else None


def _label_columns(dims: tuple[str, ...]) -> tuple[str, ...]:
    # An ungrouped report still needs a column to say which row is the total.
    return dims or ("group",)


# Requests no provider answered (refused by policy, budget or input checks, or every attempt failed) are
# grouped under an empty provider; people see them named.
REJECTED = "rejected"


def _labels(row: _Row, dims: tuple[str, ...]) -> list[str]:
    return [_shown_label(row, d) for d in dims] if dims else ["all"]


def _shown_label(row: _Row, dimension: str) -> str:
    value = row.labels[dimension]
    return REJECTED if dimension == "provider" and not value else value


def _rejected(rows: Iterable[_Row]) -> list[_Row]:
    return [row for row in rows if not row.labels["provider"]]


def _total_labels(dims: tuple[str, ...]) -> list[str]:
    return ["TOTAL"] + [""] * (len(_label_columns(dims)) - 1)


# -- formatting ------------------------------------------------------------------


def _fmt_money(amount: Decimal | None, places: int = MONEY_PLACES) -> str:
    if amount is None:
        return "—"
    quantum = Decimal(1).scaleb(-places)
    rounded = amount.quantize(quantum, rounding=ROUND_HALF_UP)
    if amount and not rounded:
        # A local request can cost millionths of a dollar: show two significant digits, never a false 0.
        places = -amount.adjusted() + 1
        rounded = amount.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    return f"{rounded:,.{places}f}"


def _fmt_count(count: int) -> str:
    return f"{count:,}"


def _plain_money(amount: Decimal | None) -> str:
    """An exact amount for machines: no rounding, no separators; empty when unknown."""
    # Fixed-point: str() would write 0.000000028 as 2.8E-8, which spreadsheets misread.
    return "" if amount is None else f"{amount:f}"


def _axis_money(amount: Decimal) -> str:
    return f"${amount.normalize():f}" if amount else "$0"


def _percent(part: Decimal, whole: Decimal) -> str:
    if not whole:
        return "—"
    return f"{(part * 100 / whole).quantize(Decimal('0.1'), rounding=ROUND_HALF_UP)}%"


# -- rich table ------------------------------------------------------------------

_MONEY_COLUMNS = ("cost", "cache saved", "all cloud", "all local", "saved vs cloud")
# Two-line headers: nine columns then fit an 80-column terminal without cutting a figure.
_TABLE_NUMBER_HEADERS = (
    "requests",
    "cache\nhits",
    "cost",
    "cache\nsaved",
    "all\ncloud",
    "all\nlocal",
    "saved vs\ncloud",
)


def report_table(report: cost_reports_pb2.CostReport, *, money_places: int = MONEY_PLACES) -> Table:
    """The report as a rich table: one row per group, then a bold TOTAL row.

    Columns: the grouped dimensions, requests, cache hits, cost, cache savings, the all-cloud and all-local
    counterfactuals, and "saved vs cloud" (all-cloud minus cost), in USD. Unknown figures show as "—".
    When calls were cancelled or timed out, a "possibly billed" column shows their estimated cost.
    """
    dims = grouped_dimensions(report)
    rows = _rows(report)
    total = _total(report, rows)
    # Only when there is something in it: the usual table still fits 80 columns.
    billed = bool(total.possibly_billed)
    table = Table(
        title=f"cost report {report.since or '?'} → {report.until or '?'}",
        title_justify="left",
        caption=_caption(report, money_places),
        caption_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )
    for column in _label_columns(dims):
        # On a narrow terminal names fold; days and figures are never cut.
        table.add_column(column, no_wrap=column == "day", overflow="fold")
    for column in _TABLE_NUMBER_HEADERS + (("possibly\nbilled",) if billed else ()):
        table.add_column(column, justify="right", no_wrap=True)
    for index, row in enumerate(rows):
        table.add_row(
            *_table_cells(row, _labels(row, dims), money_places, billed), end_section=index == len(rows) - 1
        )
    table.add_row(*_table_cells(total, _total_labels(dims), money_places, billed), style="bold")
    return table


def _table_cells(row: _Row, labels: list[str], places: int, billed: bool = False) -> list[Text]:
    # Text, not str: a name like "[red]x" is data, never rich markup.
    values = [
        _fmt_count(row.requests),
        _fmt_count(row.cache_hits),
        _fmt_money(row.cost, places),
        _fmt_money(row.saved, places),
        _fmt_money(row.cloud, places),
        _fmt_money(row.local, places),
        _fmt_money(row.saved_vs_cloud, places),
    ]
    if billed:
        values.append(_fmt_money(row.possibly_billed, places))
    return [Text(value) for value in (*labels, *values)]


def _caption(report: cost_reports_pb2.CostReport, places: int) -> str:
    book = f"price book {report.price_book_version}; " if report.price_book_version else ""
    return f"{book}USD to {places} places (smaller amounts to 2 digits); --csv and --json are exact"


# -- CSV and JSON ----------------------------------------------------------------

_CSV_VALUES = (
    "requests",
    "attempts",
    "failures",
    "cache_hits",
    "cost_usd",
    "saved_usd",
    "counterfactual_cloud_usd",
    "counterfactual_local_usd",
    "saved_vs_cloud_usd",
    "audio_seconds",
    "characters",
    "input_tokens",
    "audio_input_tokens",
    "output_tokens",
    "compute_seconds",
    "possibly_billed_usd",
    "billing_unknown_attempts",
)


def report_csv(report: cost_reports_pb2.CostReport) -> str:
    """CSV text: a header, one line per row, then a TOTAL line. Amounts are exact; unknown ones are empty."""
    dims = grouped_dimensions(report)
    rows = _rows(report)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([*_label_columns(dims), *_CSV_VALUES])
    for row in rows:
        writer.writerow([*_labels(row, dims), *_csv_values(row)])
    writer.writerow([*_total_labels(dims), *_csv_values(_total(report, rows))])
    return buffer.getvalue()


def _csv_values(row: _Row) -> list[str]:
    units = row.message.units
    return [
        str(row.requests),
        str(row.attempts),
        str(row.failures),
        str(row.cache_hits),
        _plain_money(row.cost),
        _plain_money(row.saved),
        _plain_money(row.cloud),
        _plain_money(row.local),
        _plain_money(row.saved_vs_cloud),
        repr(units.audio_seconds),
        str(units.characters),
        str(units.input_tokens),
        str(units.audio_input_tokens),
        str(units.output_tokens),
        repr(units.compute_seconds),
        _plain_money(row.possibly_billed),
        str(row.message.billing_unknown_attempts),
    ]


def report_dict(report: cost_reports_pb2.CostReport) -> dict[str, Any]:
    """The report in the proto3 JSON mapping, with proto field names and every field present."""
    return json_format.MessageToDict(
        report, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


def report_json(report: cost_reports_pb2.CostReport) -> str:
    """:func:`report_dict` as indented JSON; ``json_format.Parse`` reads it back into the same message."""
    return json.dumps(report_dict(report), indent=2) + "\n"


# -- HTML ------------------------------------------------------------------------


def report_html(report: cost_reports_pb2.CostReport, *, title: str = "Audio gateway cost report") -> str:
    """A self-contained HTML page: summary figures, three SVG charts, and the table with its totals.

    Charts: cost per day stacked by provider (needs the report grouped by day and provider), actual cost
    against the all-cloud and all-local counterfactuals, and cache savings per day (needs grouping by day).
    A chart the grouping cannot feed is replaced by a note saying which grouping it needs.
    """
    dims = grouped_dimensions(report)
    rows = _rows(report)
    total = _total(report, rows)
    sections = [
        _summary_html(report, dims, total),
        _cost_over_time_html(report, dims, rows),
        _comparison_html(total, partial_local=_local_partial(rows)),
        _savings_over_time_html(report, dims, rows),
        _table_html(dims, rows, total),
    ]
    return _PAGE.format(
        title=_esc(title),
        heading=_esc(title),
        style=_STYLE,
        body="\n".join(sections),
    )


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{style}</style>
</head>
<body>
<main>
<h1>{heading}</h1>
{body}
</main>
</body>
</html>
"""

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1f2328;
       background: #ffffff; margin: 0; }
main { max-width: 1040px; margin: 0 auto; padding: 24px; }
h1 { font-size: 1.6rem; margin: 0 0 4px; }
h2 { font-size: 1.15rem; margin: 32px 0 8px; }
.meta { color: #57606a; margin: 0 0 16px; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; padding: 0; margin: 0; list-style: none; }
.cards li { border: 1px solid #d0d7de; border-radius: 6px; padding: 10px 14px; min-width: 130px; }
.cards .label { display: block; color: #57606a; font-size: 0.8rem; }
.cards .value { display: block; font-size: 1.2rem; font-weight: 600; font-variant-numeric: tabular-nums; }
.note { background: #fff8c5; border: 1px solid #d4a72c; border-radius: 6px; padding: 10px 14px; }
figure { margin: 0; }
figcaption { color: #57606a; font-size: 0.9rem; margin-top: 4px; }
svg { display: block; max-width: 100%; height: auto; }
svg text { font-family: inherit; font-size: 12px; fill: #1f2328; }
svg .axis { stroke: #8c959f; stroke-width: 1; }
svg .grid { stroke: #eaeef2; stroke-width: 1; }
.legend { display: flex; flex-wrap: wrap; gap: 14px; padding: 0; margin: 8px 0 0; list-style: none; }
.swatch { display: inline-block; width: 12px; height: 12px; margin-right: 6px; vertical-align: -1px; }
caption { text-align: left; }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; font-size: 0.9rem; }
th, td { padding: 4px 8px; border-bottom: 1px solid #eaeef2; text-align: right; white-space: nowrap; }
th.label, td.label { text-align: left; }
thead th { border-bottom: 2px solid #8c959f; }
tfoot td { font-weight: 700; border-top: 2px solid #8c959f; }
"""


def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _summary_html(report: cost_reports_pb2.CostReport, dims: tuple[str, ...], total: _Row) -> str:
    grouping = ", ".join(dims) or "none (totals only)"
    meta = f"{report.since or '?'} to {report.until or '?'} (UTC days) · grouped by {grouping}"
    if report.price_book_version:
        meta += f" · price book {report.price_book_version}"
    hit_rate = _percent(Decimal(total.cache_hits), Decimal(total.requests))
    cards = [
        ("Requests", _fmt_count(total.requests)),
        ("Cache hits", f"{_fmt_count(total.cache_hits)} ({hit_rate})"),
        ("Cost", f"${_fmt_money(total.cost)}"),
        ("Saved by the cache", f"${_fmt_money(total.saved)}"),
        ("All on cheapest cloud", _dollars(total.cloud)),
        ("All on local engines", _dollars(total.local)),
        ("Saved vs cloud", _dollars(total.saved_vs_cloud)),
        ("Possibly billed", f"${_fmt_money(total.possibly_billed)}"),
    ]
    items = "\n".join(
        f'<li><span class="label">{_esc(label)}</span><span class="value">{_esc(value)}</span></li>'
        for label, value in cards
    )
    empty = _note("No requests were recorded in this range.") + "\n" if not total.requests else ""
    if total.possibly_billed:
        calls = total.message.billing_unknown_attempts
        empty += (
            _note(
                f"{_fmt_count(calls)} provider call(s) were cancelled or timed out. Vendors may bill them: "
                f"their estimated cost, ${_fmt_money(total.possibly_billed)}, is shown as possibly billed "
                "and is not part of the cost."
            )
            + "\n"
        )
    return (
        f'<p class="meta">{_esc(meta)}</p>\n{empty}'
        f'<ul class="cards" aria-label="Totals">\n{items}\n</ul>\n'
        f'<p class="meta">Amounts in USD, to {MONEY_PLACES} places (smaller ones to 2 significant digits); '
        "the CSV and JSON exports carry exact amounts.</p>"
    )


def _dollars(amount: Decimal | None) -> str:
    return "—" if amount is None else f"${_fmt_money(amount)}"


def _note(text: str) -> str:
    return f'<p class="note" role="note">{_esc(text)}</p>'


def _cost_over_time_html(report: cost_reports_pb2.CostReport, dims: tuple[str, ...], rows: list[_Row]) -> str:
    heading = "<h2>Cost over time, per provider</h2>"
    if "day" not in dims or "provider" not in dims:
        return heading + _note(
            "This chart needs a report grouped by day and provider; this one is grouped by "
            f"{', '.join(dims) or 'nothing'}. Run: audio-gateway report --group-by day,provider --html FILE"
        )
    rejected = _rejected(rows)
    # Rejected requests are drawn only when they cost something (failed attempts that were billed).
    drawn = [row for row in rows if row.labels["provider"] or row.cost]
    cost = _sum_by(drawn, lambda r: (r.labels["day"], _shown_label(r, "provider")), lambda r: r.cost)
    providers = sorted({provider for _, provider in cost})
    colours = _series_colours(providers)
    days = _day_axis(report, [day for day, _ in cost])
    chart = _BarChart(
        chart_id="cost-over-time",
        title="Cost per day, stacked by provider",
        description=f"Daily cost in USD for {len(providers)} provider(s) over {len(days)} day(s).",
        days=days,
        bar_class="cost-bar",
    )
    segments = [
        _Segment(day=day, series=provider, amount=amount, colour=colours[provider])
        for (day, provider), amount in sorted(cost.items())
    ]
    legend = [(provider, colours[provider]) for provider in providers]
    caption = "Hover a bar for the exact amount."
    if rejected:
        count = sum(row.requests for row in rejected)
        spent = sum((row.cost for row in rejected), Decimal(0))
        caption += (
            f" {_fmt_count(count)} request(s) were rejected (no provider answered them): "
            + (
                f"their failed calls cost ${_fmt_money(spent)}, drawn as \u201c{REJECTED}\u201d."
                if spent
                else "they cost nothing and are not drawn."
            )
            + f" The table lists them as \u201c{REJECTED}\u201d."
        )
    return heading + _figure(chart.render(segments), legend, caption)


def _savings_over_time_html(
    report: cost_reports_pb2.CostReport, dims: tuple[str, ...], rows: list[_Row]
) -> str:
    heading = "<h2>Savings from the cache, per day</h2>"
    if "day" not in dims:
        return heading + _note(
            "This chart needs a report grouped by day; this one is grouped by "
            f"{', '.join(dims) or 'nothing'}. Run: audio-gateway report --group-by day,provider --html FILE"
        )
    saved = _sum_by(rows, lambda r: r.labels["day"], lambda r: r.saved)
    hits = _sum_by(rows, lambda r: r.labels["day"], lambda r: Decimal(r.cache_hits))
    days = _day_axis(report, list(saved))
    chart = _BarChart(
        chart_id="cache-savings",
        title="What the cache saved per day",
        description=f"Daily savings from cache hits in USD over {len(days)} day(s).",
        days=days,
        bar_class="saved-bar",
    )
    segments = [
        _Segment(
            day=day, series=f"saved ({int(hits[day]):,} cache hits)", amount=amount, colour=_SAVED_COLOUR
        )
        for day, amount in sorted(saved.items())
    ]
    return heading + _figure(chart.render(segments), [("saved by cache hits", _SAVED_COLOUR)], "")


def _sum_by(
    rows: Iterable[_Row], key: Callable[[_Row], K], value: Callable[[_Row], Decimal]
) -> dict[K, Decimal]:
    sums: dict[K, Decimal] = {}
    for row in rows:
        k = key(row)
        sums[k] = sums.get(k, Decimal(0)) + value(row)
    return sums


def _series_colours(names: Sequence[str]) -> dict[str, str]:
    colours = {}
    for index, name in enumerate(names):
        if index < len(_PALETTE):
            colours[name] = _PALETTE[index]
        else:
            # Past the palette, spread hues by the golden angle so neighbours still differ.
            colours[name] = f"hsl({(index * 137.508) % 360:.0f}, 55%, 48%)"
    return colours


def _day_axis(report: cost_reports_pb2.CostReport, days_with_data: Iterable[str]) -> list[str]:
    """Every day of the report's range, so quiet days show as gaps; plus any day a row names."""
    days = set(days_with_data)
    try:
        first, last = date.fromisoformat(report.since), date.fromisoformat(report.until)
    except ValueError:
        return sorted(days)
    if first <= last and (last - first).days <= _MAX_AXIS_DAYS:
        days.update((first + timedelta(days=n)).isoformat() for n in range((last - first).days + 1))
    return sorted(days)


def _figure(svg: str, legend: Sequence[tuple[str, str]], caption: str) -> str:
    items = "".join(
        f'<li><span class="swatch" style="background:{_esc(colour)}" aria-hidden="true"></span>'
        f"{_esc(name)}</li>"
        for name, colour in legend
    )
    caption_html = f"<figcaption>{_esc(caption)}</figcaption>" if caption else ""
    return f'<figure>{svg}<ul class="legend" aria-label="Legend">{items}</ul>{caption_html}</figure>'


@dataclass(frozen=True)
class _Segment:
    day: str
    series: str
    amount: Decimal
    colour: str


@dataclass(frozen=True)
class _BarChart:
    """Vertical bars, one slot per day, segments stacked within a day in the order given."""

    chart_id: str
    title: str
    description: str
    days: Sequence[str]
    bar_class: str
    width: float = 960.0
    height: float = 320.0
    left: float = 100.0  # room for axis labels as long as $0.00000005
    right: float = 16.0
    top: float = 16.0
    bottom: float = 44.0

    def render(self, segments: Sequence[_Segment]) -> str:
        stacks = _sum_by(segments, lambda s: s.day, lambda s: s.amount)
        ticks = _nice_ticks(max(stacks.values(), default=Decimal(0)))
        top_value = ticks[-1]
        plot_w = self.width - self.left - self.right
        plot_h = self.height - self.top - self.bottom
        base_y = self.top + plot_h
        slot = plot_w / max(len(self.days), 1)
        index = {day: i for i, day in enumerate(self.days)}
        parts = [self._open()]
        for tick in ticks:
            y = base_y - plot_h * float(tick / top_value)
            parts.append(
                f'<line class="grid" x1="{self.left:.2f}" x2="{self.width - self.right:.2f}" '
                f'y1="{y:.2f}" y2="{y:.2f}"/>'
                f'<text x="{self.left - 6:.2f}" y="{y + 4:.2f}" text-anchor="end">'
                f"{_esc(_axis_money(tick))}</text>"
            )
        label_every = max(1, math.ceil(len(self.days) / 12))
        for i, day in enumerate(self.days):
            if i % label_every == 0:
                x = self.left + slot * (i + 0.5)
                parts.append(
                    f'<text x="{x:.2f}" y="{base_y + 18:.2f}" text-anchor="middle">'
                    f"{_esc(day[5:] or day)}</text>"
                )
        offsets: dict[str, Decimal] = {}
        for segment in segments:
            below = offsets.get(segment.day, Decimal(0))
            offsets[segment.day] = below + segment.amount
            y_low = base_y - plot_h * float(below / top_value)
            y_high = base_y - plot_h * float(offsets[segment.day] / top_value)
            x = self.left + slot * (index[segment.day] + 0.15)
            parts.append(
                f'<rect class="{_esc(self.bar_class)}" data-day="{_esc(segment.day)}" '
                f'data-series="{_esc(segment.series)}" x="{x:.2f}" y="{y_high:.2f}" '
                f'width="{slot * 0.7:.2f}" height="{max(y_low - y_high, 0.0):.2f}" '
                f'fill="{_esc(segment.colour)}">'
                f"<title>{_esc(f'{segment.day} · {segment.series}: ${_fmt_money(segment.amount)}')}</title>"
                "</rect>"
            )
        parts.append(
            f'<line class="axis" x1="{self.left:.2f}" x2="{self.width - self.right:.2f}" '
            f'y1="{base_y:.2f}" y2="{base_y:.2f}"/>'
            f'<text x="{self.left + plot_w / 2:.2f}" y="{self.height - 6:.2f}" text-anchor="middle">'
            "UTC day</text></svg>"
        )
        return "".join(parts)

    def _open(self) -> str:
        return _svg_open(self.chart_id, self.title, self.description, self.width, self.height)


def _svg_open(chart_id: str, title: str, description: str, width: float, height: float) -> str:
    ident = _esc(chart_id)
    return (
        f'<svg id="{ident}" role="img" aria-labelledby="{ident}-title {ident}-desc" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" width="{width:.0f}" height="{height:.0f}">'
        f'<title id="{ident}-title">{_esc(title)}</title><desc id="{ident}-desc">{_esc(description)}</desc>'
    )


def _nice_ticks(maximum: Decimal, count: int = 4) -> list[Decimal]:
    """Axis ticks from 0 past ``maximum`` in steps of 1, 2 or 5 × 10^k, computed exactly."""
    if maximum <= 0:
        return [Decimal(0), Decimal("0.01")]
    raw = maximum / count
    base = Decimal(1).scaleb(raw.adjusted())
    step = next(base * m for m in (1, 2, 5, 10) if base * m >= raw)
    steps = int((maximum / step).to_integral_value(rounding=ROUND_CEILING))
    return [step * n for n in range(max(steps, 1) + 1)]


def _local_partial(rows: Iterable[_Row]) -> bool:
    """Whether some groups had a local figure and others (with traffic) had none."""
    served = [row for row in rows if row.requests]
    return any(row.local is None for row in served) and any(row.local is not None for row in served)


def _comparison_html(total: _Row, *, partial_local: bool) -> str:
    heading = "<h2>Where it ran, against all-cloud and all-local</h2>"
    bars: list[tuple[str, str, Decimal]] = [("actual", "Actual cost", total.cost)]
    if total.cloud is not None:
        bars.append(("cloud", "All on the cheapest cloud provider", total.cloud))
    if total.local is not None:
        bars.append(("local", "All on local engines", total.local))
    width, row_h, left, right, top = 960.0, 44.0, 250.0, 150.0, 12.0
    height = top * 2 + row_h * len(bars)
    ticks = _nice_ticks(max(amount for _, _, amount in bars))
    plot_w = width - left - right
    parts = [
        _svg_open(
            "cost-comparison",
            "Actual cost against the all-cloud and all-local counterfactuals",
            "; ".join(f"{label}: ${_fmt_money(amount)}" for _, label, amount in bars),
            width,
            height,
        )
    ]
    for i, (key, label, amount) in enumerate(bars):
        y = top + row_h * i
        bar_w = plot_w * float(amount / ticks[-1])
        parts.append(
            f'<text x="{left - 10:.2f}" y="{y + row_h / 2 + 4:.2f}" text-anchor="end">{_esc(label)}</text>'
            f'<rect class="compare-bar" data-series="{_esc(key)}" x="{left:.2f}" y="{y + 8:.2f}" '
            f'width="{bar_w:.2f}" height="{row_h - 16:.2f}" fill="{_COMPARE_COLOURS[key]}">'
            f"<title>{_esc(f'{label}: ${_fmt_money(amount)}')}</title></rect>"
            f'<text x="{left + bar_w + 8:.2f}" y="{y + row_h / 2 + 4:.2f}">'
            f"{_esc('$' + _fmt_money(amount))}</text>"
        )
    parts.append("</svg>")
    notes = []
    if total.cloud is not None:
        notes.append(
            f"Against sending everything to the cheapest eligible cloud provider, this traffic saved "
            f"${_fmt_money(total.saved_vs_cloud)} ({_percent(total.cloud - total.cost, total.cloud)})."
        )
    else:
        notes.append("The report has no cloud counterfactual for this traffic.")
    if total.saved:
        notes.append(
            "Both counterfactuals price cache hits as if they were computed again; the cache saved "
            f"${_fmt_money(total.saved)}, so compare them with ${_fmt_money(total.cost + total.saved)}."
        )
    if total.local is None:
        notes.append("No local engine could serve this traffic, so there is no all-local figure.")
    elif partial_local:
        notes.append(
            "Some groups had no local engine able to serve them: the all-local figure covers only the rest."
        )
    return heading + f"<figure>{''.join(parts)}<figcaption>{_esc(' '.join(notes))}</figcaption></figure>"


def _table_html(dims: tuple[str, ...], rows: list[_Row], total: _Row) -> str:
    labels = _label_columns(dims)
    headers = [*labels, "requests", "cache hits", *_MONEY_COLUMNS, "possibly billed"]
    head = "".join(
        f'<th scope="col" class="{"label" if i < len(labels) else "number"}">{_esc(h)}</th>'
        for i, h in enumerate(headers)
    )
    body = "\n".join(_html_row(_labels(row, dims), row) for row in rows)
    foot = _html_row(_total_labels(dims), total)
    return (
        '<h2>Totals</h2>\n<table>\n<caption class="meta">One row per group; amounts in USD.</caption>\n'
        f"<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n<tfoot>{foot}</tfoot>\n</table>"
    )


def _html_row(labels: list[str], row: _Row) -> str:
    cells = [f'<td class="label">{_esc(label)}</td>' for label in labels]
    cells += [
        f"<td>{_esc(value)}</td>"
        for value in (
            _fmt_count(row.requests),
            _fmt_count(row.cache_hits),
            _fmt_money(row.cost),
            _fmt_money(row.saved),
            _fmt_money(row.cloud),
            _fmt_money(row.local),
            _fmt_money(row.saved_vs_cloud),
            _fmt_money(row.possibly_billed),
        )
    ]
    return f"<tr>{''.join(cells)}</tr>"
