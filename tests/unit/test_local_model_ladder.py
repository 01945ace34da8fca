"""The ladder of local Whisper models: catalogue entries built from settings, ranked by the objective."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest

from gateway.core.domain import Objective, Routing
from gateway.core.provider_types import Operation
from gateway.money.pricing import PriceBook
from gateway.routing.catalogue import Catalogue
from gateway.settings import Settings, WhisperModelSettings
from policies.model import Policy
from policies.rank import RankContext, Ranking, rank
from providers.registry import build_local_providers

PRICES = PriceBook(local_usd_per_hour=Decimal("0.36"), vendor_prices={})


def _catalogue(monkeypatch: pytest.MonkeyPatch, tmp_path, extra: str) -> Catalogue:
    monkeypatch.setenv("GATEWAY_WHISPER__EXTRA_MODELS", extra)
    monkeypatch.setenv("GATEWAY_PIPER__ENABLED", "false")
    monkeypatch.setenv("GATEWAY_LLAMA__ENABLED", "false")
    monkeypatch.setenv("GATEWAY_WHISPER__MODEL_CACHE_DIR", str(tmp_path / "models"))
    return Catalogue(build_local_providers(Settings()))


def _ranked(catalogue: Catalogue, **ctx: object) -> Ranking:
    context = RankContext(Operation.TRANSCRIBE, audio_s=10.0, **ctx)  # type: ignore[arg-type]
    # As if loaded: ranking reads only the engines' declarations.
    loaded = [replace(c, ready=True) for c in catalogue.candidates()]
    return rank(context, loaded, Policy(name="p"), PRICES.estimate)


def test_settings_add_rungs_beside_the_default(monkeypatch, tmp_path):
    custom = tmp_path / "whisper-small-ct2"
    custom.mkdir()
    extra = f'["base", {{"model": "{custom}", "published_wer": 0.034, "rtf": 1.5, "workers": 2}}]'
    catalogue = _catalogue(monkeypatch, tmp_path, extra)

    entries = {c.name: c for c in catalogue.candidates()}
    assert list(entries) == ["faster-whisper", "faster-whisper-base", "faster-whisper-small-ct2"]
    tiny, base, small = entries.values()
    assert (tiny.model, base.model, small.model) == ("whisper-tiny.en", "whisper-base", "whisper-small-ct2")

    assert tiny.capabilities.languages == frozenset({"en"})
    assert "translate" not in tiny.capabilities.features
    assert base.capabilities.languages is None  # any language
    assert "translate" in base.capabilities.features
    assert "language_detection" in base.capabilities.features

    # Published quality and measured speed: base is better and slower than tiny.en.
    assert base.capabilities.published_wer < tiny.capabilities.published_wer
    assert base.capabilities.latency_prior.rtf > tiny.capabilities.latency_prior.rtf
    assert small.capabilities.published_wer == 0.034
    assert small.capabilities.latency_prior.rtf == 1.5

    # Each engine has its own workers.
    pools = [catalogue.get(name)._pool for name in entries]
    assert len({id(pool) for pool in pools}) == 3
    assert [pool._workers for pool in pools] == [2, 1, 2]


def test_a_plain_name_is_short_for_an_entry():
    assert WhisperModelSettings.model_validate("base") == WhisperModelSettings(model="base")


def test_two_rungs_with_one_name_are_refused(monkeypatch, tmp_path):
    with pytest.raises(ValueError, match="two providers are named 'faster-whisper-base'"):
        _catalogue(monkeypatch, tmp_path, '["base", "base"]')


def test_the_objective_climbs_the_ladder(monkeypatch, tmp_path):
    catalogue = _catalogue(monkeypatch, tmp_path, '["base"]')

    def first(objective: Objective) -> str:
        return _ranked(catalogue, language="en", routing=Routing(objective=objective)).kept[0].name

    # tiny.en stays the default route for English: cheaper and faster.
    assert first(Objective.COST) == "faster-whisper"
    assert first(Objective.LATENCY) == "faster-whisper"
    assert first(Objective.QUALITY) == "faster-whisper-base"


def test_a_language_or_translation_tiny_en_cannot_do_goes_to_the_multilingual_rung(monkeypatch, tmp_path):
    catalogue = _catalogue(monkeypatch, tmp_path, '["base"]')

    french = _ranked(catalogue, language="fr")
    assert [k.name for k in french.kept] == ["faster-whisper-base"]
    assert {r.name: (r.rule, r.reason) for r in french.rejected} == {
        "faster-whisper": ("language", "does not support language 'fr' (supports en)")
    }

    translation = _ranked(catalogue, features=frozenset({"translate"}))
    assert [k.name for k in translation.kept] == ["faster-whisper-base"]
    assert translation.rejected[0].rule == "features"
