"""Numbers at the edges of their types: the money math stays exact, and report ranges stay in the calendar."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from gateway.core.errors import InvalidInput
from gateway.core.provider_types import Operation, Usage
from gateway.ledger.reports import resolve_range
from gateway.money.pricing import PriceBook, UnitPrices, estimated_usage, price_units

TODAY = date(2026, 3, 1)


def test_pricing_huge_usage_neither_overflows_nor_rounds_away():
    prices = UnitPrices(per_audio_second=Decimal("0.0001"), per_output_token=Decimal("0.00001"))
    usage = estimated_usage(Operation.UNDERSTAND, 1e308, 0)
    assert usage.audio_input_tokens == 10 * 10**308
    cost = price_units(prices, usage)
    # Audio alone is 1e304 USD (the sum keeps Decimal's 28 significant digits), written to the nano-dollar.
    assert cost == Decimal("1e304") and cost.as_tuple().exponent == -9
    book = PriceBook(local_usd_per_hour=Decimal("0.36"), vendor_prices={})
    local = book._compute_cost(1e300)
    assert local == Decimal("1e296") and local.as_tuple().exponent == -9
    # Ordinary amounts are unchanged: exact to the nano-dollar.
    assert price_units(prices, Usage(audio_seconds=1.5)) == Decimal("0.000150000")


@pytest.mark.parametrize(
    ("since", "until", "expected"),
    [
        ("", "", (date(2026, 1, 30), TODAY)),
        ("", "1970-01-10", (date(1970, 1, 1), date(1970, 1, 10))),
        ("", "9999-12-31", (date(9999, 12, 1), date(9999, 12, 31))),
        ("9999-12-31", "9999-12-31", (date(9999, 12, 31), date(9999, 12, 31))),
    ],
)
def test_report_ranges_at_the_ends_of_the_calendar(since, until, expected):
    assert resolve_range(since, until, TODAY) == expected


@pytest.mark.parametrize(
    ("since", "until", "named"),
    [("", "0001-01-01", "until"), ("0001-01-01", "0001-01-31", "until"), ("1969-12-31", "", "since")],
)
def test_report_ranges_before_the_epoch_are_refused(since, until, named):
    with pytest.raises(InvalidInput, match=f"^{named} .*1970-01-01"):
        resolve_range(since, until, TODAY)
