"""Remote providers as declared in the providers file (YAML), secrets from the environment.

Each entry is one routable (provider, operation, model)::

    providers:
      - name: openai-whisper          # unique; shown in RouteInfo and used to pin
        kind: openai                  # openai | deepgram | assemblyai | litellm | openai_compatible
        operation: transcribe         # transcribe | synthesize | understand
        model: whisper-1
        api_key_env: OPENAI_API_KEY   # the environment variable holding the key
        base_url: https://api.openai.com/v1   # optional; vendors' defaults otherwise

Keys are read here, once, when the file is loaded: adapters receive them in
their config and never look at the environment themselves.
"""

from __future__ import annotations

import enum
import os
from decimal import Decimal
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from gateway.core import yamlfile
from gateway.core.provider_types import Locality, Operation
from gateway.core.yamlfile import ConfigFileError


class ProviderKind(enum.StrEnum):
    OPENAI = "openai"
    DEEPGRAM = "deepgram"
    ASSEMBLYAI = "assemblyai"
    LITELLM = "litellm"
    OPENAI_COMPATIBLE = "openai_compatible"


class LatencyPrior(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    fixed_ms: float = Field(ge=0)
    rtf: float = Field(0.0, ge=0)
    ms_per_char: float = Field(0.0, ge=0)


class PriceOverride(BaseModel):
    """USD per single unit, for models the price book does not list (e.g. an on-prem server's cost)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    per_audio_second: Decimal = Decimal(0)
    per_character: Decimal = Decimal(0)
    per_input_token: Decimal = Decimal(0)
    per_audio_input_token: Decimal = Decimal(0)
    per_output_token: Decimal = Decimal(0)


# What a vendor is by default; an entry may override any of these.
_DEFAULT_LOCALITY = {
    ProviderKind.OPENAI: Locality.CLOUD,
    ProviderKind.DEEPGRAM: Locality.CLOUD,
    ProviderKind.ASSEMBLYAI: Locality.CLOUD,
    ProviderKind.LITELLM: Locality.CLOUD,
    ProviderKind.OPENAI_COMPATIBLE: Locality.ON_PREM,
}


class ProviderConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, pattern=r"^[a-z0-9][a-z0-9._-]*$")
    kind: ProviderKind
    operation: Operation
    model: str = Field(min_length=1)
    base_url: str | None = None
    api_key_env: str | None = None
    api_key: SecretStr | None = Field(None, exclude=True)
    locality: Locality | None = None
    retains_data: bool | None = None
    region: str | None = None
    languages: frozenset[str] | None = None
    features: frozenset[str] = frozenset()
    voices: frozenset[str] | None = None
    default_voice: str | None = None
    max_audio_s: float | None = Field(None, gt=0)
    published_wer: float | None = Field(None, ge=0, le=1)
    latency: LatencyPrior | None = None
    timeout_s: float = Field(120.0, gt=0)
    poll_interval_s: float = Field(1.0, gt=0)
    prices: PriceOverride | None = None
    # Vendor-specific switches (e.g. deepgram smart_format), passed through by the adapter.
    options: dict[str, str | bool | int | float] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _defaults(self) -> ProviderConfig:
        # litellm reaching a self-hosted server (api_base) is on-prem, not cloud.
        locality = self.locality or (
            Locality.ON_PREM
            if self.kind is ProviderKind.LITELLM and self.base_url
            else _DEFAULT_LOCALITY[self.kind]
        )
        retains = self.retains_data if self.retains_data is not None else locality is Locality.CLOUD
        object.__setattr__(self, "locality", locality)
        object.__setattr__(self, "retains_data", retains)
        return self

    @property
    def price_key(self) -> str:
        return f"{self.kind.value}/{self.model}"

    def secret(self) -> str | None:
        return self.api_key.get_secret_value() if self.api_key is not None else None


class ProviderConfigError(ConfigFileError):
    pass


def load_providers_file(path: Path, environ: dict[str, str] | None = None) -> list[ProviderConfig]:
    """Parse and validate the providers file; errors name the file, the entry's line and the problem."""
    environ = dict(os.environ) if environ is None else environ
    try:
        raw, document = yamlfile.load(path)
    except ConfigFileError as exc:
        raise ProviderConfigError(str(exc)) from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("providers"), list):
        raise ProviderConfigError(f"{path}: expected a top-level 'providers:' list")
    lines = yamlfile.item_lines(document, "providers")
    configs: list[ProviderConfig] = []
    seen: set[str] = set()
    for index, entry in enumerate(raw["providers"]):
        where = yamlfile.where(path, lines, index)
        if not isinstance(entry, dict):
            raise ProviderConfigError(f"{where}: each provider must be a mapping")
        key_env = entry.get("api_key_env")
        if key_env:
            if key_env not in environ:
                raise ProviderConfigError(
                    f"{where}: provider {entry.get('name')!r} needs ${key_env}, which is unset"
                )
            entry = {**entry, "api_key": environ[key_env]}
        try:
            config = ProviderConfig.model_validate(entry)
        except ValidationError as exc:
            raise ProviderConfigError(f"{where}: {yamlfile.describe(exc)}") from None
        if config.name in seen:
            raise ProviderConfigError(f"{where}: a provider named {config.name!r} is already declared")
        seen.add(config.name)
        configs.append(config)
    return configs
