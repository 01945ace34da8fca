"""The catalogue refuses, at start, a provider that lists an operation it does not implement."""

from __future__ import annotations

from dataclasses import replace

import pytest

from gateway.core.provider_types import Operation
from gateway.routing.catalogue import Catalogue
from providers.testing import FakeAnswerer, FakeSynthesizer, FakeTranscriber


def test_each_operation_is_served_only_by_a_provider_that_implements_it():
    catalogue = Catalogue([FakeTranscriber(), FakeSynthesizer(), FakeAnswerer()])
    assert catalogue.operations() == set(Operation)


@pytest.mark.parametrize(
    ("claimed", "missing"),
    [(Operation.UNDERSTAND, "Answerer"), (Operation.SYNTHESIZE, "Synthesizer")],
)
def test_a_provider_listing_an_operation_it_lacks_is_refused(claimed: Operation, missing: str):
    # Requests cast a routed provider to the operation's interface rather than check it per call.
    overclaiming = FakeTranscriber(name="overclaiming")
    operations = overclaiming.capabilities.operations | {claimed}
    overclaiming.capabilities = replace(overclaiming.capabilities, operations=operations)
    refusal = f"'overclaiming' lists {claimed.value} but does not implement {missing}"
    with pytest.raises(TypeError, match=refusal):
        Catalogue([FakeSynthesizer(), overclaiming])
