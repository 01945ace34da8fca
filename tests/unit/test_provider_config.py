"""The providers file and the price book: validation with precise errors, secrets from the environment."""

from __future__ import annotations

from decimal import Decimal

import pytest
import yaml

from gateway.app import build_price_book
from gateway.core.provider_types import Locality, Operation, Usage
from gateway.money.pricing import PriceBookError, PriceList, default_price_list_path
from providers.config import ProviderConfigError, ProviderKind, load_providers_file
from tests.conftest import local_settings

GOOD = """\
providers:
  - name: openai-whisper
    kind: openai
    operation: transcribe
    model: whisper-1
    api_key_env: TEST_OPENAI_KEY
  - name: speaches
    kind: openai_compatible
    operation: transcribe
    model: Systran/faster-whisper-small
    base_url: http://speaches.internal:8000/v1
  - name: vllm-llm
    kind: litellm
    operation: understand
    model: hosted_vllm/llama-3
    base_url: http://vllm.internal:8000/v1
    prices: {per_input_token: "0.0000001"}
"""


def write(tmp_path, text):
    path = tmp_path / "providers.yaml"
    path.write_text(text)
    return path


def test_loads_entries_with_secrets_and_locality_defaults(tmp_path):
    configs = load_providers_file(write(tmp_path, GOOD), environ={"TEST_OPENAI_KEY": "sk-test-123"})
    whisper, speaches, vllm = configs
    assert (whisper.kind, whisper.operation, whisper.model) == (
        ProviderKind.OPENAI,
        Operation.TRANSCRIBE,
        "whisper-1",
    )
    assert whisper.secret() == "sk-test-123"
    assert "sk-test-123" not in repr(whisper) and "sk-test-123" not in whisper.model_dump_json()
    assert (whisper.locality, whisper.retains_data) == (Locality.CLOUD, True)
    assert (speaches.locality, speaches.retains_data) == (Locality.ON_PREM, False)
    # litellm reaching a self-hosted server counts as on-prem.
    assert vllm.locality is Locality.ON_PREM


@pytest.mark.parametrize(
    ("text", "environ", "message"),
    [
        ("providers: {}\n", {}, "expected a top-level 'providers:' list"),
        (GOOD, {}, "providers.yaml:2: provider 'openai-whisper' needs $TEST_OPENAI_KEY, which is unset"),
        (
            "providers:\n  - name: a\n    kind: openai\n    operation: transcribe\n    model: m\n"
            "  - name: b\n    kind: carrier-pigeon\n    operation: transcribe\n    model: m\n",
            {},
            "providers.yaml:6: kind:",
        ),
        (
            "providers:\n  - name: a\n    kind: openai\n    operation: translate\n    model: m\n",
            {},
            "providers.yaml:2: operation:",
        ),
        (
            "providers:\n  - {name: a, kind: openai, operation: transcribe, model: m}\n"
            "  - {name: a, kind: deepgram, operation: transcribe, model: nova-3}\n",
            {},
            "providers.yaml:3: a provider named 'a' is already declared",
        ),
        (
            "providers:\n  - {name: a, kind: openai, operation: transcribe, model: m, colour: red}\n",
            {},
            "colour",
        ),
        ("providers: [\n", {}, "providers.yaml"),
    ],
)
def test_rejects_bad_files_naming_the_line_and_problem(tmp_path, text, environ, message):
    with pytest.raises(ProviderConfigError) as caught:
        load_providers_file(write(tmp_path, text), environ=environ)
    assert message in str(caught.value)


def test_the_shipped_price_book_has_the_listed_prices():
    prices = PriceList.load(default_price_list_path()).prices
    minute = Decimal(60)
    assert prices["openai/whisper-1"].per_audio_second * minute == Decimal("0.006")
    assert prices["openai/gpt-4o-mini-transcribe"].per_audio_second * minute == Decimal("0.003")
    assert prices["deepgram/nova-3"].per_audio_second * minute == pytest.approx(Decimal("0.0043"))
    assert prices["assemblyai/universal"].per_audio_second * 3600 == Decimal("0.15")
    assert prices["openai/tts-1"].per_character * 1_000_000 == Decimal("15")
    assert prices["openai/tts-1-hd"].per_character * 1_000_000 == Decimal("30")
    assert prices["deepgram/aura-2"].per_character * 1000 == Decimal("0.030")


