"""Ranking rules as a table: each row is one rule that keeps or rejects a candidate."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest

from gateway.core.domain import Objective, Privacy, Routing
from gateway.core.provider_types import Capabilities, LatencyModel, Locality, Operation
from gateway.money.pricing import PriceBook, UnitPrices
from policies.model import Policy
from policies.rank import CandidateInfo, RankContext, latency_models, rank

T = Operation.TRANSCRIBE


def cand(
    name,
    locality=Locality.LOCAL,
    *,
    ops=(T,),
    retains=False,
    languages=None,
    features=(),
    ready=True,
    fixed_ms=100.0,
    rtf=0.3,
    wer=None,
    region=None,
    max_audio_s=None,
) -> CandidateInfo:
    caps = Capabilities(
        operations=frozenset(ops),
        locality=locality,
        retains_data=retains,
        latency_prior=LatencyModel(fixed_ms=fixed_ms, rtf=rtf),
        languages=languages,
        features=frozenset(features),
        published_wer=wer,
        region=region,
        max_audio_s=max_audio_s,
    )
    return CandidateInfo(name, f"{name}-model", caps, ready=ready)


PRICES = PriceBook(
    local_usd_per_hour=Decimal("0.36"),
    vendor_prices={("cloud", "cloud-model"): UnitPrices(per_audio_second=Decimal("0.0001"))},
)
CATALOGUE = [
    cand("local", wer=0.06),
    cand("onprem", Locality.ON_PREM, fixed_ms=50, rtf=0.05, wer=0.04),
    cand("cloud", Locality.CLOUD, retains=True, fixed_ms=300, rtf=0.02, wer=0.03, region="us"),
]


PLAIN = Policy(name="p")


def ranked(policy=PLAIN, catalogue=CATALOGUE, **ctx):
    ctx.setdefault("audio_s", 10.0)
    return rank(RankContext(T, **ctx), catalogue, policy, PRICES.estimate)


def reasons(ranking):
    return {r.name: r.reason for r in ranking.rejected}


@pytest.mark.parametrize(
    ("policy", "routing", "kept"),
    [
        (Policy(name="p"), Routing(), {"local", "onprem", "cloud"}),
        (Policy(name="p", privacy=Privacy.LOCAL_ONLY), Routing(), {"local"}),
        (Policy(name="p", privacy=Privacy.ON_PREM), Routing(), {"local", "onprem"}),
        # A request may tighten privacy...
        (Policy(name="p"), Routing(privacy=Privacy.LOCAL_ONLY), {"local"}),
        # ...but never loosen it.
        (Policy(name="p", privacy=Privacy.LOCAL_ONLY), Routing(privacy=Privacy.ANY), {"local"}),
        (Policy(name="p", no_retention=True), Routing(), {"local", "onprem"}),
        (Policy(name="p", region="eu"), Routing(), {"local", "onprem"}),
        (Policy(name="p", allow_providers=frozenset({"cloud"})), Routing(), {"cloud"}),
        (Policy(name="p", deny_providers=frozenset({"cloud"})), Routing(), {"local", "onprem"}),
        (Policy(name="p"), Routing(provider="onprem"), {"onprem"}),
        (Policy(name="p"), Routing(max_latency_ms=1000), {"onprem", "cloud"}),
        (Policy(name="p", max_cost_usd=Decimal("0.0005")), Routing(), {"local", "onprem"}),
        (Policy(name="p"), Routing(max_cost_usd=Decimal("0")), {"onprem"}),
    ],
)
def test_hard_filters(policy, routing, kept):
    ranking = ranked(policy, routing=routing)
    assert {k.name for k in ranking.kept} == kept
    assert set(reasons(ranking)) == {"local", "onprem", "cloud"} - kept
    assert all(reasons(ranking).values())


def test_local_only_never_admits_on_prem_or_cloud_even_when_local_is_unready():
    catalogue = [cand("local", ready=False), *CATALOGUE[1:]]
    ranking = ranked(Policy(name="p", privacy=Privacy.LOCAL_ONLY), catalogue)
    assert ranking.kept == ()
    assert reasons(ranking)["cloud"] == "locality cloud is not allowed under privacy local_only"
    assert reasons(ranking)["local"].startswith("not ready")


def test_operation_language_feature_and_length_rules():
    catalogue = [
        cand("tts", ops=(Operation.SYNTHESIZE,)),
        cand("english", languages=frozenset({"en"})),
        cand("plain"),
        cand("short", features=("word_timestamps",), max_audio_s=5),
        cand("good", features=("word_timestamps",)),
    ]
    ranking = ranked(catalogue=catalogue, language="de", features=frozenset({"word_timestamps"}))
    assert [k.name for k in ranking.kept] == ["good"]
    why = reasons(ranking)
    assert why["tts"] == "does not transcribe"
    assert why["english"] == "does not support language 'de' (supports en)"
    assert why["plain"] == "lacks feature(s) word_timestamps"
    assert why["short"] == "audio of 10.0 s exceeds its 5 s limit"


@pytest.mark.parametrize(
    ("objective", "order"),
    [
        (Objective.COST, ["onprem", "local", "cloud"]),
        (Objective.LATENCY, ["cloud", "onprem", "local"]),  # 500 ms, 550 ms, 3100 ms
        (Objective.QUALITY, ["cloud", "onprem", "local"]),
    ],
)
def test_objective_orders_candidates(objective, order):
    ranking = ranked(Policy(name="p", objective=objective))
    assert [k.name for k in ranking.kept] == order


def test_estimates_follow_the_latency_model_and_price_book():
    ranking = ranked(audio_s=100.0)
    by_name = {k.name: k for k in ranking.kept}
    assert by_name["local"].estimated_latency_ms == pytest.approx(100 + 0.3 * 100_000)
    # Local: expected compute seconds × $0.36/h = 30.1 s × $0.0001/s.
    assert by_name["local"].estimated_cost_usd == Decimal("0.00301")
    assert by_name["cloud"].estimated_cost_usd == Decimal("0.01")
    # An unpriced on-prem server costs nothing per unit.
    assert by_name["onprem"].estimated_cost_usd == 0


def test_fallback_off_means_one_attempt():
    assert ranked(Policy(name="p", fallback=False)).max_attempts == 1
    assert ranked(Policy(name="p", max_attempts=2)).max_attempts == 2


def test_streams_are_ranked_at_streaming_rates():
    """A vendor cheap for files but dear for streams must not win a stream on its file price."""
    file_cheap = cand("file-cheap", Locality.CLOUD, features=("streaming",))
    stream_cheap = cand("stream-cheap", Locality.CLOUD, features=("streaming",))
    # A local engine whose file prior for one second is 150 ms + 350 ms, and whose stream holds 0.1 s of
    # compute per second of audio.
    local = cand("local", features=("streaming",), fixed_ms=150, rtf=0.35)
    local = replace(local, capabilities=replace(local.capabilities, stream_compute_per_audio_s=0.1))
    prices = PriceBook(
        local_usd_per_hour=Decimal("0.36"),
        vendor_prices={
            ("file-cheap", "file-cheap-model"): UnitPrices(per_audio_second=Decimal("0.00001")),
            ("stream-cheap", "stream-cheap-model"): UnitPrices(per_audio_second=Decimal("0.00002")),
        },
        stream_prices={
            ("file-cheap", "file-cheap-model"): UnitPrices(per_audio_second=Decimal("0.00009")),
            ("stream-cheap", "stream-cheap-model"): UnitPrices(per_audio_second=Decimal("0.00003")),
        },
    )
    catalogue = [file_cheap, stream_cheap]
    features = frozenset({"streaming"})

    def order(streaming: bool, candidates=catalogue) -> list[tuple[str, Decimal]]:
        ctx = RankContext(T, audio_s=1.0, features=features, streaming=streaming)
        return [(k.name, k.estimated_cost_usd) for k in rank(ctx, candidates, PLAIN, prices.estimate).kept]

    assert order(streaming=False) == [
        ("file-cheap", Decimal("0.00001")),
        ("stream-cheap", Decimal("0.00002")),
    ]
    assert order(streaming=True) == [("stream-cheap", Decimal("0.00003")), ("file-cheap", Decimal("0.00009"))]
    # Local compute at $0.36/h is $0.0001 a second: a file second is estimated at 0.5 s of compute, a
    # streamed second at 0.1 s, which puts local first for streams only.
    assert order(False, [local, *catalogue])[0] == ("file-cheap", Decimal("0.00001"))
    assert dict(order(False, [local, *catalogue]))["local"] == Decimal("0.00005")
    assert order(True, [local, *catalogue]) == [
        ("local", Decimal("0.00001")),
        ("stream-cheap", Decimal("0.00003")),
        ("file-cheap", Decimal("0.00009")),
    ]


class _Learned:
    """A health view where only the named providers have learned their latency."""

    def __init__(self, learned: dict[str, LatencyModel]) -> None:
        self._learned = learned

    def blocked(self, name: str, now: float) -> str | None:
        return None

    def latency_model(self, name: str, prior: LatencyModel) -> LatencyModel:
        return self._learned.get(name, prior)


def test_an_untried_rung_borrows_its_learned_kin_s_latency_scaled_by_their_priors():
    def rung(name: str, rtf: float) -> CandidateInfo:
        info = cand(name, fixed_ms=150, rtf=rtf)
        return replace(info, capabilities=replace(info.capabilities, latency_family="whisper"))

    small, big, stranger = rung("small", 0.35), rung("big", 0.77), cand("stranger", fixed_ms=150, rtf=0.35)
    # The big rung was measured much faster than its prior; the small one was never tried.
    health = _Learned({"big": LatencyModel(fixed_ms=220.0, rtf=0.11)})
    models = latency_models([small, big, stranger], health)
    assert models["big"] == LatencyModel(fixed_ms=220.0, rtf=0.11)
    assert models["small"].fixed_ms == pytest.approx(100.0)
    assert models["small"].rtf == pytest.approx(0.05)
    assert models["stranger"] == stranger.capabilities.latency_prior  # no family: its own prior
    # Ranked on those, the smaller model stays the cheaper one, as its prior says it is.
    ranking = rank(RankContext(T, audio_s=4.0), [small, big], PLAIN, PRICES.estimate, health)
    assert [k.name for k in ranking.kept] == ["small", "big"]
    # Without the borrowing, the measured big rung would beat the small one's untried prior.
    assert LatencyModel(220.0, 0.11).estimate_ms(4.0) < small.capabilities.latency_prior.estimate_ms(4.0)