def test_price_book_entries_need_a_source(tmp_path):
    path = tmp_path / "book.yaml"
    path.write_text('version: x\nprices:\n  a/b: {unit: character, usd: "1", per: 1, as_of: "2026-01-01"}\n')
    with pytest.raises(PriceBookError, match="source"):
        PriceList.load(path)


def test_cloud_costs_are_priced_to_the_cent_and_unpriced_cloud_models_refuse_to_start(tmp_path):
    settings = local_settings()
    configs = load_providers_file(write(tmp_path, GOOD), environ={"TEST_OPENAI_KEY": "k"})
    book = build_price_book(settings, configs)
    ten_minutes = Usage(audio_seconds=600.0)
    assert book.cost("openai-whisper", "whisper-1", Locality.CLOUD, ten_minutes) == Decimal("0.06")
    assert book.cost(
        "vllm-llm", "hosted_vllm/llama-3", Locality.ON_PREM, Usage(input_tokens=1000)
    ) == Decimal("0.0001")
    unpriced = load_providers_file(
        write(tmp_path, "providers:\n  - {name: x, kind: openai, operation: transcribe, model: whisper-9}\n"),
        environ={},
    )
    with pytest.raises(PriceBookError, match="no 'openai/whisper-9'"):
        build_price_book(settings, unpriced)


STREAMING = """
providers:
  - {name: dg, kind: deepgram, operation: transcribe, model: nova-3, api_key_env: DG}
  - {name: aai, kind: assemblyai, operation: transcribe, model: universal, api_key_env: AAI}
  - name: dg-contract
    kind: deepgram
    operation: transcribe
    model: nova-3
    api_key_env: DG
    prices: {per_audio_second: "0.00005"}
"""


def test_streams_are_priced_at_the_vendors_streaming_rate(tmp_path):
    book = build_price_book(
        local_settings(), load_providers_file(write(tmp_path, STREAMING), {"DG": "k", "AAI": "k"})
    )
    ten_minutes = Usage(audio_seconds=600.0)
    # Deepgram bills its websocket above its file rate; AssemblyAI's Universal-Streaming rate equals its
    # file rate per hour, but is its own entry.
    assert book.stream_cost("dg", "nova-3", Locality.CLOUD, ten_minutes) == Decimal("0.077")
    assert book.cost("dg", "nova-3", Locality.CLOUD, ten_minutes) == Decimal("0.043")
    assert book.stream_cost("aai", "universal", Locality.CLOUD, Usage(audio_seconds=3600.0)) == Decimal(
        "0.15"
    )
    # An entry's own prices are its contract: they price its streams too.
    assert book.stream_cost("dg-contract", "nova-3", Locality.CLOUD, ten_minutes) == Decimal("0.03")
    # A provider with no streaming rate streams at its file rate; local engines at their compute time.
    assert book.stream_cost("nobody", "x", Locality.CLOUD, ten_minutes) == Decimal(0)
    assert book.stream_cost("local", "tiny", Locality.LOCAL, Usage(compute_seconds=3600.0)) == (
        local_settings().pricing.local_usd_per_hour.quantize(Decimal("0.000000001"))
    )


def test_the_shipped_streaming_rates_have_sources_and_dates():
    raw = yaml.safe_load(default_price_list_path().read_text())["prices"]
    streaming = {k: v for k, v in raw.items() if k.endswith(":streaming")}
    assert {"deepgram/nova-3:streaming", "assemblyai/universal:streaming"} <= set(streaming)
    for entry in streaming.values():
        assert entry["source"].startswith("https://") and entry["as_of"] >= "2026-11-27"
